"""The FCN / atrous / U-Net autoencoder study (issue 6): which architecture keeps which frequencies?

FCN, atrous and U-Net autoencoders with the same number of weights, plus the PCA and
linear baselines, are trained on ISBI 2012 sections with the project's training loop
(:func:`napari_segnets.training.train_iter`: same steps, same seed, MSE, Adam) and
reconstruct crops of another microscope and tissue (the EPFL/Lucchi FIB-SEM stack)
through the one forward path (:func:`napari_segnets.inference.predict`); the
reconstructions are compared with the originals level by level
(:mod:`napari_segnets.wavelets`) and by MSE/PSNR/SSIM. Writes
docs/study/{study.md, study.json, power.png, mosaics.png} and prints the tables.

Run: ``python benchmarks/wavelet_study.py --seed 1 --minutes 15`` (``--help`` lists every
setting; the defaults are the ones in benchmarks/RESULTS.md). Smoke run:
``python benchmarks/wavelet_study.py --steps 3 --n-crops 4 --archs unet --baselines --out-dir /tmp/s``.
Research code: it lives here, not in the package.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from napari_segnets.errors import InputError
from napari_segnets.io.atomic import atomic_write_text
from napari_segnets.progress import Events, Progress, drive

DEFAULT_ARCHS = ("fcn32s", "fcn8s", "atrous", "unet")
DEFAULT_BASELINES = ("pca", "linear")
_EVENT_EVERY = 10  # training steps per progress event: enough for a live loss curve


def _read_stack(name: str, data_root) -> np.ndarray:
    from napari_segnets.io.public import load_public

    return load_public(name, data_root)[0]


def normalise(stack: np.ndarray) -> np.ndarray:
    """Percentile 1-99.8 normalisation fitted on the whole stack (the project's default)."""
    from napari_segnets.io.normalize import (
        apply_normalization,
        fit_normalization,
        normalization_spec,
    )

    return apply_normalization(stack, fit_normalization(stack, normalization_spec("percentile")))


def sample_crops(stack: np.ndarray, n: int, size: int, seed: int = 0) -> np.ndarray:
    """``n`` random ``size`` x ``size`` crops, cycling through the slices (seeded)."""
    z, h, w = stack.shape
    if size > h or size > w:
        raise InputError(
            f"Crops of {size} pixels do not fit slices of {h}x{w}: use a smaller crop."
        )
    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size), stack.dtype)
    for i in range(n):
        y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
        out[i] = stack[i % z, y : y + size, x : x + size]
    return out


def train_autoencoder(model, images, *, steps, minutes, batch_size, crop, lr, seed, device, stage):
    """Train ``model`` to reconstruct crops of ``images`` (Z, Y, X raw) with the project's loop.

    Percentile 1-99.8 normalisation fitted on the stack, seeded random crops with flips and
    90-degree rotations only (no elastic, intensity or noise augmentation: the study compares
    architectures, not augmentations), MSE, Adam with the cosine schedule.

    Yields Progress events (``payload={"loss", "step"}``); returns a history dict
    (``steps``, ``final_loss`` = mean loss of the last 20 steps, ``losses``).
    """
    from napari_segnets.io.normalize import normalization_spec
    from napari_segnets.training import SliceDataset, train_iter

    job = train_iter(
        model, SliceDataset(images, name="study"), task="autoencode", epochs=1,
        steps_per_epoch=steps, minutes=minutes, batch_size=batch_size, crop=crop, lr=lr,
        loss="mse", optimizer="adam", schedule="cosine", device=device, seed=seed,
        checkpoint=None, normalization=normalization_spec("percentile"),
        augment={"flips": True, "elastic_p": 0.0, "intensity_p": 0.0, "noise_p": 0.0},
    )  # fmt: skip
    losses = []
    run = Events(job)
    try:
        for event in run:
            if event.stage != "train":  # the loop's per-epoch summaries repeat the loss
                continue
            losses.append(float(event.payload.get("loss", np.nan)))
            if event.done == 1 or event.done % _EVENT_EVERY == 0 or event.done == event.total:
                mean = np.nanmean(losses[-_EVENT_EVERY:])
                msg = f"step {event.done}/{event.total} loss {mean:.5f}"
                yield Progress(stage, event.done, event.total, msg, dict(event.payload))
    finally:
        job.close()
    result = run.result
    if result.model is not model:  # the loop hands back its best weights
        model.load_state_dict(result.model.state_dict())
    model.eval()
    return {
        "steps": int(result.steps),
        "final_loss": float(np.mean(losses[-20:])),
        "losses": losses,
    }


def reconstruct(model, crops, *, device, stage):
    """Reconstruct every (already normalised) crop through :func:`napari_segnets.inference.predict_iter`."""
    from napari_segnets.inference import predict_iter
    from napari_segnets.io.normalize import normalization_spec

    out = np.empty(crops.shape, np.float32)
    job = predict_iter(
        model, np.ascontiguousarray(crops, np.float32), output="reconstruction", device=device,
        normalization=normalization_spec("none"), out=out,
    )  # fmt: skip
    for event in job:
        yield Progress(stage, event.done, event.total, event.message)
    return out


def _build(arch: str, budget: int | None, seed: int):
    import torch

    from napari_segnets.models import build

    torch.manual_seed(seed)
    if arch in ("pca", "linear"):
        return build(arch, task="autoencode")
    return build(arch, task="autoencode", budget=budget)


def run_study_iter(
    *,
    data_root=None,
    out_dir="docs/study",
    archs=DEFAULT_ARCHS,
    baselines=DEFAULT_BASELINES,
    budget: int = 100_000,
    steps: int = 200,
    minutes: float | None = 12.0,
    batch_size: int = 8,
    crop: int = 64,
    lr: float = 1e-3,
    n_crops: int = 100,
    test_crop: int = 256,
    margin: int = 16,
    wavelet: str = "haar",
    seed: int = 0,
    crop_seed: int | None = None,
    device: str = "cpu",
    train_images=None,
    test_images=None,
    figure_crop: int = 0,
):
    """Run the study, yielding progress; returns a result dict.

    Parameters
    ----------
    data_root : path, optional
        Folder holding ``isbi2012_em_segmentation/`` and ``epfl_lucchi_mitochondria/``
        (default: where :func:`napari_segnets.io.public.find_dataset` looks). Not read when
        both image arguments are given.
    out_dir : path or None
        Where the table (``study.md``), numbers (``study.json``) and figures
        (``power.png``, ``mosaics.png``) go; None writes nothing.
    archs, baselines : sequence of str
        Conv nets (matched to ``budget`` weights) and baselines (``"pca"`` is fitted,
        ``"linear"`` trained like the nets).
    steps, minutes : int, float
        Every trained model gets the same number of steps (same data, same order);
        ``minutes`` optionally caps each model's training time as well.
    batch_size, crop, lr : training settings (Adam, MSE loss).
    n_crops, test_crop, margin : int
        Test crops of the Lucchi stack; each is reconstructed with ``margin`` pixels of
        context each side that are cut away afterwards.
    wavelet, seed, crop_seed, device
        Wavelet for the analysis; seed for weights and batches (and for the test crops unless
        ``crop_seed`` is given); torch device.
    train_images, test_images : array, optional
        ``(Z, Y, X)`` stacks used instead of the public data (raw intensities).
    figure_crop : int
        Which test crop the mosaic figure shows.

    Yields
    ------
    Progress
        Stages ``"data"``, ``"train <arch>"``, ``"reconstruct <arch>"``, ``"analyse"``.
    """
    from napari_segnets.models import count_parameters, fit_pca
    from napari_segnets.wavelets import compare, format_table, plot_mosaics, plot_power

    yield Progress("data", 0, 2, "loading stacks")
    if train_images is None:
        train_images = _read_stack("isbi2012", data_root)
    if test_images is None:
        test_images = _read_stack("lucchi", data_root)
    train_raw = np.asarray(train_images)
    train = normalise(train_raw)  # for fit_pca; the training loop normalises the raw stack alike
    test = normalise(np.asarray(test_images))
    big = sample_crops(
        test, n_crops, test_crop + 2 * margin, seed if crop_seed is None else crop_seed
    )
    originals = big[:, margin : margin + test_crop, margin : margin + test_crop]
    yield Progress("data", 2, 2, f"{train.shape[0]} training sections, {n_crops} test crops")

    recons, info = {}, {}
    for arch in (*archs, *baselines):
        model = _build(arch, budget, seed)
        t0 = time.perf_counter()
        if arch == "pca":
            opts = {k: model.config[k] for k in ("patch", "components") if k in model.config}
            model = fit_pca(train, **opts, seed=seed)
            used, history = "fit_pca", {}
        else:
            history = yield from train_autoencoder(
                model, train_raw, steps=steps, minutes=minutes, batch_size=batch_size, crop=crop,
                lr=lr, seed=seed, device=device, stage=f"train {arch}",
            )  # fmt: skip
            used = "train_iter"
        seconds = time.perf_counter() - t0
        out = yield from reconstruct(model, big, device=device, stage=f"reconstruct {arch}")
        recons[arch] = out[:, margin : margin + test_crop, margin : margin + test_crop]
        info[arch] = {
            # PCA weights are fitted, not trained: count them all (requires_grad may be off)
            "parameters": count_parameters(model)
            if arch != "pca"
            else int(sum(p.numel() for p in model.parameters())),
            "train_seconds": round(seconds, 1),
            "trainer": used,
            **history,
        }

    yield Progress("analyse", 0, 1, "wavelet comparison")
    table = compare(originals, recons, wavelet)
    yield Progress("analyse", 1, 1, "done")
    extra = {
        k: {
            "weights": f"{v['parameters']:,}",
            "train s": f"{v['train_seconds']:.0f}",
            "steps": str(v.get("steps", "fit")),
        }
        for k, v in info.items()
    }
    markdown = format_table(table, extra=extra)
    result = {"table": table, "models": info, "markdown": markdown, "files": []}
    if out_dir is not None:
        out = Path(out_dir)
        settings = dict(
            budget=budget, steps=steps, minutes=minutes, batch_size=batch_size, crop=crop, lr=lr,
            n_crops=n_crops, test_crop=test_crop, margin=margin, wavelet=wavelet, seed=seed,
            crop_seed=crop_seed, train_shape=list(train.shape), test_shape=list(test.shape),
        )  # fmt: skip
        record = {"settings": settings, "models": info, "comparison": table.to_dict()}
        atomic_write_text(out / "study.json", json.dumps(record, indent=1, default=float) + "\n")
        atomic_write_text(out / "study.md", markdown)
        shown = {"original": originals[figure_crop]}
        shown.update({k: v[figure_crop] for k, v in recons.items()})
        title = (
            f"Power per {table.wavelet} level: {table.n_images} Lucchi crops of "
            f"{test_crop}x{test_crop} (mean ± std), models trained on ISBI 2012"
        )
        result["files"] = [
            str(out / "study.json"),
            str(out / "study.md"),
            str(plot_power(table, out / "power.png", title=title)),
            str(plot_mosaics(shown, out / "mosaics.png", wavelet, level=1)),
        ]
    return result


def run_study(callback=None, **kwargs) -> dict:
    """Run :func:`run_study_iter` to the end; ``callback`` receives every Progress."""
    return drive(run_study_iter(**kwargs), callback=callback)


def main(argv=None) -> dict:
    import torch

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
    p.add_argument("--crop-seed", type=int, default=None, help="test crops (default: --seed)")
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
        test_crop=args.test_crop, margin=args.margin, wavelet=args.wavelet, seed=args.seed,
        crop_seed=args.crop_seed,
    )  # fmt: skip
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print()
    print(result["markdown"])
    print(
        f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), load average at the end "
        f"{load}; {time.strftime('%Y-%m-%d')}; total {time.perf_counter() - start:.0f} s; "
        f"command: {' '.join([sys.executable, *sys.argv])}"
    )
    for name in result["files"]:
        print("wrote", name)
    return result


if __name__ == "__main__":
    main()
