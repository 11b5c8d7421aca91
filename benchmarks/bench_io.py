"""Reading EM stacks: eager load vs lazy open + first slice (what napari needs to show a stack).

Usage: python benchmarks/bench_io.py [--big-mb 256] [--data ../shared/data]

Prints one table; ratios are eager time / lazy time-to-first-slice measured in the same run.
Peak memory is Python-side allocations (tracemalloc); memory-mapped pages are not counted.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np


def _timed(fn, repeat=3):
    """Median wall time over ``repeat`` runs, then one traced run for the peak (tracemalloc slows code)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    tracemalloc.start()
    out = fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return statistics.median(times), peak, out


def bench_file(path: Path, label: str) -> dict:
    from napari_segnets.io import read

    def eager():
        return read(path, lazy=False)[0]

    def lazy_first():
        arr, _ = read(path, lazy=True)
        return arr[arr.shape[0] // 2].compute()

    t_eager, m_eager, full = _timed(eager)
    t_lazy, m_lazy, plane = _timed(lazy_first)
    assert np.array_equal(plane, full[full.shape[0] // 2])
    return {
        "stack": label,
        "shape": "x".join(map(str, full.shape)),
        "MiB": full.nbytes / 2**20,
        "eager_s": t_eager,
        "eager_peak_MiB": m_eager / 2**20,
        "lazy_slice_s": t_lazy,
        "lazy_peak_MiB": m_lazy / 2**20,
        "ratio": t_eager / t_lazy,
    }


def main() -> None:
    from napari_segnets.io.public import data_root

    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--big-mb", type=int, default=256, help="size of the synthetic compressed TIFF"
    )
    parser.add_argument(
        "--data", default=str(data_root()), help="the public data (default: io.public.data_root())"
    )
    args = parser.parse_args()
    import tifffile

    from napari_segnets.sample_data import synthetic_stack

    # Warm up imports (dask, zarr) so that the timings below measure reading, not importing.
    with tempfile.TemporaryDirectory() as tmp:
        tifffile.imwrite(Path(tmp) / "w.tif", np.zeros((2, 8, 8), np.uint8), compression="zlib")
        bench_file(Path(tmp) / "w.tif", "warm-up")
    rows = []
    data = Path(args.data)
    for rel in (
        "isbi2012_em_segmentation/train-volume.tif",
        "epfl_lucchi_mitochondria/training_slices000-029.tif",
        "drosophila_vnc_sstem_gerhard2013/stack1_raw.tif",
    ):
        if (data / rel).exists():
            rows.append(bench_file(data / rel, rel.split("/")[0].split("_")[0] + " (uncompressed)"))
    with tempfile.TemporaryDirectory() as tmp:
        image, _ = synthetic_stack((8, 512, 512), seed=0)
        n = max(1, args.big_mb * 2**20 // image.nbytes)
        big = Path(tmp) / "big_zlib.tif"
        with tifffile.TiffWriter(big, bigtiff=True) as tw:
            tw.write(
                (image[i % 8] for i in range(n * 8)),
                shape=(n * 8, 512, 512),
                dtype=np.uint8,
                compression="zlib",
                photometric="minisblack",
            )
        rows.append(bench_file(big, "synthetic (zlib)"))
    head = f"{'stack':28} {'shape':>14} {'MiB':>7} {'eager s':>8} {'eager MiB':>9} {'lazy 1st slice s':>16} {'lazy MiB':>8} {'ratio':>7}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['stack']:28} {r['shape']:>14} {r['MiB']:7.1f} {r['eager_s']:8.3f} {r['eager_peak_MiB']:9.1f} "
            f"{r['lazy_slice_s']:16.4f} {r['lazy_peak_MiB']:8.1f} {r['ratio']:7.1f}x"
        )
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        synthetic_stack((8, 256, 256), seed=0)
        times.append(time.perf_counter() - t0)
    print(
        f"\nsynthetic_stack((8, 256, 256)): median {statistics.median(times):.3f} s, min {min(times):.3f} s (5 runs)"
    )


if __name__ == "__main__":
    main()
