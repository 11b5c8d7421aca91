"""The autoencoder study: which architecture keeps which spatial frequencies?

FCN, atrous and U-Net autoencoders with the same number of weights, plus the PCA
and linear baselines, are trained on ISBI 2012 sections and reconstruct crops of
another microscope and tissue (the EPFL/Lucchi FIB-SEM stack); the reconstructions
are compared with the originals level by level (:mod:`napari_segnets.wavelets`) and
by MSE/PSNR/SSIM.

``run_study_iter`` is the progress generator (the CLI's ``napari-segnets wavelets
study`` drives it), ``run_study`` its plain twin. Training uses the project's loop
(:mod:`napari_segnets.training`) when it offers ``task="autoencode"``, otherwise
the study's own minimal loop in :mod:`napari_segnets.study_train` (Adam + MSE,
seeded); the result says which one ran.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from .errors import InputError
from .io.atomic import atomic_write_text
from .progress import Progress, drive
from .study_train import normalise, reconstruct, train_autoencoder

DEFAULT_ARCHS = ("fcn32s", "fcn8s", "atrous", "unet")
DEFAULT_BASELINES = ("pca", "linear")
ISBI = ("isbi2012_em_segmentation", "train-volume.tif")
LUCCHI = ("epfl_lucchi_mitochondria", "training_slices000-029.tif")


def default_data_root() -> Path | None:
    """$SEGNETS_DATA, else ``shared/data`` beside the working directory or this checkout."""
    env = os.environ.get("SEGNETS_DATA")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve().parents[1]
    candidates += [Path.cwd().parent / "shared" / "data", here.parent / "shared" / "data"]
    return next((c for c in candidates if c.is_dir()), None)


def _read_stack(root: Path, parts: tuple[str, str]) -> np.ndarray:
    import tifffile

    path = root.joinpath(*parts)
    if not path.is_file():
        raise InputError(
            f"{path} is missing: point data_root (or $SEGNETS_DATA) at the shared data folder."
        )
    return tifffile.imread(path)


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


def _build(arch: str, budget: int | None, seed: int):
    import torch

    from .models import build

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
    device: str = "cpu",
    trainer: str = "auto",
    train_images=None,
    test_images=None,
    figure_crop: int = 0,
):
    """Run the study, yielding progress; returns a result dict.

    Parameters
    ----------
    data_root : path, optional
        Folder holding ``isbi2012_em_segmentation/`` and ``epfl_lucchi_mitochondria/``
        (default: :func:`default_data_root`). Not read when both image arguments are given.
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
        Test crops of the Lucchi stack; each is reconstructed with ``margin`` pixels
        of context each side that are cut away afterwards (no zero-padding border
        artefacts in the analysed area).
    wavelet, seed, device, trainer
        Wavelet for the analysis; seed for crops, weights and batches; torch device;
        ``"auto"``, ``"project"`` (:mod:`napari_segnets.training`) or ``"minimal"``.
    train_images, test_images : array, optional
        ``(Z, Y, X)`` stacks used instead of the public data (raw intensities).
    figure_crop : int
        Which test crop the mosaic figure shows.

    Yields
    ------
    Progress
        Stages ``"data"``, ``"train <arch>"``, ``"reconstruct"``, ``"analyse"``.
    """
    from .wavelets import compare, format_table, plot_mosaics, plot_power

    if trainer not in ("auto", "project", "minimal"):
        raise InputError(f"trainer must be 'auto', 'project' or 'minimal', got {trainer!r}.")
    yield Progress("data", 0, 2, "loading stacks")
    if train_images is None or test_images is None:
        root = Path(data_root) if data_root is not None else default_data_root()
        if root is None:
            raise InputError(
                "The public EM data were not found: pass data_root or set $SEGNETS_DATA."
            )
        train_images = _read_stack(root, ISBI) if train_images is None else train_images
        test_images = _read_stack(root, LUCCHI) if test_images is None else test_images
    train_raw = np.asarray(train_images)
    train = normalise(train_raw)  # for fit_pca; the training loops normalise the raw stack alike
    test = normalise(np.asarray(test_images))
    big = sample_crops(test, n_crops, test_crop + 2 * margin, seed)
    originals = big[:, margin : margin + test_crop, margin : margin + test_crop]
    yield Progress("data", 2, 2, f"{train.shape[0]} training sections, {n_crops} test crops")

    recons, info = {}, {}
    for arch in (*archs, *baselines):
        model = _build(arch, budget, seed)
        t0 = time.perf_counter()
        if arch == "pca":
            from .models import fit_pca

            opts = {k: model.config[k] for k in ("patch", "components") if k in model.config}
            model = fit_pca(train, **opts, seed=seed)
            used, history = "fit_pca", {}
        else:
            used, history = yield from train_autoencoder(
                model, train_raw, steps=steps, minutes=minutes, batch_size=batch_size, crop=crop,
                lr=lr, seed=seed, device=device, trainer=trainer, stage=f"train {arch}",
            )  # fmt: skip
        seconds = time.perf_counter() - t0
        out = yield from reconstruct(model, big, device=device, stage=f"reconstruct {arch}")
        recons[arch] = out[:, margin : margin + test_crop, margin : margin + test_crop]
        from .models import count_parameters

        info[arch] = {
            "parameters": count_parameters(model) if arch != "pca" else _pca_weights(model),
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
            train_shape=list(train.shape), test_shape=list(test.shape),
        )  # fmt: skip
        record = {"settings": settings, "models": info, "comparison": table.to_dict()}
        atomic_write_text(out / "study.json", json.dumps(record, indent=1, default=float) + "\n")
        atomic_write_text(out / "study.md", markdown)
        shown = {"original": originals[figure_crop]}
        shown.update({k: v[figure_crop] for k, v in recons.items()})
        result["files"] = [
            str(out / "study.json"),
            str(out / "study.md"),
            str(plot_power(table, out / "power.png", title=_title(table, test_crop))),
            str(plot_mosaics(shown, out / "mosaics.png", wavelet, level=1)),
        ]
    return result


def _pca_weights(model) -> int:
    # PCA weights are fitted, not trained: count them all (requires_grad may be off).
    return int(sum(p.numel() for p in model.parameters()))


def _title(table, size: int) -> str:
    return (
        f"Power per {table.wavelet} level: {table.n_images} Lucchi crops of {size}x{size} "
        "(mean ± std), models trained on ISBI 2012"
    )


def run_study(callback=None, **kwargs) -> dict:
    """Run :func:`run_study_iter` to the end; ``callback`` receives every Progress."""
    return drive(run_study_iter(**kwargs), callback=callback)
