"""How fast is the wavelet panel's work on one 1024x1024 slice? (issue 6)

Times, as the median of repeats: a bare ``pywt.wavedec2`` (the reference), our
``decompose``, ``level_power``, the level-1 and the full mosaic, and the whole
panel update (decompose once, then power + both mosaics from that decomposition).

Run: ``PYTHONPATH=. python benchmarks/wavelet_speed.py [--repeats 30] [--size 1024]``
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from napari_segnets.io.public import data_root

DATA = data_root() or Path("shared-data-not-found")


def test_slice(size: int) -> tuple[np.ndarray, str]:
    """A real EM slice (Lucchi, mirror-padded to size x size) if present, else noise."""
    path = DATA / "epfl_lucchi_mitochondria" / "training_slices000-029.tif"
    if path.exists():
        import tifffile

        img = tifffile.imread(path, key=0)[:size, :size]
        pad = [(0, size - img.shape[0]), (0, size - img.shape[1])]
        return np.pad(img, pad, mode="reflect"), f"Lucchi slice 0, reflect-padded to {size}x{size}"
    rng = np.random.default_rng(0)
    return (rng.random((size, size)) * 255).astype(np.uint8), f"uniform noise {size}x{size} uint8"


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up: first calls pay for imports and allocations
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def main(argv=None) -> str:
    import pywt

    from napari_segnets import wavelets as W

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--wavelet", default="haar")
    args = parser.parse_args(argv)

    img, what = test_slice(args.size)
    dec = W.decompose(img, args.wavelet)

    def panel():
        d = W.decompose(img, args.wavelet)
        W.level_power(d)
        W.orientation_power(d)
        W.mosaic(d, level=1)
        W.mosaic(d, level=None)

    rows = [
        (
            "pywt.wavedec2 (reference, float64)",
            lambda: pywt.wavedec2(img.astype(np.float64), args.wavelet, mode="periodization"),
        ),
        ("decompose", lambda: W.decompose(img, args.wavelet)),
        ("level_power (from decomposition)", lambda: W.level_power(dec)),
        ("mosaic level 1 (from decomposition)", lambda: W.mosaic(dec, level=1)),
        ("mosaic all levels (from decomposition)", lambda: W.mosaic(dec, level=None)),
        ("mosaic level 1 (from image)", lambda: W.mosaic(img, args.wavelet, level=1)),
        ("panel: decompose + powers + both mosaics", panel),
    ]
    ref = None
    lines = [
        f"wavelet speed: {what}, wavelet {args.wavelet}, {dec.levels} levels, median of {args.repeats}",
        "",
        "| step | median ms | / wavedec2 |",
        "|---|---|---|",
    ]
    for name, fn in rows:
        ms = median_ms(fn, args.repeats)
        ref = ref or ms
        lines.append(f"| {name} | {ms:.1f} | {ms / ref:.2f} |")
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",) * 3
    lines += [
        "",
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {', '.join(f'{x:.2f}' for x in load)}; numpy {np.__version__}, pywt {pywt.__version__}",
    ]
    text = "\n".join(lines)
    print(text)
    return text


if __name__ == "__main__":
    main()
