"""Peak resident memory of predict with its default windows on one large slice (issue 4).

The default CPU window is capped per model (engine.CPU_TILE_PIXELS, scaled by the net's width);
this measures what that cap costs in memory: one SIDE x SIDE uint8 slice in a Zarr store,
U-Net-16 with random weights, uint8 probabilities into a Zarr output.

    PYTHONPATH=. python benchmarks/default_window_memory.py [--side 8192] [--threads 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def _vm(key: str) -> float:
    """A /proc/self/status figure (VmHWM: peak resident, VmRSS: current) in MiB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith(key))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", type=int, default=8192)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    import numpy as np
    import torch
    import zarr

    from napari_segnets.inference import create_output, predict
    from napari_segnets.inference.engine import default_tile
    from napari_segnets.models import build

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build("unet", base=16).eval()
    with tempfile.TemporaryDirectory() as tmp:
        vol = zarr.open_array(Path(tmp) / "in.zarr", mode="w", shape=(1, args.side, args.side), dtype=np.uint8,
                              chunks=(1, 1024, 1024))
        vol[0] = np.random.default_rng(0).integers(0, 256, size=(args.side, args.side), dtype=np.uint8)
        out = create_output(Path(tmp) / "out.zarr", vol.shape, 1, "probabilities", chunks=(1, 1024, 1024))
        tile = default_tile(model, torch.device("cpu"), halo=model.halo, multiple=model.size_multiple,
                            batch_size=1, shape=(args.side, args.side))
        before = _vm("VmHWM")
        t0 = time.perf_counter()
        predict(model, vol, out=out, device="cpu")
        seconds = time.perf_counter() - t0
    print(f"U-Net-16, one {args.side}x{args.side} uint8 slice from Zarr, default windows {tile}, "
          f"{args.threads} threads: peak resident {_vm('VmHWM') / 1024:.2f} GiB (before predict "
          f"{before / 1024:.2f} GiB), {seconds:.1f} s, {args.side**2 / 1e6 / seconds:.2f} MP/s")


if __name__ == "__main__":
    main()
