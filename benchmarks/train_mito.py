"""Mitochondria benchmark: U-Net (16 base channels) on EPFL/Lucchi slices 0-19, scored on slices 20-29.

One training run with a time budget; the weights are snapshotted when the run passes each
checkpoint time (default 5, 10 and 20 minutes) and every snapshot is scored afterwards on the
held-out slices (foreground IoU and Dice over all their pixels, threshold 0.5).

    PYTHONPATH=. python benchmarks/train_mito.py            # 5/10/20 minutes
    PYTHONPATH=. python benchmarks/train_mito.py --at 1 2   # a quick check
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
        "--at", type=float, nargs="+", default=[5, 10, 20], help="snapshot times in minutes"
    )
    add_run_args(ap)
    args = ap.parse_args(argv)

    import torch

    set_threads(args)

    from napari_segnets import metrics
    from napari_segnets.models import build
    from napari_segnets.training import SliceDataset, train_iter

    print("machine:", machine())
    image, labels = load("lucchi")
    train_img, train_lab = image[:20], labels[:20]
    test_img, test_lab = image[20:30], labels[20:30]
    torch.manual_seed(args.seed)
    model = build("unet", base=16)
    budget = max(args.at)
    job = train_iter(
        model, SliceDataset(train_img, train_lab), epochs=10_000, steps_per_epoch=50, minutes=budget,
        batch_size=args.batch, crop=args.crop, lr=args.lr, loss="bce_dice", schedule="cosine",
        device="cpu", seed=args.seed, foreground_crop=0.5, channels_last=True,
    )  # fmt: skip
    result, snapshots = run_with_snapshots(job, model, args.at, budget)
    normalization = {"mode": "percentile", "low": 1.0, "high": 99.8}
    rows = []
    for minutes, n_steps, elapsed, state in snapshots:
        model.load_state_dict(state)
        te = time.perf_counter()
        prob = probabilities(model, test_img, normalization)
        pred = (prob >= 0.5).astype(np.uint8)
        iou, dice = metrics.iou(pred, test_lab), metrics.dice(pred, test_lab)
        rows.append({
            "budget (min)": f"{minutes:g}", "trained (min)": f"{elapsed:.1f}", "steps": n_steps,
            "crops seen": n_steps * args.batch, "IoU": float(iou), "Dice": float(dice),
            "eval (s)": f"{time.perf_counter() - te:.0f}",
        })  # fmt: skip
    mpx = result.steps * args.batch * args.crop**2 / result.seconds / 1e6
    print(
        f"U-Net base 16, crop {args.crop}, batch {args.batch}, lr {args.lr}, bce_dice, adam, cosine over the "
        f"budget, foreground_crop 0.5, channels_last, CPU; train slices 0-19, test slices 20-29 (pooled pixels)"
    )
    print(f"training throughput {mpx:.2f} MP/s; predictor: {predictor_name()}")
    print(
        table(
            rows,
            ["budget (min)", "trained (min)", "steps", "crops seen", "IoU", "Dice", "eval (s)"],
        )
    )
    print("after:", machine())


if __name__ == "__main__":
    main()
