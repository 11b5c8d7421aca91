"""Scale-out benchmark: chunked `predict` on a synthetic 2 GiB uint8 Zarr volume, 1 vs 2 Dask workers.

Usage::

    PYTHONPATH=. python benchmarks/scaleout.py              # 4 slices of the 512 x 2048 x 2048 volume
    PYTHONPATH=. python benchmarks/scaleout.py --slices 512 # the whole volume (hours on a 2-core CPU)

The volume (512 x 2048 x 2048 uint8 = 2 GiB) is written chunk by chunk to a Zarr store on
disk (never held in memory), from a tiled synthetic EM slab. Each run predicts the same
slices with a small U-Net (base 4, depth 1, random weights: speed does not depend on
them) through :func:`napari_segnets.distributed.predict_volume` on a fresh LocalCluster
(threads_per_worker=1; torch threads = cores / workers, as ``--workers N`` does), after
the workers have imported torch. Peak memory per worker is each worker process's
``ru_maxrss`` (which includes importing torch), beside its RSS just before the run; the
in-process row samples this process's RSS.
Everything in one run, so the ratios compare like with like.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

SHAPE = [512, 2048, 2048]  # 2 GiB of uint8; --shape changes it for a quick smoke run
CHUNKS = (1, 1024, 1024)
OUTPUT = "probabilities"  # float32: runs are compared by their largest difference, not by labels


def make_volume(path: Path) -> float:
    """Write the synthetic volume slice by slice; returns seconds (0 when it already exists)."""
    import zarr

    from napari_segnets.sample_data import synthetic_stack

    if path.exists():
        arr = zarr.open_array(str(path), mode="r")
        if arr.shape == tuple(SHAPE) and arr.attrs.get("complete"):
            return 0.0
        shutil.rmtree(path)
    t = time.perf_counter()
    slab, _ = synthetic_stack((8, 512, 512), seed=0)
    # Uncompressed: writing 2 GiB is then disk-bound, not CPU-bound, on a shared 2-core box.
    arr = zarr.create_array(str(path), shape=tuple(SHAPE), chunks=CHUNKS, dtype="uint8", compressors=None,
                            overwrite=True)
    reps = (SHAPE[1] // 512, SHAPE[2] // 512)
    # 32 distinct sections (the slab's 8, tiled and rolled 4 ways), repeated through the depth.
    planes = [np.roll(np.tile(slab[i % 8], reps), (37 * i, 53 * i), axis=(0, 1)) for i in range(32)]
    for z in range(SHAPE[0]):
        arr[z] = planes[z % 32]
    arr.attrs["complete"] = True
    return time.perf_counter() - t


def make_checkpoint(path: Path) -> int:
    import torch

    from napari_segnets import checkpoints
    from napari_segnets.io.normalize import normalization_spec
    from napari_segnets.models import build, count_parameters

    torch.manual_seed(0)
    model = build("unet", base=4, depth=1)
    checkpoints.save(path, model, {"normalization": normalization_spec()})
    return count_parameters(model)


def _warm(client) -> None:
    def load():
        import torch  # noqa: F401  (napari_segnets imports it lazily: do it before the clock starts)

        import napari_segnets.checkpoints  # noqa: F401
        import napari_segnets.inference.predict  # noqa: F401

        return True

    client.run(load)


def _peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _rss_mib():
    import psutil

    return psutil.Process().memory_info().rss / 2**20


class RssSampler(threading.Thread):
    """The largest RSS of this process while the in-process run goes."""

    def __init__(self):
        super().__init__(daemon=True)
        import psutil

        self.proc = psutil.Process()
        self.start_rss = self.proc.memory_info().rss
        self.peak = self.start_rss
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.05)


def run_cluster(n: int, ckpt: Path, volume: Path, out: Path, slices: int, threads: int | None = None) -> dict:
    import logging

    from distributed import Client, LocalCluster

    from napari_segnets.distributed import predict_volume

    threads = threads or max(1, (os.cpu_count() or 1) // n)  # as `--workers n` does by default
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=logging.ERROR)
    client = Client(cluster)
    try:
        _warm(client)
        start_rss = client.run(_rss_mib)
        t = time.perf_counter()
        result = predict_volume(ckpt, volume, out, scheduler=cluster.scheduler_address, torch_threads=threads,
                                slices=(0, slices), chunks=CHUNKS, output=OUTPUT, overwrite=True)
        seconds = time.perf_counter() - t
        peaks = client.run(_peak_rss_mib)
    finally:
        client.close()
        cluster.close()
    return {"mode": f"LocalCluster, {n} worker(s)", "workers": n, "threads": threads, "seconds": seconds,
            "chunks": result.chunks_computed, "peak": max(peaks.values()), "start": max(start_rss.values())}


def run_inprocess(ckpt: Path, volume: Path, out: Path, slices: int) -> dict:
    import torch

    from napari_segnets.distributed import predict_volume

    sampler = RssSampler()
    sampler.start()
    t = time.perf_counter()
    result = predict_volume(ckpt, volume, out, slices=(0, slices), chunks=CHUNKS, output=OUTPUT, overwrite=True)
    seconds = time.perf_counter() - t
    sampler.stop.set()
    sampler.join()
    mib = 1024 * 1024
    return {"mode": "in this process (no Dask)", "workers": 0, "threads": torch.get_num_threads(),
            "seconds": seconds, "chunks": result.chunks_computed, "peak": sampler.peak / mib,
            "start": sampler.start_rss / mib}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=4, help="slices to predict (default 4; 512 = all)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--no-inprocess", action="store_true", help="skip the in-process reference run")
    parser.add_argument("--workdir", default=None, help="where the volume goes (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the volume for another run")
    parser.add_argument("--shape", type=int, nargs=3, default=SHAPE, help="volume shape (multiples of 512)")
    args = parser.parse_args(argv)
    SHAPE[:] = args.shape
    import zarr

    work = Path(args.workdir or tempfile.mkdtemp(prefix="segnets-scaleout-"))
    work.mkdir(parents=True, exist_ok=True)
    volume, ckpt = work / "volume.zarr", work / "small-unet.safetensors"
    load_before = os.getloadavg()
    print(f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}")
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    gen = make_volume(volume)
    n_params = make_checkpoint(ckpt)
    mpx = args.slices * SHAPE[1] * SHAPE[2] / 1e6
    print(f"volume: {tuple(SHAPE)} uint8 = {np.prod(SHAPE) / 2**30:.1f} GiB Zarr, chunks {CHUNKS}, written in {gen:.0f} s "
          f"(0 = reused); predicting slices 0:{args.slices} = {mpx:.1f} MP")
    print(f"model: U-Net base 4, depth 1 ({n_params} weights), {OUTPUT} output (float32), "
          "1024x1024 chunks + halo")
    rows = []
    if not args.no_inprocess:
        rows.append(run_inprocess(ckpt, volume, work / "out-inprocess.zarr", args.slices))
    names = ["out-inprocess.zarr"] if not args.no_inprocess else []
    for n in args.workers:
        rows.append(run_cluster(n, ckpt, volume, work / f"out-{n}.zarr", args.slices))
        names.append(f"out-{n}.zarr")
    if 1 in args.workers and (os.cpu_count() or 1) > 1:
        # One worker with one thread too: separates process scale-out from torch's own threading.
        rows.append(run_cluster(1, ckpt, volume, work / "out-1t.zarr", args.slices, threads=1))
        names.append("out-1t.zarr")
    outputs = [zarr.open_array(str(work / name), mode="r")[...] for name in names]
    diff = max((float(np.abs(outputs[0] - o).max()) for o in outputs[1:]), default=0.0)
    base = next((r for r in rows if r["workers"] == 1), rows[0])
    print()
    print("| run | torch threads/worker | seconds | MP/s | vs 1 worker | peak RSS per worker (MiB) | RSS before the run (MiB) | whole 2 GiB volume (h, extrapolated) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        rate = mpx / r["seconds"]
        whole_h = SHAPE[0] * SHAPE[1] * SHAPE[2] / 1e6 / rate / 3600
        print(f"| {r['mode']} | {r['threads']} | {r['seconds']:.1f} | {rate:.2f} | "
              f"{base['seconds'] / r['seconds']:.2f}x | {r['peak']:.0f} | {r['start']:.0f} | {whole_h:.1f} |")
    print()
    print(f"largest difference between the runs' probabilities: {diff:.2g} "
          "(float rounding: workers with 1 torch thread sum in another order)")
    load_after = os.getloadavg()
    print(f"load average (1, 5, 15 min) before: {load_before[0]:.2f}, {load_before[1]:.2f}, {load_before[2]:.2f}; "
          f"after: {load_after[0]:.2f}, {load_after[1]:.2f}, {load_after[2]:.2f}")
    if not args.keep and args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if diff < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
