"""The FCN / atrous / U-Net autoencoder study (issue 6), reproducibly.

Trains each architecture as an autoencoder on ISBI 2012 sections with the same
number of weights and the same training steps, plus the PCA and linear baselines,
reconstructs crops of the EPFL/Lucchi stack and compares them level by level.
Writes docs/study/{study.md, study.json, power.png, mosaics.png} and prints the tables.

Run: ``PYTHONPATH=. python benchmarks/wavelet_study.py [--steps 200] [--budget 100000]``
(``--help`` lists every setting; the defaults are the ones in benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time


def main(argv=None) -> dict:
    import torch

    from napari_segnets.study import DEFAULT_ARCHS, DEFAULT_BASELINES, run_study

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=None)
    p.add_argument("--out-dir", default="docs/study")
    p.add_argument("--archs", nargs="*", default=list(DEFAULT_ARCHS))
    p.add_argument("--baselines", nargs="*", default=list(DEFAULT_BASELINES))
    p.add_argument("--budget", type=int, default=100_000)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--minutes", type=float, default=12.0, help="cap per model")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--n-crops", type=int, default=100)
    p.add_argument("--test-crop", type=int, default=256)
    p.add_argument("--margin", type=int, default=16)
    p.add_argument("--wavelet", default="haar")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--trainer", default="auto", choices=["auto", "project", "minimal"])
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    start = time.perf_counter()

    def log(event):
        if event.message or event.done == event.total:
            stamp = time.strftime("%H:%M:%S")
            print(f"{stamp} [{event.stage}] {event.done}/{event.total} {event.message}", flush=True)

    result = run_study(
        callback=log, data_root=args.data_root, out_dir=args.out_dir, archs=args.archs,
        baselines=args.baselines, budget=args.budget, steps=args.steps, minutes=args.minutes,
        batch_size=args.batch_size, crop=args.crop, lr=args.lr, n_crops=args.n_crops,
        test_crop=args.test_crop, margin=args.margin, wavelet=args.wavelet, seed=args.seed, trainer=args.trainer,
    )  # fmt: skip
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print()
    print(result["markdown"])
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), load average at the end {load}; "
        f"total {time.perf_counter() - start:.0f} s; command: {' '.join([sys.executable, *sys.argv])}"
    )
    for name in result["files"]:
        print("wrote", name)
    return result


if __name__ == "__main__":
    main()
