"""Human-in-the-loop benchmark on EPFL/Lucchi mitochondria: uncertainty-ranked vs random slice choice.

Start: a U-Net (16 base channels) trained on 2 of the training slices 0-19. Then, per round:
predict the still-unlabelled training slices, take the slice ``curation.rank_uncertainty`` ranks
first (or a random one), replace the prediction there with the ground truth (a perfect correction),
add it to a ``curation.Store``, and fine-tune briefly (a fixed number of steps) from the previous
checkpoint on everything in the store. Held-out slices 20-29 are scored after every round (not
counted in the round's seconds). Both strategies start from the same checkpoint.

    PYTHONPATH=. python benchmarks/hitl.py
    PYTHONPATH=. python benchmarks/hitl.py --rounds 2 --init-steps 20 --steps 10   # a quick check
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from _training_common import (  # noqa: E402
    add_run_args,
    load,
    machine,
    predictor_name,
    probabilities,
    set_threads,
    table,
)

NORM = {"mode": "percentile", "low": 1.0, "high": 99.8}
START = (0, 10)  # the two slices the first model is trained on


def heldout_iou(model, image, truth) -> float:
    from napari_segnets import metrics

    prob = probabilities(model, image, NORM, engine="slice")
    return float(metrics.iou((prob >= 0.5).astype(np.uint8), truth))


def window(stack: np.ndarray, size: int) -> np.ndarray:
    """The centred ``size`` x ``size`` window of every slice (the whole slice when size is 0)."""
    if not size:
        return stack
    h, w = stack.shape[-2:]
    y, x = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return stack[..., y : y + size, x : x + size]


def run_strategy(strategy, parent, image, labels, args, workdir: Path) -> list[dict]:
    from napari_segnets import checkpoints
    from napari_segnets.curation import Store, rank_uncertainty
    from napari_segnets.training import SliceDataset, finetune

    store = Store(workdir / f"store-{strategy}")
    for z in START:
        store.add(image[z], labels[z], source="lucchi_training.tif", index=z, note="initial labels")
    rng = np.random.default_rng(args.seed)
    labelled = set(START)
    current = parent
    rows = []
    for rnd in range(1, args.rounds + 1):
        t0 = time.perf_counter()
        model, _ = checkpoints.load(current)
        pool = [z for z in range(20) if z not in labelled]
        if strategy == "uncertainty":
            prob = probabilities(model, window(image[pool], args.rank_window), NORM, engine="slice")
            ranking = rank_uncertainty(prob, method="entropy")
            pick_i, score = ranking[0]
            z = pool[int(pick_i)]
            # pixels the "person" changed (counted in the ranked window)
            changed = int(
                np.count_nonzero((prob[int(pick_i)] >= 0.5) != window(labels[z], args.rank_window))
            )
        else:
            z, score = int(rng.choice(pool)), float("nan")
            changed = None
        t_rank = time.perf_counter() - t0
        store.add(
            image[z],
            labels[z],
            source="lucchi_training.tif",
            index=z,
            checkpoint=str(current),
            changed_pixels=changed,
            note=f"round {rnd} ({strategy}): perfect correction",
        )
        labelled.add(z)
        child = workdir / f"{strategy}-round{rnd}.safetensors"
        finetune(
            current,
            SliceDataset.from_store(store, split="train"),
            epochs=1,
            steps_per_epoch=args.steps,
            batch_size=args.batch,
            crop=args.crop,
            lr=args.ft_lr,
            device="cpu",
            seed=args.seed + rnd,
            checkpoint=child,
            channels_last=True,
            schedule="cosine",
        )
        seconds = time.perf_counter() - t0
        model, meta = checkpoints.load(child)
        assert meta["parent"]["path"] == str(Path(current).resolve())  # the lineage is recorded
        current = child
        te = time.perf_counter()
        iou = heldout_iou(
            model, window(image[20:30], args.eval_window), window(labels[20:30], args.eval_window)
        )
        rows.append(
            {
                "round": rnd,
                "slice": z,
                "uncertainty": score,
                "labelled": len(labelled),
                "IoU": iou,
                "rank (s)": t_rank,
                "round (s)": f"{seconds:.1f}",
                "eval (s)": time.perf_counter() - te,
                "ckpt": child,
            }
        )
        print(f"  {strategy} round {rnd}: slice {z}, IoU {iou:.3f}, {seconds:.1f} s", flush=True)
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument(
        "--init-steps", type=int, default=240, help="steps for the 2-slice starting model"
    )
    ap.add_argument("--steps", type=int, default=40, help="fine-tuning steps per round")
    ap.add_argument(
        "--rank-window", type=int, default=512, help="rank on this centred window (0: whole slice)"
    )
    ap.add_argument(
        "--eval-window",
        type=int,
        default=0,
        help="score this centred window of slices 20-29 (0: all)",
    )
    add_run_args(ap, lr_flag="--ft-lr", lr=5e-4)
    args = ap.parse_args(argv)

    import torch

    set_threads(args)

    from napari_segnets.models import build
    from napari_segnets.training import SliceDataset, train

    print("machine:", machine())
    image, labels = load("lucchi")
    with tempfile.TemporaryDirectory(prefix="segnets-hitl-") as tmp:
        workdir = Path(tmp)
        torch.manual_seed(args.seed)
        t0 = time.perf_counter()
        start = train(
            build("unet", base=16),
            SliceDataset(image[list(START)], labels[list(START)]),
            epochs=1,
            steps_per_epoch=args.init_steps,
            batch_size=args.batch,
            crop=args.crop,
            lr=2e-3,
            device="cpu",
            seed=args.seed,
            checkpoint=workdir / "start.safetensors",
            channels_last=True,
        )
        init_s = time.perf_counter() - t0
        iou0 = heldout_iou(
            start.model,
            window(image[20:30], args.eval_window),
            window(labels[20:30], args.eval_window),
        )
        print(
            f"start model: slices {START}, {args.init_steps} steps in {init_s:.0f} s, held-out IoU {iou0:.3f}"
        )
        results = {
            s: run_strategy(s, start.checkpoint, image, labels, args, workdir)
            for s in ("uncertainty", "random")
        }
    rows = [{"round": 0, "labelled": 2, "uncertainty: IoU": iou0, "random: IoU": iou0}]
    for u, r in zip(results["uncertainty"], results["random"], strict=True):
        rows.append({
            "round": u["round"], "labelled": u["labelled"],
            "uncertainty: slice": u["slice"], "uncertainty: IoU": u["IoU"], "uncertainty: s/round": u["round (s)"],
            "random: slice": r["slice"], "random: IoU": r["IoU"], "random: s/round": r["round (s)"],
        })  # fmt: skip
    print(
        f"U-Net base 16; start: {args.init_steps} steps on slices {START}; per round: {args.steps} fine-tuning "
        f"steps (batch {args.batch}, crop {args.crop}, lr {args.ft_lr}, cosine) on all stored slices; "
        f"ranking on the centred {args.rank_window or 'whole'} px window of each unlabelled slice (entropy); "
        f"held-out slices 20-29 ({args.eval_window or 'whole'} px centred window), pooled foreground IoU; predictor: {predictor_name('slice')}"
    )
    cols = [
        "round",
        "labelled",
        "uncertainty: slice",
        "uncertainty: IoU",
        "uncertainty: s/round",
        "random: slice",
        "random: IoU",
        "random: s/round",
    ]
    print(table(rows, cols))
    ranks = [u["rank (s)"] for u in results["uncertainty"]]
    print(
        f"ranking (predicting the unlabelled pool) took {np.mean(ranks):.1f} s per round on average; "
        f"held-out scoring (not in s/round) {np.mean([u['eval (s)'] for u in results['uncertainty']]):.1f} s"
    )
    print("after:", machine())


if __name__ == "__main__":
    main()
