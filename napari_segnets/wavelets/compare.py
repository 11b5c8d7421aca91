"""Compare an original with model reconstructions, level by level: tables and plots.

Re-exported by :mod:`napari_segnets.wavelets`; use them from there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import metrics
from ..errors import InputError
from ..io.atomic import atomic_path
from .core import _as_image, _wavelet, decompose, level_labels, level_power, max_levels, mosaic

ORIGINAL = "original"


@dataclass
class Comparison:
    """Per-level power of an original and its reconstructions, with image metrics.

    Attributes
    ----------
    wavelet : str
    levels : int
        Number of detail levels (the arrays have ``levels + 1`` entries).
    labels : list of str
        ``"1"`` (finest) ... ``"L"``, ``"A"`` (final approximation), the array order.
    n_images : int
        How many images (crops, slices) the statistics are over.
    power : dict
        Name -> ``(mean, std)`` arrays of level power; ``"original"`` first.
    ratio : dict
        Model name -> mean power / the original's mean power, per level.
    metrics : dict
        Model name -> ``{"mse": (mean, std), "psnr": (mean, std), "ssim": (mean, std)}``.
    """

    wavelet: str
    levels: int
    labels: list[str]
    n_images: int
    power: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    ratio: dict[str, np.ndarray] = field(default_factory=dict)
    metrics: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)

    @property
    def models(self) -> list[str]:
        """Reconstruction names, in the order given."""
        return list(self.ratio)

    def to_dict(self) -> dict:
        """A JSON-serialisable copy."""
        return {
            "wavelet": self.wavelet,
            "levels": self.levels,
            "labels": self.labels,
            "n_images": self.n_images,
            "power": {
                k: {"mean": m.tolist(), "std": s.tolist()} for k, (m, s) in self.power.items()
            },
            "ratio": {k: v.tolist() for k, v in self.ratio.items()},
            "metrics": {k: {n: list(v) for n, v in d.items()} for k, d in self.metrics.items()},
        }


def _as_stack(array, what: str) -> np.ndarray:
    arr = np.asarray(array)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[0] == 0:
        raise InputError(
            f"{what} must be a 2D image or a 3D stack of crops (N, Y, X), got shape {arr.shape}."
        )
    for img in arr:
        _as_image(img)  # dtype and NaN checks with the shared messages
    return arr.astype(np.float64, copy=False)


def _image_metrics(
    orig: np.ndarray, recon: np.ndarray, data_range: float
) -> tuple[float, float, float]:
    from skimage.metrics import structural_similarity

    mse = metrics.mse(recon, orig)
    psnr = metrics.psnr(mse, data_range)
    side = min(orig.shape)
    win = min(7, side if side % 2 else side - 1)
    ssim = math.nan
    if win >= 3:
        ssim = float(structural_similarity(orig, recon, data_range=data_range, win_size=win))
    return mse, psnr, ssim


def _mean_std(values: np.ndarray) -> tuple[float, float]:
    # Perfect reconstructions give PSNR = inf; their spread is 0, not inf - inf = NaN.
    if np.all(values == values[0]):
        return float(values[0]), 0.0
    return float(np.mean(values)), float(np.std(values))


def compare(
    original, reconstructions: dict, wavelet="haar", levels=None, *, data_range=None
) -> Comparison:
    """Compare an original with reconstructions, per wavelet level and by MSE/PSNR/SSIM.

    Parameters
    ----------
    original : array_like
        A 2D image or a stack of crops ``(N, Y, X)``.
    reconstructions : dict
        Model name -> array of the original's shape.
    wavelet, levels
        As in :func:`napari_segnets.wavelets.decompose`; ``levels=None`` uses every
        level the crop size allows.
    data_range : float, optional
        Intensity range for PSNR and SSIM; default the original's max - min over all
        crops (1.0 if the original is constant).

    Returns
    -------
    Comparison
        Powers are mean and std over the crops; a model's ratio is its mean power
        divided by the original's mean power, per level (NaN where the original has
        none); metrics are mean and std over the crops (PSNR is ``inf`` for a perfect
        reconstruction; SSIM is NaN for images under 3 pixels a side).
    """
    w = _wavelet(wavelet)
    orig = _as_stack(original, "The original")
    if not isinstance(reconstructions, dict) or not reconstructions:
        raise InputError("reconstructions must be a non-empty dict of model name -> array.")
    if ORIGINAL in reconstructions:
        raise InputError(f"{ORIGINAL!r} is reserved for the original: rename that reconstruction.")
    recons = {}
    for name, rec in reconstructions.items():
        rec = _as_stack(rec, f"The reconstruction {name!r}")
        if rec.shape != orig.shape:
            raise InputError(
                f"The reconstruction {name!r} has shape {rec.shape[1:] if rec.shape[0] == 1 else rec.shape}, "
                f"the original {orig.shape[1:] if orig.shape[0] == 1 else orig.shape}: they must match."
            )
        recons[str(name)] = rec
    if levels is None:
        levels = max_levels(orig.shape[1:], w)
    if data_range is None:
        data_range = float(orig.max() - orig.min()) or 1.0

    def stats(stack):
        rows = np.stack([level_power(img, w, levels) for img in stack])
        return rows.mean(axis=0), rows.std(axis=0)

    table = Comparison(w.name, int(levels), level_labels(int(levels)), orig.shape[0])
    table.power[ORIGINAL] = stats(orig)
    ref = table.power[ORIGINAL][0]
    for name, rec in recons.items():
        table.power[name] = stats(rec)
        with np.errstate(divide="ignore", invalid="ignore"):
            table.ratio[name] = np.where(
                ref > 0, table.power[name][0] / np.where(ref > 0, ref, 1), np.nan
            )
        per = np.array([_image_metrics(o, r, data_range) for o, r in zip(orig, rec)])
        table.metrics[name] = {
            key: _mean_std(per[:, i]) for i, key in enumerate(("mse", "psnr", "ssim"))
        }
    return table


def _pm(mean: float, std: float, fmt: str = ".3g") -> str:
    return f"{mean:{fmt}} ± {std:.2g}"


def format_table(table: Comparison, what: str = "both", extra: dict | None = None) -> str:
    """Markdown tables of a :class:`Comparison`.

    Parameters
    ----------
    table : Comparison
    what : {"both", "power", "metrics"}
        The per-level power table (level 1 = finest first, ``A`` = final
        approximation last; mean ± std and each model's ratio to the original), the
        metrics table (MSE, PSNR, SSIM, mean ± std), or both.
    extra : dict, optional
        Model name -> {column: text} added to the metrics table (e.g. parameters).
    """
    if what not in ("both", "power", "metrics"):
        raise InputError(f"what must be 'both', 'power' or 'metrics', got {what!r}.")
    parts = []
    if what in ("both", "power"):
        head = ["level", ORIGINAL]
        for name in table.models:
            head += [name, f"{name} / orig."]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for i, label in enumerate(table.labels):
            name = {"1": "1 (finest)", "A": f"A (approx., {table.levels})"}.get(label, label)
            row = [name, _pm(table.power[ORIGINAL][0][i], table.power[ORIGINAL][1][i])]
            for model in table.models:
                mean, std = table.power[model]
                row += [_pm(mean[i], std[i]), f"{table.ratio[model][i]:.2f}"]
            lines.append("| " + " | ".join(row) + " |")
        parts.append("\n".join(lines))
    if what in ("both", "metrics"):
        cols = sorted({c for d in (extra or {}).values() for c in d}, key=str)
        head = ["model", "MSE", "PSNR (dB)", "SSIM", *cols]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for model in table.models:
            m = table.metrics[model]
            row = [model, _pm(*m["mse"]), _pm(*m["psnr"], ".2f"), _pm(*m["ssim"], ".3f")]
            row += [str((extra or {}).get(model, {}).get(c, "")) for c in cols]
            lines.append("| " + " | ".join(row) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def _figure_path(path) -> tuple[Path, str]:
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ("png", "svg"):
        raise InputError(f"Save figures as .png or .svg, got {path.name!r}.")
    return path, fmt


def _save(fig, path: Path, fmt: str, dpi: int, grey: bool = False) -> Path:
    with atomic_path(path) as tmp:
        if grey and fmt == "png":
            # Greyscale figures as 8-bit grey PNGs: a third of the size of matplotlib's RGBA.
            import io

            from PIL import Image

            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
            Image.open(buf).convert("L").save(tmp, format="PNG", optimize=True)
        else:
            fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")
    return path


def plot_power(table: Comparison, path, *, title: str | None = None, dpi: int = 100) -> Path:
    """Plot power against level, coarsest level on the left, finest on the right.

    Two panels: the normalised power (log scale, shaded ± one std over the crops),
    and each model's ratio to the original. One line per model. PNG or SVG by suffix.

    Returns
    -------
    Path
        The written file (saved atomically).
    """
    from matplotlib.figure import Figure

    path, fmt = _figure_path(path)
    order = list(range(len(table.labels)))[
        ::-1
    ]  # approximation first: frequency rises to the right
    x = np.arange(len(order))
    ticks = [table.labels[i] for i in order]
    fig = Figure(figsize=(10, 4))
    ax_p, ax_r = fig.subplots(1, 2)
    for name, (mean, std) in table.power.items():
        m, s = mean[order], std[order]
        style = {"color": "black", "lw": 2.5} if name == ORIGINAL else {"lw": 1.5}
        line = ax_p.plot(x, m, marker="o", ms=3, label=name, **style)[0]
        ax_p.fill_between(x, np.maximum(m - s, m * 1e-3), m + s, color=line.get_color(), alpha=0.15)
        if name != ORIGINAL:
            ax_r.plot(
                x, table.ratio[name][order], marker="o", ms=3, label=name, color=line.get_color()
            )
    ax_r.axhline(1.0, color="black", lw=1, ls="--")
    ax_p.set_yscale("log")
    ax_p.set_ylabel("share of energy")
    ax_r.set_ylabel("power / original's power")
    for ax in (ax_p, ax_r):
        ax.set_xticks(x, ticks)
        ax.set_xlabel("level (A = final approximation); finer →")
        ax.grid(alpha=0.3)
    ax_p.legend(fontsize=8)
    fig.suptitle(title or f"Normalised power per level ({table.wavelet}, {table.n_images} images)")
    return _save(fig, path, fmt, dpi)


def plot_mosaics(images: dict, path, wavelet="haar", level=1, *, dpi: int = 100) -> Path:
    """Save the wavelet mosaics of several images side by side (e.g. original + models).

    The first image is the reference: every mosaic (and image) uses its band ranges,
    so a reconstruction's weaker details look weaker (see ``mosaic(reference=...)``).

    Parameters
    ----------
    images : dict
        Name -> 2D image (all the same shape), shown left to right, the reference first.
    path : path-like
        ``.png`` or ``.svg``.
    wavelet, level
        As in :func:`napari_segnets.wavelets.mosaic`.
    """
    from matplotlib.figure import Figure

    path, fmt = _figure_path(path)
    if not images:
        raise InputError("No images to show: pass a dict of name -> 2D image.")
    n = len(images)
    # Panels at about one screen pixel per image pixel: fine detail must not alias away.
    h, w = np.shape(next(iter(images.values())))
    pw, ph = max(1.5, w / dpi), max(1.5, h / dpi)
    fig = Figure(figsize=(pw * n * 1.04, ph * 2 * 1.1 + 0.4))
    axes = fig.subplots(2, n, squeeze=False)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.9, wspace=0.04, hspace=0.08)
    first = np.asarray(next(iter(images.values())), dtype=np.float64)
    ref = decompose(first, wavelet, level)
    vmin, vmax = np.percentile(first, [0.5, 99.5])
    for col, (name, img) in enumerate(images.items()):
        img = np.asarray(img, dtype=np.float64)
        if img.shape != first.shape:
            raise InputError(
                f"{name!r} has shape {img.shape}, the first image {first.shape}: they must match."
            )
        axes[0, col].imshow(img, cmap="gray", vmin=vmin, vmax=vmax)
        shown = mosaic(img, wavelet, level, reference=ref)
        axes[1, col].imshow(shown, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axes[0, col].set_title(name, fontsize=9)
        for ax in axes[:, col]:
            ax.set_axis_off()
    fig.suptitle(
        f"Images (top) and level-{level} {wavelet} mosaics (bottom), all scaled like {next(iter(images))!r}",
        fontsize=9,
    )
    return _save(fig, path, fmt, dpi, grey=True)
