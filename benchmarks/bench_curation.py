"""Speed of the curated store, the uncertainty ranking and the metrics on this machine.

Run: PYTHONPATH=. python benchmarks/bench_curation.py [--samples 100] [--slices 20]
Prints one table; every number is from this run (other processes share the CPU: see `uptime`).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np


def _time(fn, repeat=3):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=100, help="samples added to the store (512x512 uint8)")
    ap.add_argument("--slices", type=int, default=20, help="slices of 768x1024 for ranking and metrics")
    args = ap.parse_args()

    from napari_segnets import metrics
    from napari_segnets.curation import Store, rank_uncertainty

    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(os.path.join(tmp, "store"))
        image = rng.integers(0, 255, (512, 512), dtype=np.uint8)
        mask = (image > 128).astype(np.uint8)
        t0 = time.perf_counter()
        for i in range(args.samples):
            store.add(image, mask, source="bench.tif", index=i % 50)
        add = (time.perf_counter() - t0) / args.samples
        rows.append((f"Store.add 512x512 (mean of {args.samples}, fsync'd)", add * 1e3, "ms/sample"))
        rows.append(("Store.samples()", _time(store.samples) * 1e3, "ms"))
        rows.append((f"Store.verify() ({args.samples} samples)", _time(store.verify) * 1e3, "ms"))
        sid = store.samples()[0]["id"]
        rows.append(("Store.load()", _time(lambda: store.load(sid)) * 1e3, "ms"))

    z, shape = args.slices, (768, 1024)
    probs = rng.random((z, *shape), dtype=np.float32)
    mp = z * shape[0] * shape[1] / 1e6
    for method in ("entropy", "margin"):
        t = _time(lambda m=method: rank_uncertainty(probs, method=m), repeat=1)
        rows.append((f"rank_uncertainty {method} ({z}x768x1024)", mp / t, "MP/s"))
    t = _time(lambda: rank_uncertainty(probs, tiles=(256, 256)), repeat=1)
    rows.append(("rank_uncertainty entropy, 256 tiles", mp / t, "MP/s"))
    flips = [probs[:, ::-1], probs[:, :, ::-1]]
    t = _time(lambda: rank_uncertainty(probs, method="flip_disagreement", flips=flips), repeat=1)
    rows.append(("rank_uncertainty flip_disagreement (2 flips)", mp / t, "MP/s"))

    pred = (probs > 0.5).astype(np.uint8)
    truth = (rng.random((z, *shape)) > 0.5).astype(np.uint8)
    rows.append(("metrics.iou binary", mp / _time(lambda: metrics.iou(pred, truth)), "MP/s"))
    rows.append(("metrics.score_stack binary", mp / _time(lambda: metrics.score_stack(pred, truth)), "MP/s"))
    mem_t = np.zeros((4, 512, 512), np.uint8)
    mem_t[:, :, ::32] = 1
    mem_t[:, ::32, :] = 1
    mem_p = mem_t.copy()
    mem_p[:, 100:104, ::7] = 1
    metrics.score_stack(mem_p[:1], mem_t[:1], mode="membrane")  # warm-up: scipy/skimage imports
    t = _time(lambda: metrics.score_stack(mem_p, mem_t, mode="membrane"), repeat=1)
    rows.append(("metrics.score_stack membrane (4x512x512, 256 cells/slice)", 4 * 512 * 512 / 1e6 / t, "MP/s"))

    width = max(len(r[0]) for r in rows)
    print(f"{'what':<{width}}  {'value':>10}  unit")
    for name, value, unit in rows:
        print(f"{name:<{width}}  {value:>10.2f}  {unit}")


if __name__ == "__main__":
    main()
