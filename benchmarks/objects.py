"""Objects benchmark: object scores on held-out EPFL slices, and labelling/measuring speed and memory.

1. Accuracy. A U-Net-16 trained on EPFL/Lucchi training slices 0-23 (``--checkpoint``, or trained
   here with the README's train command for ``--minutes``) predicts slices 24-29; objects are made
   with the default options of ``napari-segnets objects`` (3D connected components of p >= 0.5,
   specks and fragments under a tenth of the typical object dropped) and scored against the 3D
   connected components of the ground truth: object F1 at IoU 0.5, AP over IoU 0.5:0.95, count
   error, volume-fraction error, mean matched-volume error (pixel IoU beside them).
2. Scale. A synthetic mask volume of ``--size-gb`` GB (uint8, random balls of radius 6-20 voxels,
   many crossing block faces) is written to a Zarr in /tmp in chunks; it is labelled block by block
   (``label_blockwise``) and measured (``measure`` on the lazy labels), each step in its own process
   so its peak RSS is its own. Prints MP/s and peak memory against the volume's size.

    PYTHONPATH=. python benchmarks/objects.py --seed 0                       # the real run (4.3 GB)
    PYTHONPATH=. python benchmarks/objects.py --minutes 0.3 --size-gb 0.05   # a smoke run
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
VOXEL = (5.0, 5.0, 5.0)  # EPFL/Lucchi FIB-SEM, nm


def machine() -> str:
    import psutil

    load = os.getloadavg()
    return (f"{platform.node()}, {os.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.0f} GiB RAM, "
            f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")


def table(rows: list[dict], columns: list[str]) -> str:
    def fmt(v):
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------- 1. accuracy on EPFL
def accuracy(args, work: Path) -> list[dict]:
    from napari_segnets import checkpoints, inference, metrics, objects
    from napari_segnets.io.public import load_public

    image, truth, _meta = load_public("lucchi")
    if image.shape[0] < 30:
        raise SystemExit("EPFL/Lucchi slices 0-29 are needed (../shared/data or $SEGNETS_DATA).")
    ckpt = args.checkpoint
    if ckpt is None:
        ckpt = str(work / "mito.safetensors")
        root = Path(os.environ.get("SEGNETS_DATA", REPO.parent / "shared" / "data")) / "epfl_lucchi_mitochondria"
        cmd = [sys.executable, "-m", "napari_segnets", "train",
               "--images", str(root / "training_slices000-029.tif"),
               "--masks", str(root / "training_groundtruth_slices000-029.tif"),
               "--val-slices", "24:30", "--arch", "unet", "--base", "16", "--minutes", str(args.minutes),
               "--seed", str(args.seed), "--out", ckpt, "--no-progress"]
        print("training:", " ".join(cmd[1:]), flush=True)
        t = time.perf_counter()
        subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        print(f"trained in {time.perf_counter() - t:.0f} s", flush=True)
    model, meta = checkpoints.load(ckpt)
    held = slice(24, 30)
    t = time.perf_counter()
    prob = inference.predict(model, image[held], output="probabilities", normalization=meta.get("normalization"))
    t_pred = time.perf_counter() - t
    gt = objects.label_objects(truth[held])
    fg = prob if prob.ndim == 3 else prob[-1]  # one-class models give (Z, Y, X), others (C, Z, Y, X)
    pixel = metrics.iou((fg >= 0.5).astype(np.uint8), (truth[held] > 0).astype(np.uint8))
    rows = []
    default = {"min_fraction": objects.FRAGMENT_FRACTION}  # as `napari-segnets objects` does by default
    for name, options in (("default (p >= 0.5; specks and fragments dropped)", default),
                          ("fragments kept (--min-fraction 0)", {}),
                          ("min size 1e5 nm^3", {"voxel_size": VOXEL, "min_size": 1e5, **default}),
                          ("split + min size", {"voxel_size": VOXEL, "min_size": 1e5, "split": "distance", **default})):
        t = time.perf_counter()
        pred = objects.label_objects(prob, **options)
        s = objects.score_objects(pred, gt, voxel_size=VOXEL)
        rows.append({"objects": name, "n_pred": s["n_pred"], "n_truth": s["n_truth"], "F1@0.5": s["f1"],
                     "precision": s["precision"], "recall": s["recall"], "AP 0.5:0.95": s["ap"],
                     "count error": s["count_error"], "VF error": s["volume_fraction_error"],
                     "matched vol. error": s["matched_volume_error"],
                     "pixel IoU": float(pixel),
                     "label s": time.perf_counter() - t})
    print(f"checkpoint {ckpt}; prediction of slices 24-29: {t_pred:.1f} s", flush=True)
    return rows


# ---------------------------------------------------------------- 2. scale
def write_volume(path: Path, shape, chunks, seed: int) -> int:
    """Random balls (radius 6-20 voxels) written chunk by chunk; returns how many balls."""
    import zarr

    rng = np.random.default_rng(seed)
    n = max(1, int(np.prod(shape) / 40**3))  # about 7 % of the volume in balls
    centres = rng.uniform(0, 1, (n, 3)) * np.asarray(shape)
    radii = rng.uniform(6, 20, n)
    arr = zarr.open_array(str(path), mode="w", shape=shape, chunks=chunks, dtype=np.uint8, zarr_format=2)
    for z0 in range(0, shape[0], chunks[0]):
        for y0 in range(0, shape[1], chunks[1]):
            for x0 in range(0, shape[2], chunks[2]):
                lo = np.array([z0, y0, x0])
                hi = np.minimum(lo + chunks, shape)
                near = np.all((centres + radii[:, None] >= lo) & (centres - radii[:, None] < hi), 1)
                block = np.zeros(tuple(hi - lo), np.uint8)
                for c, r in zip(centres[near], radii[near]):
                    a = np.maximum(np.floor(c - r).astype(int), lo)
                    b = np.minimum(np.ceil(c + r).astype(int) + 1, hi)
                    zz, yy, xx = np.ogrid[a[0]:b[0], a[1]:b[1], a[2]:b[2]]
                    inside = (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= r * r
                    block[tuple(slice(p - q, e - q) for p, e, q in zip(a, b, lo))] |= inside
                arr[tuple(slice(a, b) for a, b in zip(lo, hi))] = block * 255  # 0/255, as labs keep masks
    return n


def _peak_rss() -> int:
    """This process's peak resident memory in bytes (VmHWM: unlike ru_maxrss, not inherited over exec)."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _stage(which: str, mask: str, labels: str, block, queue) -> None:
    import zarr

    from napari_segnets import objects

    t, cpu = time.perf_counter(), time.process_time()
    if which == "label":
        result = objects.label_blockwise(zarr.open_array(mask, mode="r"), labels, block=block)
    else:
        lab = zarr.open_group(labels, mode="r")["0"]
        result = len(objects.measure(lab, voxel_size=VOXEL, block=block))
    seconds = time.perf_counter() - t
    queue.put((result, seconds, time.process_time() - cpu, _peak_rss()))


def scale(args, work: Path) -> list[dict]:
    side = int(round((args.size_gb * 1e9 / 4) ** (1 / 3)))
    shape = (side, 2 * side, 2 * side)  # a slab, as EM volumes are: Z smaller than Y, X
    chunks = tuple(args.chunks)
    mask = work / "mask.zarr"
    t = time.perf_counter()
    n_balls = write_volume(mask, shape, chunks, args.seed)
    gb = np.prod(shape) / 1e9
    print(f"synthetic volume {shape} uint8 = {gb:.2f} GB, {n_balls} balls, written in "
          f"{time.perf_counter() - t:.0f} s", flush=True)
    ctx = mp.get_context("spawn")
    rows = []
    for which in ("label", "measure"):
        queue = ctx.Queue()
        block = tuple(args.block) if args.block else None
        proc = ctx.Process(target=_stage, args=(which, str(mask), str(work / "labels.zarr"), block, queue))
        proc.start()
        result, seconds, cpu, peak = queue.get()
        proc.join()
        rows.append({"step": "label_blockwise" if which == "label" else "measure (lazy)",
                     "volume GB": float(gb), "objects": result, "seconds": seconds, "CPU s": cpu,
                     "MP/s": float(np.prod(shape) / 1e6 / seconds), "peak RSS GiB": peak / 2**30,
                     "volume / peak": float(np.prod(shape) / peak)})
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="a U-Net trained on slices 0-23 (default: train one)")
    ap.add_argument("--minutes", type=float, default=20, help="training time when no checkpoint (default 20)")
    ap.add_argument("--size-gb", type=float, default=4.3, help="synthetic volume size in GB (default 4.3)")
    ap.add_argument("--block", type=int, nargs=3, default=None,
                    help="block shape z y x (default: the Zarr chunks, 64 512 512)")
    ap.add_argument("--chunks", type=int, nargs=3, default=[64, 512, 512], help="chunks of the synthetic Zarr")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--skip-scale", action="store_true")
    ap.add_argument("--tmp", default=None, help="scratch folder (default: a new one in /tmp, removed after)")
    args = ap.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(args.tmp) if args.tmp else Path(tempfile.mkdtemp(prefix="segnets-objects-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"# objects benchmark, seed {args.seed}\nbefore: {machine()}", flush=True)
    try:
        if not args.skip_accuracy:
            rows = accuracy(args, work)
            print("\nEPFL/Lucchi slices 24-29 (model trained on 0-23), objects vs ground-truth 3D components\n")
            print(table(rows, list(rows[0])))
        if not args.skip_scale:
            rows = scale(args, work)
            print(f"\nblock-wise labelling and measuring, Zarr chunks {tuple(args.chunks)}, blocks "
                  f"{tuple(args.block) if args.block else 'from the chunks'}\n")
            print(table(rows, list(rows[0])))
    finally:
        if not args.tmp:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nafter: {machine()}")


if __name__ == "__main__":
    main()
