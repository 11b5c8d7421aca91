"""Sample data: synthetic EM-like stacks with ground truth, and the public EM datasets.

``python -m napari_segnets.sample_data --out sample_data/`` writes the committed sample stack.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from .errors import InputError

# Intensities of the synthetic model (1 = fully transparent to electrons, i.e. bright).
_CYTOPLASM, _MEMBRANE, _MITO, _MITO_MEMBRANE = 0.74, 0.28, 0.50, 0.26


def _upsample(coarse: np.ndarray, axis: int, n: int, step: int) -> np.ndarray:
    """Linear interpolation along ``axis`` from a grid of spacing ``step`` to ``n`` samples."""
    pos = np.arange(n) / step
    lo = np.floor(pos).astype(int)
    frac = (pos - lo).astype(np.float32)
    hi = np.minimum(lo + 1, coarse.shape[axis] - 1)
    shape = [1] * coarse.ndim
    shape[axis] = n
    frac = frac.reshape(shape)
    return np.take(coarse, lo, axis=axis) * (1 - frac) + np.take(coarse, hi, axis=axis) * frac


def _smooth_field(rng, shape, cell: float, zcorr: float) -> np.ndarray:
    """Zero-mean, unit-std noise that is smooth over ``cell`` px in-plane and ``zcorr`` slices in z."""
    from scipy import ndimage

    z, h, w = shape
    step = max(2, int(cell // 2))
    ch, cw = h // step + 2, w // step + 2
    coarse = rng.standard_normal((z, ch, cw)).astype(np.float32)
    coarse = ndimage.gaussian_filter(coarse, (zcorr, 1.0, 1.0), mode="wrap")
    # Separable linear upsampling: far cheaper than ndimage.zoom on the full grid.
    full = _upsample(_upsample(coarse, 1, h, step), 2, w, step)
    full -= full.mean()
    return full / (full.std() + 1e-6)


def _cells(rng, z: int, h: int, w: int, cell: float):
    """Seeds of a Voronoi tessellation drifting slowly through the stack: (z, n, 2) float array.

    A common stage drift plus a small, bounded wander per seed, so cells change shape smoothly
    and never scramble, however long the stack; the grid is widened to cover the drift.
    """
    drift = rng.normal(0, 0.4, 2)  # px per slice
    axes = []
    for size, d in zip((h, w), drift):
        span = abs(d) * (z - 1)
        start = -cell - (span if d > 0 else 0.0)  # seeds that drift into view start outside it
        n = int(np.ceil((size + 2 * cell + span) / cell)) + 1
        axes.append(start + (np.arange(n) + 0.5) * cell)
    gy, gx = np.meshgrid(*axes, indexing="ij")
    seeds = np.stack([gy.ravel(), gx.ravel()], 1)
    seeds += rng.uniform(-0.35, 0.35, seeds.shape) * cell
    amp = rng.uniform(0.04, 0.15, seeds.shape) * cell
    period = rng.uniform(30, 80, seeds.shape)
    phase = rng.uniform(0, 2 * np.pi, seeds.shape)
    t = np.arange(z)[:, None, None]
    wander = amp * (np.sin(2 * np.pi * t / period + phase) - np.sin(phase))
    return seeds[None] + drift * t + wander


def _mito_params(rng, seeds: np.ndarray, z: int, cell: float) -> list[dict]:
    """Ellipsoidal tubes attached to cells: position, axes, angle and z extent."""
    params = []
    for i in range(seeds.shape[1]):
        for _ in range(rng.poisson(0.7)):
            a = rng.uniform(0.16, 0.30) * cell
            params.append(
                {
                    "cell": i,
                    "offset": rng.uniform(-0.18, 0.18, 2) * cell,
                    "a": a,
                    "b": a * rng.uniform(0.4, 0.7),
                    "angle": rng.uniform(0, np.pi),
                    "spin": rng.normal(0, 0.04),
                    "z0": rng.uniform(-0.3 * z, 1.3 * z),
                    "length": rng.uniform(0.6, 2.0) * max(z, 2),
                    "period": rng.uniform(4.5, 7.0),
                    "phase": rng.uniform(0, 2 * np.pi),
                }
            )
    return params


def _draw_mito(img, mito_mask, owner, inside, m: dict, z: int, seeds_z) -> None:
    """Paint one mitochondrion cross-section (cristae + double membrane) into slice ``img``."""
    s = 1.0 - ((z - m["z0"]) / m["length"]) ** 2
    if s <= 0.15:
        return
    a, b = m["a"] * np.sqrt(s), m["b"] * np.sqrt(s)
    if b < 2.5:
        return
    cy, cx = seeds_z[m["cell"]] + m["offset"]
    h, w = img.shape
    y0, y1 = int(max(0, cy - a - 2)), int(min(h, cy + a + 3))
    x0, x1 = int(max(0, cx - a - 2)), int(min(w, cx + a + 3))
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    th = m["angle"] + m["spin"] * z
    u = (yy - cy) * np.cos(th) + (xx - cx) * np.sin(th)
    v = -(yy - cy) * np.sin(th) + (xx - cx) * np.cos(th)
    r = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    region = (r <= 1.0) & (owner[y0:y1, x0:x1] == m["cell"]) & inside[y0:y1, x0:x1]
    if not region.any():
        return
    depth = (1.0 - r) * b
    cristae = 0.13 * np.sin(2 * np.pi * u / m["period"] + m["phase"]) * np.clip(depth / 3.0, 0, 1)
    double = np.exp(-(((depth - 0.8) / 0.6) ** 2)) + np.exp(-(((depth - 2.6) / 0.6) ** 2))
    value = _MITO + cristae - (_MITO - _MITO_MEMBRANE) * np.clip(double, 0, 1)
    patch = img[y0:y1, x0:x1]
    patch[region] = value[region]
    mito_mask[y0:y1, x0:x1] |= region


def _vesicles(rng, img, free, n: int) -> None:
    """Small round vesicles (dark rim, light lumen) in the cytoplasm."""
    h, w = img.shape
    for cy, cx, rad in zip(rng.uniform(0, h, n), rng.uniform(0, w, n), rng.uniform(1.8, 3.6, n)):
        y0, y1, x0, x1 = (
            int(max(0, cy - rad - 2)),
            int(min(h, cy + rad + 3)),
            int(max(0, cx - rad - 2)),
            int(min(w, cx + rad + 3)),
        )
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        d = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
        ring = np.exp(-(((d - rad) / 0.7) ** 2)) * 0.4
        lumen = (d < rad - 0.7) * 0.04
        ok = free[y0:y1, x0:x1]
        img[y0:y1, x0:x1] -= np.where(ok, ring - lumen, 0.0)


def synthetic_stack(
    shape=(8, 256, 256),
    seed: int = 0,
    *,
    cell_size: float = 48.0,
    membrane_width: float = 3.5,
    dose: float = 40.0,
) -> tuple[np.ndarray, dict]:
    """A synthetic EM-like stack with its ground truth; deterministic per ``seed``.

    Cells are a wavy Voronoi network of dark membranes a few pixels thick; mitochondria are dark
    textured ellipses with cristae-like stripes and a darker double membrane; the cytoplasm has
    vesicles and granular texture; everything drifts slowly through z, is blurred and carries
    shot noise.

    Parameters
    ----------
    shape : tuple of int
        ``(Z, Y, X)`` or ``(Y, X)``.
    seed : int
        Random seed; the same seed gives the same stack.
    cell_size : float
        Typical cell diameter in pixels.
    membrane_width : float
        Membrane thickness in pixels.
    dose : float
        Electrons per pixel at full brightness (lower = noisier).

    Returns
    -------
    image : numpy.ndarray
        uint8, membranes and mitochondria dark on a light background.
    labels : dict
        ``"membranes"`` and ``"mitochondria"`` (uint8 0/1) and ``"classes"`` (uint8: 0 cytoplasm,
        1 membrane, 2 mitochondrion).
    """
    from scipy import ndimage
    from scipy.spatial import cKDTree

    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3) or min(shape) < 1 or min(shape[-2:]) < 16:
        raise InputError(f"shape must be (Z, Y, X) or (Y, X) with Y, X >= 16, got {shape}.")
    flat = len(shape) == 2
    z, h, w = (1, *shape) if flat else shape
    rng = np.random.default_rng(seed)
    seeds = _cells(rng, z, h, w, cell_size)
    mitos = _mito_params(rng, seeds, z, cell_size)
    wave = 0.06 * cell_size
    dy = _smooth_field(rng, (z, h, w), cell_size / 2, 2.0) * wave
    dx = _smooth_field(rng, (z, h, w), cell_size / 2, 2.0) * wave
    shading = _smooth_field(rng, (z, h, w), cell_size * 2, 3.0)
    grain = rng.standard_normal((z, h, w)).astype(np.float32)
    grain = ndimage.gaussian_filter(grain, (0, 0.8, 0.8)) - ndimage.gaussian_filter(
        grain, (0, 2.5, 2.5)
    )
    grain /= grain.std() + 1e-6

    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    image = np.empty((z, h, w), np.float32)
    membranes = np.zeros((z, h, w), bool)
    mitochondria = np.zeros((z, h, w), bool)
    for k in range(z):
        pts = np.stack([(yy + dy[k]).ravel(), (xx + dx[k]).ravel()], 1)
        dist, idx = cKDTree(seeds[k]).query(pts, k=2)
        s1, s2 = seeds[k][idx[:, 0]], seeds[k][idx[:, 1]]
        # Exact distance to the bisector between the two nearest seeds: a band of constant width.
        edge = (
            (dist[:, 1] ** 2 - dist[:, 0] ** 2) / (2 * np.linalg.norm(s1 - s2, axis=1) + 1e-6)
        ).reshape(h, w)
        owner = idx[:, 0].reshape(h, w)
        half = membrane_width / 2
        membranes[k] = edge < half
        img = _CYTOPLASM + 0.035 * shading[k] + 0.05 * grain[k]
        img -= (_CYTOPLASM - _MEMBRANE) * np.exp(-((edge / half) ** 4))
        inside = edge > half + 1.0
        _vesicles(rng, img, inside, int(h * w / 900))
        for m in mitos:
            _draw_mito(img, mitochondria[k], owner, inside, m, k, seeds[k])
        image[k] = img
    image = ndimage.gaussian_filter(image, (0, 0.9, 0.9))
    counts = rng.poisson(np.clip(image, 0.02, 1.2) * dose).astype(np.float32)
    image = np.clip(counts / dose * 200.0 + 20.0, 0, 255).round().astype(np.uint8)
    membranes_u8 = membranes.astype(np.uint8)
    mito_u8 = (mitochondria & ~membranes).astype(np.uint8)
    classes = membranes_u8 + 2 * mito_u8
    labels = {
        "membranes": membranes_u8,
        "mitochondria": mito_u8,
        "classes": classes.astype(np.uint8),
    }
    if flat:
        image = image[0]
        labels = {k: v[0] for k, v in labels.items()}
    return image, labels


def load_public(name: str, root=None):
    """Load ``"isbi2012"``, ``"lucchi"`` or ``"drosophila"``; see :func:`napari_segnets.io.public.load_public`."""
    from .io.public import load_public as _load

    return _load(name, root)


def fetch_public(name: str, dest=None, *, base_url: str | None = None, files=None) -> Path:
    """Download a public dataset with hash checks; see :func:`napari_segnets.io.public.fetch_public`."""
    from .io.public import fetch_public as _fetch

    return _fetch(name, dest, base_url=base_url, files=files)


SAMPLE_SHAPE = (16, 256, 256)  # what the napari sample and the committed sample_data/ stack use
SAMPLE_VOXEL_NM = (40.0, 5.0, 5.0)


def _pieces(skeleton: np.ndarray, length: int, rng) -> list[np.ndarray]:
    """Cut a skeleton into pieces at most ``length`` long (along a randomly offset grid)."""
    from skimage.measure import label

    cut = skeleton.copy()
    oy, ox = rng.integers(length, size=2)
    cut[(np.arange(cut.shape[0]) + oy) % length == 0, :] = False
    cut[:, (np.arange(cut.shape[1]) + ox) % length == 0] = False
    lab = label(cut, connectivity=2)
    return [np.flatnonzero(lab.ravel() == i) for i in range(1, lab.max() + 1)]


def _paint(region: np.ndarray, budget: float, *, erode: int, width: int, rng) -> np.ndarray:
    """Strokes inside ``region``: skeleton pieces of the eroded region, drawn ``width`` wide."""
    from scipy import ndimage as ndi
    from skimage.morphology import disk, skeletonize

    inner = ndi.binary_erosion(region, disk(erode))
    pieces = _pieces(skeletonize(inner), 48, rng)
    chosen, length = [], 0
    for i in rng.permutation(len(pieces)):
        if length * width >= budget:
            break
        chosen.append(pieces[i])
        length += pieces[i].size
    centre = np.zeros(region.size, bool)
    centre[np.concatenate(chosen or [np.empty(0, np.int64)])] = True
    return ndi.binary_dilation(centre.reshape(region.shape), disk(width // 2)) & region


def simulate_strokes(
    labels: np.ndarray,
    *,
    fraction: float = 0.01,
    fg_share: float = 0.4,
    width: int = 3,
    seed: int = 0,
) -> np.ndarray:
    """Strokes from a 0/1 truth ``(Z, Y, X)``: 0 = not annotated, 1 = background, 2 = object.

    About ``fraction`` of each slice's pixels are painted, ``fg_share`` of them on objects
    (pieces of the skeletons of objects eroded by 2 pixels) and the rest on background (pieces
    of the skeleton of the background eroded by 6 pixels), each stroke ``width`` pixels wide.
    """
    rng = np.random.default_rng(seed)
    strokes = np.zeros(labels.shape, np.uint8)
    for z, truth in enumerate(labels > 0):
        budget = fraction * truth.size
        fg = _paint(truth, fg_share * budget, erode=2, width=width, rng=rng)
        bg = _paint(~truth, (1 - fg_share) * budget, erode=6, width=width, rng=rng)
        strokes[z][bg] = 1
        strokes[z][fg] = 2
    return strokes


def simulate_corrections(
    prediction: np.ndarray,
    labels: np.ndarray,
    strokes: np.ndarray,
    *,
    fraction: float = 0.005,
    width: int = 3,
    seed: int = 0,
) -> np.ndarray:
    """The strokes a user adds after looking at a prediction, in ilastik's convention.

    On each slice of ``strokes`` that holds any, about ``fraction`` of the pixels more are
    painted: background (1) inside false objects (predicted, not in the truth ``labels``) and
    object (2) inside missed parts, shared in proportion to their areas, as pieces of the skeletons
    of the wrong regions, not eroded (a bloated rim a few pixels wide gets its stroke too), each
    ``width`` pixels wide and inside the region. Existing strokes are kept; a copy is returned.
    """
    rng = np.random.default_rng(seed)
    out = np.array(strokes, np.uint8, copy=True)
    for z in range(out.shape[0]):
        if not out[z].any():
            continue
        truth, pred = labels[z] > 0, prediction[z] > 0
        fp, fn = pred & ~truth, truth & ~pred
        wrong = int(fp.sum() + fn.sum())
        if wrong == 0:
            continue
        budget = fraction * truth.size
        bg = _paint(fp, budget * fp.sum() / wrong, erode=0, width=width, rng=rng)
        fg = _paint(fn, budget * fn.sum() / wrong, erode=0, width=width, rng=rng)
        out[z][bg & (out[z] == 0)] = 1
        out[z][fg & (out[z] == 0)] = 2
    return out


def write_sample(
    out: str | os.PathLike, shape=SAMPLE_SHAPE, seed: int = 0, strokes: bool = False
) -> list[Path]:
    """Write the synthetic stack and its masks as compressed TIFFs into ``out``; return the paths.

    ``strokes``: also ``synthetic_strokes.tif``, strokes simulated from the mitochondria mask in
    ilastik's convention (:func:`simulate_strokes`), to try sparse training (``train --sparse``).
    """
    import tifffile

    from .io.atomic import atomic_path

    out = Path(out)
    image, labels = synthetic_stack(shape, seed)
    arrays = [("image", image), *labels.items()]
    if strokes:
        arrays.append(("strokes", simulate_strokes(labels["mitochondria"], seed=seed)))
    written = []
    for name, arr in arrays:
        path = out / f"synthetic_{name}.tif"
        with atomic_path(path) as tmp:
            tifffile.imwrite(
                tmp,
                arr,
                compression="zlib",
                imagej=True,
                resolution=(1e3 / SAMPLE_VOXEL_NM[2], 1e3 / SAMPLE_VOXEL_NM[1]),
                metadata={
                    "axes": "ZYX"[-arr.ndim :],
                    "spacing": SAMPLE_VOXEL_NM[0] / 1e3,
                    "unit": "um",
                },
            )
        written.append(path)
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m napari_segnets.sample_data",
        description="Write the synthetic EM sample stack and its masks.",
    )
    parser.add_argument("--out", default="sample_data", help="output folder (default: sample_data)")
    parser.add_argument(
        "--shape", type=int, nargs="+", default=list(SAMPLE_SHAPE), help="Z Y X (or Y X)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--strokes", action="store_true",
                        help="also write synthetic_strokes.tif: strokes simulated from the mitochondria "
                        "mask (0 = not painted, 1 = background, 2 = object), for train --sparse")
    args = parser.parse_args(argv)
    for path in write_sample(args.out, tuple(args.shape), args.seed, strokes=args.strokes):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
