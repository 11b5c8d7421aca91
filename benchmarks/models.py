"""Model zoo benchmark: parameters, FLOPs per megapixel and CPU forward speed per preset.

Speed is measured on square tiles (default 512x512) in eval mode under
``torch.inference_mode()``, in the default (NCHW) memory layout and in
``channels_last``, in the same run, so the ratio column compares like with like.

Usage::

    PYTHONPATH=. python benchmarks/models.py [--tile 512] [--batch 1] [--min-time 2] [--only unet16 ...]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from napari_segnets.models import build, count_parameters, presets


def rows() -> list[tuple[str, dict]]:
    """(label, build kwargs) for every preset plus models matched to unet16's parameter budget."""
    out = []
    for arch, table in presets().items():
        if arch in ("fcn32s", "fcn16s"):
            continue  # same presets as fcn8s; FCN-8s is the one the comparison uses
        for name in table:
            kwargs = {"arch": arch, "preset": name}
            if arch in ("linear", "pca"):
                kwargs["task"] = "autoencode"
            out.append((f"{arch}:{name}", kwargs))
    with torch.device("meta"):
        budget = count_parameters(build("unet", preset="unet16"))
    for arch in ("atrous", "fcn8s", "fcn32s"):
        out.append((f"{arch}@unet16-budget", {"arch": arch, "budget": budget}))
    return out


def flops_per_mp(kwargs: dict, tile: int) -> float:
    """Convolution/matmul FLOPs (2 per multiply-add) per megapixel, counted on the meta device."""
    with torch.device("meta"):
        model = build(**kwargs).eval()
        x = torch.zeros(1, model.in_channels, tile, tile)
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(x)
    return counter.get_total_flops() / (tile * tile / 1e6)


def speed(
    model, tile: int, batch: int, channels_last: bool, min_time: float, max_iters: int
) -> float:
    """Megapixels per second of forward passes (one warm-up pass excluded)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    x = torch.rand(batch, model.in_channels, tile, tile).contiguous(memory_format=fmt)
    with torch.inference_mode():
        model(x)
        n, start = 0, time.perf_counter()
        while n < max_iters and (n < 1 or time.perf_counter() - start < min_time):
            model(x)
            n += 1
        elapsed = time.perf_counter() - start
    return n * batch * tile * tile / 1e6 / elapsed


def loadavg() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--min-time", type=float, default=2.0, help="seconds timed per layout")
    parser.add_argument("--only", nargs="*", help="labels to run (default: all)")
    args = parser.parse_args(argv)

    print(f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")  # fmt: skip
    print(f"load average before: {loadavg()}")
    print(f"tile {args.tile}x{args.tile}, batch {args.batch}, eval, inference_mode, float32\n")
    header = (f"| {'model':<24} | {'params':>11} | {'GFLOP/MP':>9} | {'halo':>4} | "
              f"{'MP/s NCHW':>9} | {'MP/s ch-last':>12} | {'ratio':>5} |")  # fmt: skip
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for label, kwargs in rows():
        if args.only and label not in args.only:
            continue
        torch.manual_seed(0)
        model = build(**kwargs).eval()
        gflop = flops_per_mp(kwargs, args.tile) / 1e9
        # Models needing > 50 GFLOP per batch are timed once per layout (after a warm-up).
        max_iters = 1 if gflop * args.batch * args.tile**2 / 1e6 > 50 else 50
        default = speed(model, args.tile, args.batch, False, args.min_time, max_iters)
        last = speed(model, args.tile, args.batch, True, args.min_time, max_iters)
        print(
            f"| {label:<24} | {count_parameters(model):>11,} | {gflop:>9.2f} | {model.halo:>4} | "
            f"{default:>9.3f} | {last:>12.3f} | {last / default:>5.2f} |",
            flush=True,
        )
        del model
    print(f"\nload average after: {loadavg()}")


if __name__ == "__main__":
    main()
