"""Instances from a semantic result: connected components, hysteresis, splitting, filters.

Object ids are canonical: numbered 1, 2, ... in the raster order (z, y, x) of each
object's first voxel. The block-wise labelling (:mod:`.blockwise`) numbers the same
way, so both give identical arrays, and an id names the same object wherever the
labels are recomputed with the same options.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import InputError
from ..progress import Progress, drive
from ._input import check_voxel_size, foreground

SPLIT_METHODS = ("distance", "probability")


def structure(ndim: int, connectivity: int = 1, per_slice: bool = False) -> np.ndarray:
    """The neighbourhood of connected components (1 = faces, ndim = faces, edges and corners).

    ``per_slice`` cuts every link between slices: each section of an unaligned 2D
    stack gets its own objects.
    """
    from scipy import ndimage as ndi

    if not 1 <= int(connectivity) <= ndim:
        raise InputError(f"connectivity must be 1 to {ndim} for {ndim}D data, got {connectivity}.")
    st = ndi.generate_binary_structure(ndim, int(connectivity))
    if per_slice and ndim == 3:
        st[0] = False
        st[2] = False
    return st


def voxels_for_size(min_size: float | None, voxel_size) -> int:
    """The smallest object in voxels for a minimum size in nm^3 (nm^2 for 2D)."""
    if not min_size:
        return 0
    if min_size < 0:
        raise InputError(f"The minimum size must not be negative, got {min_size}.")
    if voxel_size is None:
        raise InputError(
            "A minimum size in nm^3 needs the voxel size; give it (CLI: --voxel-size Z,Y,X) or use a "
            "file that stores it."
        )
    return int(math.ceil(min_size / float(np.prod(voxel_size)) - 1e-9))


def speck_voxels(ndim: int, per_slice: bool = False) -> int:
    """The default smallest object in voxels: fewer than 2 x 2 x 2 = 8 voxels in 3D (2 x 2 = 4 pixels in
    2D or per slice) is a speck, not a structure the images resolve, and is dropped.

    Measured on EPFL/Lucchi slices 24-29 (a U-Net trained 15 min on 0-23, p >= 0.5): 5 of the 33
    objects were 1-5 voxels on one slice with p at most 0.55, matching nothing; the smallest true
    object had 666 voxels. Dropping specks gave 28 objects for 20 true (object F1 0.679 -> 0.750).
    The rule is in voxels, not nm^3, so it removes sampling noise at any resolution and no
    plausible organelle (a 40 nm synaptic vesicle is ~270 voxels at 5 nm, ~30 at 10 nm).
    """
    return 4 if ndim == 2 or per_slice else 8


def smallest_object(min_size, voxel_size, min_voxels, ndim: int, per_slice: bool) -> int:
    """Objects with fewer voxels are dropped: the larger of ``min_size`` (nm^3) and ``min_voxels``
    (``None``: :func:`speck_voxels`; 0 keeps every object)."""
    if min_voxels is None:
        specks = speck_voxels(ndim, per_slice)
    else:
        if isinstance(min_voxels, bool) or int(min_voxels) != min_voxels or min_voxels < 0:
            raise InputError(f"The minimum object size in voxels must be a whole number >= 0, got {min_voxels!r}.")
        specks = int(min_voxels)
    return max(voxels_for_size(min_size, voxel_size), specks)


FRAGMENT_FRACTION = 0.1
"""Objects under a tenth of the typical object are fragments: what `objects`, the Objects widget and
`evaluate --objects` drop from a prediction by default (0 keeps them). `review` keeps them unless told:
a reviewer judges every object, and its error bars estimate the count of a review of all of them.

Measured on nine predictions of held-out slices (U-Nets trained 5-15 min: EPFL/Lucchi, 5 models;
Drosophila/Gerhard 2013, 4 models; ``benchmarks/fragments.py``, the README's predict and evaluate):
the models predicted 28-230 objects for 20-29 true ones, most of the extra ones fragments of a few
hundred voxels. Dropping those under 0.1 of the typical object took the count error from +8..+201
to -5..+2 objects and object F1 from 0.18-0.75 to 0.75-0.95; the same rule on the truth drops 1-3
true objects (pieces cut by the stack's edges), which is its cost. The typical object is the
volume-weighted median (:func:`typical_size`), which fragments do not move, however many there are.
"""
MIN_OBJECTS_FOR_TYPICAL = 5


def typical_size(sizes) -> float:
    """The volume-weighted median object size: half of all object voxels lie in objects at least
    this big. Unlike the plain median it stays put when most objects are tiny fragments."""
    sizes = np.sort(np.asarray(sizes, np.float64).ravel())
    sizes = sizes[sizes > 0]
    if sizes.size == 0:
        return 0.0
    total = np.cumsum(sizes)
    return float(sizes[int(np.searchsorted(total, total[-1] / 2))])


MAX_FRAGMENT_SHARE = 0.2
"""Objects under the cut are fragments only while they hold at most this share of all object voxels.
Fragments are many and small: on the nine predictions of ``benchmarks/fragments.py`` they held 0.9-8.3%
of the volume. Where the objects under the cut hold more, they are real objects beside one or a few
huge ones (touching objects merged into a network, say), which make the typical size; they are kept."""


def fragment_cut(sizes, fraction: float | None = FRAGMENT_FRACTION, *, guard: bool = True) -> int:
    """Objects of fewer voxels than this are fragments: ``fraction`` of :func:`typical_size`
    (0 when ``fraction`` is 0/None, when fewer than 5 objects give no typical size, or, with
    ``guard``, when the objects under it hold more than :data:`MAX_FRAGMENT_SHARE` of the voxels)."""
    if fraction is None or fraction == 0:
        return 0
    if isinstance(fraction, bool) or not 0 <= float(fraction) < 1:
        raise InputError(f"The fragment fraction must be a number in [0, 1), got {fraction!r}.")
    sizes = np.asarray(sizes)
    sizes = sizes[sizes > 0]
    if sizes.size < MIN_OBJECTS_FOR_TYPICAL:
        return 0
    cut = int(math.ceil(float(fraction) * typical_size(sizes)))
    return 0 if guard and _too_big_for_fragments(sizes, cut) else cut


def _too_big_for_fragments(sizes: np.ndarray, cut: int) -> bool:
    """Whether the objects under ``cut`` hold more than :data:`MAX_FRAGMENT_SHARE` of the voxels."""
    return bool(sizes[sizes < cut].sum() > MAX_FRAGMENT_SHARE * sizes.sum())


def _share_words(fraction) -> str:
    return "a tenth" if fraction is None or float(fraction) == 0.1 else f"{float(fraction):g} x"


def fragments_note(report: dict, voxel_size=None, *, how: str = "--min-fraction 0",
                   remedy: str = "--min-size drops small objects, --split separates touching ones") -> str:
    """A sentence on the fragments a labelling dropped, or kept as too big a share to be fragments
    (from its ``report``), or "". ``how`` says how to keep dropped fragments and ``remedy`` what else
    to use when they were kept, each in the caller's words (CLI flags or widget fields)."""
    share = _share_words(report.get("fraction"))
    kept = int(report.get("not_fragments", 0))
    if kept:
        return (f"{kept} objects under {share} of the typical object hold {report['not_fragments_share']:.0%} "
                "of the object volume, too much for fragments (beside a few huge objects, e.g. merged ones): "
                f"kept; {remedy}.")
    dropped, cut = int(report.get("fragments", 0)), int(report.get("fragment_cut", 0))
    if not dropped:
        return ""
    size = f"{cut} voxels"
    if voxel_size is not None:
        value = f"{cut * float(np.prod(voxel_size)):.2g}".replace("e+0", "e").replace("e+", "e")
        size += f", {value} {'nm^3' if len(voxel_size) == 3 else 'nm^2'}"
    return (f"{dropped} fragment{'s' if dropped != 1 else ''} under {share} of the typical object ({size}) "
            f"dropped; {how} keeps them.")


def border_faces(ndim: int, per_slice: bool) -> list[int]:
    """The axes whose two faces count as the volume border (not z for per-slice sections)."""
    return list(range(1, ndim)) if (per_slice and ndim == 3) else list(range(ndim))


def label_objects_iter(source, *, voxel_size=None, min_size: float | None = None,
                       min_voxels: int | None = None, split: str | None = None,
                       split_depth: float | None = None, drop_border: bool = False, per_slice: bool = False,
                       channel: int | None = None, threshold: float = 0.5,
                       seed_threshold: float | None = None, connectivity: int = 1,
                       probability_scale: float | None = None, min_fraction: float | None = None,
                       report: dict | None = None):
    """Label objects in memory; a progress generator returning uint32 labels (see :func:`label_objects`)."""
    fg = foreground(source, channel=channel, threshold=threshold, seed_threshold=seed_threshold,
                    probability_scale=probability_scale)
    ndim = len(fg.shape)
    voxel = check_voxel_size(voxel_size, ndim)
    if split not in (None, *SPLIT_METHODS):
        raise InputError(f"split must be one of {', '.join(SPLIT_METHODS)} (or None), got {split!r}.")
    if split == "probability" and not fg.is_probability:
        raise InputError("Splitting on the probability map needs probabilities, not a mask; use split='distance'.")
    smallest = smallest_object(min_size, voxel, min_voxels, ndim, per_slice)
    fragment_cut((), min_fraction)  # refuses a bad fraction before any work
    st = structure(ndim, connectivity, per_slice)
    from scipy import ndimage as ndi

    yield Progress("objects", 0, 3, "connected components")
    everything = tuple(slice(None) for _ in range(ndim))
    low, high = fg.block(everything)
    labels, n = ndi.label(low, structure=st)
    keep_seeded = None
    if high is not None:  # hysteresis: keep objects that reach the seed threshold somewhere
        keep_seeded = np.zeros(n + 1, bool)
        keep_seeded[np.unique(labels[high])] = True
        keep_seeded[0] = False
        labels = np.where(keep_seeded[labels], labels, 0)
    del low, high
    if split:
        yield Progress("objects", 1, 3, f"splitting touching objects ({split})")
        prob = fg.probability(everything) if split == "probability" else None
        labels = split_touching(labels, voxel, method=split, depth=split_depth, probability=prob,
                                per_slice=per_slice, connectivity=connectivity)
    yield Progress("objects", 2, 3, "filters and numbering")
    keep = object_filter(labels, smallest=smallest, drop_border=drop_border, per_slice=per_slice)
    if min_fraction:
        sizes = np.bincount(labels.ravel(), minlength=int(labels.max()) + 1 if labels.size else 1)
        keep = fragment_filter(sizes, keep, min_fraction, report)
    labels = canonical(labels, keep)
    yield Progress("objects", 3, 3, f"{int(labels.max())} objects")
    return labels


def label_objects(source, **kwargs) -> np.ndarray:
    """Label the objects of a mask or of probabilities, in memory.

    Parameters
    ----------
    source : array-like
        A mask (bool, 0/1, 0/255, label ids: nonzero = object) or probabilities: class-first
        (C, Z, Y, X) / (C, Y, X) as ``inference.predict`` returns them, or one foreground map.
    voxel_size : sequence of float, optional
        nm per voxel, z-y-x; needed for ``min_size`` and used by the distance transform.
    min_size : float, optional
        Objects smaller than this many nm^3 (nm^2 in 2D) are removed.
    min_voxels : int, optional
        Objects of fewer voxels are removed as specks; default :func:`speck_voxels` (8 in 3D, 4 in 2D
        or per slice); 0 keeps every object.
    split : {None, "distance", "probability"}
        Split touching objects by a seeded watershed on the distance transform or on the
        probability map; seeds are maxima at least ``split_depth`` above their saddle.
    split_depth : float, optional
        nm for ``"distance"`` (default: 3 of the smallest voxel side), probability for
        ``"probability"`` (default 0.1).
    drop_border : bool
        Remove objects touching the border of the volume (only y/x for ``per_slice``).
    per_slice : bool
        Label each slice on its own (unaligned 2D sections).
    channel, threshold, seed_threshold
        How probabilities become foreground (see :func:`napari_segnets.objects.foreground`);
        ``seed_threshold`` above ``threshold`` gives hysteresis.
    connectivity : int
        1 = face neighbours (default), up to ndim = corners too.
    min_fraction : float, optional
        Drop fragments: objects smaller than this fraction of the typical object
        (:func:`typical_size`, after the other filters). Off by default here, so ground truth is
        labelled whole; ``objects``, ``evaluate --objects`` and the Objects widget use
        :data:`FRAGMENT_FRACTION` (0.1) for predictions (the review keeps fragments unless told).
    report : dict, optional
        Filled with ``fragments`` (how many were dropped) and ``fragment_cut`` (the cut in voxels).

    Returns
    -------
    numpy.ndarray of uint32
        0 = background, objects numbered 1..N in raster order of their first voxel.
    """
    return drive(label_objects_iter(source, **kwargs))


def split_touching(labels: np.ndarray, voxel_size=None, *, method: str = "distance", depth=None,
                   probability=None, per_slice: bool = False, connectivity: int = 1) -> np.ndarray:
    """Split touching objects with a seeded watershed; never merges, never drops voxels.

    Returns int64 labels (not canonical: pass them through :func:`canonical`).
    """
    from scipy import ndimage as ndi
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    labels = np.asarray(labels)
    if per_slice and labels.ndim == 3:
        out = np.zeros(labels.shape, np.int64)
        offset = 0
        for z in range(labels.shape[0]):
            part = split_touching(labels[z], None if voxel_size is None else voxel_size[1:], method=method,
                                  depth=depth, probability=None if probability is None else probability[z],
                                  connectivity=min(connectivity, 2))
            out[z] = np.where(part > 0, part + offset, 0)
            offset = max(offset, int(out[z].max()))
        return out
    mask = labels > 0
    if not mask.any():
        return labels.astype(np.int64)
    spacing = tuple(voxel_size) if voxel_size is not None else (1.0,) * labels.ndim
    if method == "distance":
        landscape = ndi.distance_transform_edt(mask, sampling=spacing)
        h = 3 * min(spacing) if depth is None else float(depth)
    else:
        if probability is None:
            raise InputError("Splitting on the probability map needs the probabilities.")
        sigma = [min(spacing) / s for s in spacing]  # one finest voxel, in each axis's voxels
        landscape = ndi.gaussian_filter(np.asarray(probability, np.float32), sigma) * mask
        h = 0.1 if depth is None else float(depth)
    st = structure(labels.ndim, connectivity)
    seeds, _ = ndi.label(h_maxima(landscape, h), structure=np.ones((3,) * labels.ndim, bool))
    out = watershed(-landscape, seeds, mask=mask, connectivity=st).astype(np.int64)
    # Objects too thin for a seed (all of them below ``h``) keep their component.
    rest = mask & (out == 0)
    if rest.any():
        out[rest] = labels[rest].astype(np.int64) + int(out.max())
    return out


def object_filter(labels: np.ndarray, *, smallest: int = 0, drop_border: bool = False,
                  per_slice: bool = False) -> np.ndarray | None:
    """A boolean keep-table indexed by label (None when nothing is filtered)."""
    if smallest <= 1 and not drop_border:
        return None
    top = int(labels.max()) if labels.size else 0
    keep = np.ones(top + 1, bool)
    if smallest > 1:
        keep &= np.bincount(labels.ravel(), minlength=top + 1) >= smallest
    if drop_border:
        for axis in border_faces(labels.ndim, per_slice):
            for face in (0, -1):
                keep[np.unique(np.take(labels, face, axis=axis))] = False
    keep[0] = False
    return keep


def fragment_filter(sizes: np.ndarray, keep: np.ndarray | None, fraction: float | None,
                    report: dict | None = None) -> np.ndarray:
    """The keep-table with fragments dropped (see :func:`fragment_cut`); ``sizes`` and ``keep`` are
    indexed by object id (0 = background), ``keep`` None = every object."""
    sizes = np.asarray(sizes)
    kept = (sizes > 0) if keep is None else np.array(keep, bool, copy=True)
    kept[0] = False
    cut = fragment_cut(sizes[kept], fraction, guard=False)
    small = kept & (sizes < cut)
    guarded = bool(cut) and _too_big_for_fragments(sizes[kept], cut)  # real objects beside a giant: kept
    fragments = small & (not guarded)
    if report is not None:
        report.update(fragments=int(fragments.sum()), fragment_cut=0 if guarded else cut, fraction=fraction)
        if guarded:
            report.update(not_fragments=int(small.sum()),
                          not_fragments_share=float(sizes[small].sum() / max(sizes[kept].sum(), 1)))
    return kept & ~fragments


def canonical(labels: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
    """Renumber objects 1..N in raster order of their first voxel (uint32); ``keep[id]`` False drops one."""
    flat = np.asarray(labels).ravel()
    nz = np.flatnonzero(flat)  # sort only the object voxels
    ids, first = np.unique(flat[nz], return_index=True)
    if keep is not None:
        ids, first = ids[keep[ids]], first[keep[ids]]
    order = np.argsort(first, kind="stable")
    table = np.zeros(int(flat.max()) + 1 if flat.size else 1, np.uint32)
    table[ids[order]] = np.arange(1, len(ids) + 1, dtype=np.uint32)
    return table[labels]
