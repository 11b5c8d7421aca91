"""Membrane benchmark: U-Net (16 base channels) on ISBI 2012 sections 0-19, scored on sections 20-29.

Scores (from napari_segnets.metrics.score_stack, mode="membrane"): pixel F1 of the membrane class,
pixel accuracy, adapted Rand error and variation of information (cells = connected components of
non-membrane pixels per section; means over sections), after each snapshot time of one run.

    PYTHONPATH=. python benchmarks/train_membranes.py            # 5 and 10 minutes
    PYTHONPATH=. python benchmarks/train_membranes.py --at 1     # a quick check
"""

from __future__ import annotations

import argparse
import sys
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
    run_with_snapshots,
    set_threads,
    table,
)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--at", type=float, nargs="+", default=[5, 10], help="snapshot times in minutes"
    )
    add_run_args(ap)
    args = ap.parse_args(argv)

    import torch

    set_threads(args)

    from napari_segnets import metrics
    from napari_segnets.models import build
    from napari_segnets.training import SliceDataset, train_iter

    print("machine:", machine())
    image, labels = load("isbi2012")
    torch.manual_seed(args.seed)
    model = build("unet", base=16)
    budget = max(args.at)
    job = train_iter(
        model, SliceDataset(image[:20], labels[:20]), epochs=10_000, steps_per_epoch=50, minutes=budget,
        batch_size=args.batch, crop=args.crop, lr=args.lr, loss="bce_dice", schedule="cosine",
        device="cpu", seed=args.seed, foreground_crop=0.0, channels_last=True,
    )  # fmt: skip
    result, snapshots = run_with_snapshots(job, model, args.at, budget)
    truth = labels[20:30]
    rows = []
    for minutes, steps, elapsed, state in snapshots:
        model.load_state_dict(state)
        te = time.perf_counter()
        pred = (
            probabilities(model, image[20:30], {"mode": "percentile", "low": 1.0, "high": 99.8})
            >= 0.5
        )
        overall = metrics.score_stack(pred.astype(np.uint8), truth, mode="membrane")["overall"]
        rows.append({
            "budget (min)": f"{minutes:g}", "trained (min)": f"{elapsed:.1f}", "steps": steps,
            "pixel F1": overall.get("f1"), "pixel acc.": overall.get("pixel_accuracy"),
            "adapted Rand error": overall.get("rand_error"), "VI": overall.get("vi"),
            "eval (s)": f"{time.perf_counter() - te:.0f}",
        })  # fmt: skip
    mpx = result.steps * args.batch * args.crop**2 / result.seconds / 1e6
    print(
        f"U-Net base 16, crop {args.crop}, batch {args.batch}, lr {args.lr}, bce_dice, adam, cosine over the "
        f"budget, uniform crops, channels_last, CPU; train sections 0-19, test sections 20-29"
    )
    print(f"training throughput {mpx:.2f} MP/s; predictor: {predictor_name()}")
    cols = [
        "budget (min)",
        "trained (min)",
        "steps",
        "pixel F1",
        "pixel acc.",
        "adapted Rand error",
        "VI",
        "eval (s)",
    ]
    print(table(rows, cols))
    print("after:", machine())


if __name__ == "__main__":
    main()
