"""Benchmark tiled inference on the CPU: predict vs bare forward vs MONAI vs naive patches; peak memory.

One run prints one table (all ratios measured in the same run):

    PYTHONPATH=$PWD python benchmarks/inference.py            # 2048 x 2048, plus the 4 GB volume
    PYTHONPATH=$PWD python benchmarks/inference.py --memory-gb 0   # skip the volume

For U-Net (16 base channels) and atrous / FCN-8s matched to the U-Net's parameter budget:
- ``predict`` MP/s (uint8 image in, probabilities out, Gaussian blending, default tile/overlap);
- the bare model forward over the very same tiles (already normalised, in memory, same
  batch/channels_last/inference_mode): efficiency = predict / bare;
- MONAI ``sliding_window_inference`` with the same model, tile, overlap and Gaussian blending
  (sigma = tile / 8): as one would call it (model as built, image as is: border windows
  without outside context), and matched (image mirror-padded by the halo so it runs as
  many windows as predict, model in channels_last);
- naive per-pixel patch classification (each pixel classified from its own patch of
  ``2 * halo + size_multiple`` pixels, batches of 8), timed on a sample and extrapolated.
Then the peak resident memory of a subprocess predicting a synthetic uint8 Zarr volume of
``--memory-gb`` GB with a tiny two-layer net into a uint8 Zarr output.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np


def synthetic_image(size: int, seed: int = 0) -> np.ndarray:
    """A smooth EM-like uint8 image (blurred noise), deterministic."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    img = ndimage.gaussian_filter(rng.normal(size=(size, size)).astype(np.float32), 3)
    img = (img - img.min()) / (img.max() - img.min())
    return (img * 255).astype(np.uint8)


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def bench_model(name, model, img, repeats):
    import torch
    from monai.inferers import sliding_window_inference

    from napari_segnets.inference import make_plan, predict, read_window
    from napari_segnets.inference.engine import Runner, default_tile, prepared_model
    from napari_segnets.inference.tiling import align_up
    from napari_segnets.io.normalize import apply_normalization, fit_normalization

    mp = img.size / 1e6
    m, h = model.size_multiple, model.halo
    # predict's own default for this image (balanced windows, see engine.default_tile), spelled out
    # so that the bare forward and MONAI get the very same windows
    tile = default_tile(model, torch.device("cpu"), halo=h, multiple=m, batch_size=1, shape=img.shape)
    plan = make_plan(img.shape, tile=tile, halo=h, multiple=m, blend="gaussian")
    fitted = fit_normalization(img)
    kw = {"tile": tile, "blend": "gaussian", "normalization": fitted, "device": "cpu"}
    # Warm-ups run one window of the timed shape, so no path pays oneDNN's first-call setup.
    predict(model, img[: plan.core[0], : plan.core[1]], **kw)
    t_predict = best_of(lambda: predict(model, img, **kw), repeats)

    ty, tx = plan.tile
    tiles = [
        apply_normalization(
            read_window(img, None, cy - h, cy - h + ty, cx - h, cx - h + tx), fitted
        )
        for cy, cx in plan.positions()
    ]
    with prepared_model(model, torch.device("cpu")) as net:
        run = Runner(net, torch.device("cpu"), activation="sigmoid")
        batches = [np.stack(tiles[i : i + 1])[:, None] for i in range(len(tiles))]
        run.launch(batches[0], plan.tile)
        t_bare = best_of(lambda: [run.launch(b, plan.tile) for b in batches], repeats)

    norm = apply_normalization(img, fitted)
    # MONAI's int(roi * (1 - overlap)) step: nudge the fraction so the step is exactly tile - overlap.
    overlap = (plan.overlap[0] - 0.5) / ty

    def monai(x, crop=0):
        with torch.inference_mode():
            y = sliding_window_inference(
                x,
                (ty, tx),
                1,
                model,
                overlap=overlap,
                mode="gaussian",
                sigma_scale=0.125,
                padding_mode="reflect",
            )
            y = torch.sigmoid(y)
            return y[..., crop : y.shape[-2] - crop, crop : y.shape[-1] - crop] if crop else y

    model.eval()
    x_plain = torch.from_numpy(norm)[None, None]
    monai(x_plain[..., :ty, :tx])
    t_monai = best_of(lambda: monai(x_plain), repeats)
    # Same work and memory format as predict: the image mirror-padded by the halo (so border
    # pixels get context and MONAI runs as many windows), the model in channels_last.
    x_pad = torch.from_numpy(np.pad(norm, h, mode="reflect"))[None, None]
    model.to(memory_format=torch.channels_last)
    monai(x_pad[..., :ty, :tx])
    t_monai_cl = best_of(lambda: monai(x_pad, crop=h), repeats)
    model.to(memory_format=torch.contiguous_format)

    # Naive: every pixel from its own patch (the patch-classifier way of using a CNN).
    patch = align_up(2 * h + 1, m)
    padded = np.pad(apply_normalization(img, fitted), patch, mode="reflect")
    rng = np.random.default_rng(0)
    sample = rng.integers(0, img.shape[0], size=(16, 2))
    with torch.inference_mode():
        model.to(memory_format=torch.channels_last)
        t = time.perf_counter()
        for i in range(0, len(sample), 8):
            crops = [
                padded[
                    y + patch - patch // 2 : y + patch - patch // 2 + patch,
                    x_ + patch - patch // 2 : x_ + patch - patch // 2 + patch,
                ]
                for y, x_ in sample[i : i + 8]
            ]
            out = model(torch.from_numpy(np.stack(crops))[:, None])
            torch.sigmoid(out[:, :, patch // 2, patch // 2])
        t_naive = (time.perf_counter() - t) / len(sample) * img.size
        model.to(memory_format=torch.contiguous_format)
    return {
        "model": name,
        "params": sum(p.numel() for p in model.parameters()),
        "tile": f"{ty}x{tx} (halo {h}, overlap {plan.overlap[0]}, {len(plan)} tiles)",
        "predict": mp / t_predict,
        "bare": mp / t_bare,
        "monai": mp / t_monai,
        "monai_cl": mp / t_monai_cl,
        "naive": mp / t_naive,
    }


def memory_child(path: str, out_path: str) -> None:
    """Predict the Zarr volume at ``path`` into ``out_path``; print peak RSS and time."""
    import resource

    import torch
    import zarr
    from torch import nn

    from napari_segnets.inference import create_output, predict

    class Tiny(nn.Sequential):
        arch, task, in_channels, out_channels, size_multiple, halo = "tiny", "segment", 1, 1, 1, 2

        def check_input(self, shape):
            pass

    torch.manual_seed(0)
    model = Tiny(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1))
    vol = zarr.open_array(path, mode="r")
    out = create_output(out_path, vol.shape, 1, "probabilities", chunks=(1, 1024, 1024))
    t = time.perf_counter()
    predict(model, vol, tile=2048 + 4, blend="none", out=out, device="cpu")
    elapsed = time.perf_counter() - t
    # VmHWM, not getrusage: ru_maxrss survives exec and would count the benchmark's own memory.
    with open("/proc/self/status") as f:
        hwm = [ln for ln in f if ln.startswith("VmHWM")]
    peak = (
        int(hwm[0].split()[1]) * 1024
        if hwm
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    print(f"PEAK {peak} TIME {elapsed:.1f} CHECK {int(np.asarray(out[-1, :8, :8]).sum())}")


def memory_bench(gb: float, workdir: str, threads=None):
    import zarr

    side = 8192
    slices = max(1, int(round(gb * 1e9 / side**2)))
    path = os.path.join(workdir, "volume.zarr")
    vol = zarr.open_array(
        path, mode="w", shape=(slices, side, side), dtype=np.uint8, chunks=(1, 1024, 1024)
    )
    base = np.random.default_rng(0).integers(0, 256, size=(side, side), dtype=np.uint8)
    t = time.perf_counter()
    for z in range(slices):
        vol[z] = base + np.uint8(z)
    t_write = time.perf_counter() - t
    env = dict(os.environ, PYTHONPATH=os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res = subprocess.run(
        [sys.executable, __file__, "--memory-child", path, os.path.join(workdir, "out.zarr")]
        + (["--threads", str(threads)] if threads else []),
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("PEAK")][-1].split()
    return {
        "shape": (slices, side, side),
        "bytes": slices * side**2,
        "peak": int(line[1]),
        "seconds": float(line[3]),
        "write_seconds": t_write,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--memory-gb", type=float, default=4.3)
    parser.add_argument(
        "--models",
        default="unet,atrous,fcn8s",
        help="comma list; name:SIZE runs that model on a smaller image",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument("--memory-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        memory_child(*args.memory_child)
        return
    import torch

    from napari_segnets.models import build, count_parameters

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    img = synthetic_image(args.size)
    unet = build("unet", base=16).eval()
    budget = count_parameters(unet)
    rows = []
    for spec in filter(None, args.models.split(",")):
        name, _, size = spec.partition(":")
        model = unet if name == "unet" else build(name, budget=budget).eval()
        image = img[: int(size), : int(size)] if size else img
        rows.append(bench_model(name, model, image, args.repeats))
        rows[-1]["size"] = image.shape[0]
        print(f"# done {name}", file=sys.stderr, flush=True)
    print(
        f"\n{args.size}x{args.size} uint8 image (unless stated), CPU, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, float32, batch 1; MP/s = megapixels per second\n"
    )
    head = (
        "model",
        "weights",
        "tile",
        "predict",
        "bare fwd",
        "efficiency",
        "MONAI",
        "vs MONAI",
        "MONAI matched",
        "vs matched",
        "naive patch",
        "vs naive",
    )
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print(
            f"| {r['model']} ({r['size']}²) | {r['params']:,} | {r['tile']} | {r['predict']:.3f} | {r['bare']:.3f} | "
            f"{r['predict'] / r['bare']:.2f} | {r['monai']:.3f} | {r['predict'] / r['monai']:.2f}x | "
            f"{r['monai_cl']:.3f} | {r['predict'] / r['monai_cl']:.2f}x | {r['naive']:.2e} | "
            f"{r['predict'] / r['naive']:,.0f}x |"
        )
    if args.memory_gb > 0:
        with tempfile.TemporaryDirectory(dir=os.environ.get("SEGNETS_BENCH_TMP")) as tmp:
            mem = memory_bench(args.memory_gb, tmp, args.threads)
        print(
            f"\nPeak RSS predicting a {mem['bytes'] / 1e9:.2f} GB uint8 Zarr volume {mem['shape']} "
            f"(tiny 2-layer net, tile 2052, blend none, uint8 Zarr output): "
            f"{mem['peak'] / 2**30:.2f} GiB in {mem['seconds']:.0f} s "
            f"({mem['bytes'] / 1e6 / mem['seconds']:.1f} MP/s; writing the volume took "
            f"{mem['write_seconds']:.0f} s)"
        )


if __name__ == "__main__":
    main()
