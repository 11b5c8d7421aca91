"""The review queue: predict a stack several ways, make objects, score them, most likely wrong first."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..objects.instances import fragments_note
from ..progress import Progress, drive
from .score import default_score, rank
from .signals import SIGNALS, add_signals

TTA_VIEWS = ("xy", "flip_y", "flip_x", "rot90")
QUEUE_FIRST = ("rank", "id", "score", "centroid_z_vox", "centroid_y_vox", "centroid_x_vox",
               "bbox_z0_vox", "bbox_y0_vox", "bbox_x0_vox", "bbox_z1_vox", "bbox_y1_vox", "bbox_x1_vox")


@dataclass
class Review:
    """What :func:`review` returns.

    ``labels`` are the objects (uint32, canonical ids); ``table`` has one row per object in
    queue order (most likely wrong first) with ``rank``, ``score``, the signals and the
    measurements; ``probability`` is the foreground probability (mean of the views).
    """

    labels: np.ndarray
    table: object
    probability: np.ndarray
    views: tuple
    notes: list = field(default_factory=list)


def default_views(shape, voxel_size) -> tuple:
    """Flips and a quarter turn of every slice.

    The xz and yz planes (orthoplane views) are not in the default: on an 18-slice EPFL crop they
    cost 10x the xy prediction (each plane of few rows is mostly mirrored halo) and no IoU gain has
    been measured yet (benchmarks/review.py); pass ``views=`` to use them.
    """
    return TTA_VIEWS


def review_iter(model, image, *, voxel_size=None, views=None, normalization=None, threshold: float = 0.5,
                min_size: float | None = None, min_voxels: int | None = None, split: str | None = None,
                min_fraction: float | None = None, score=None, autoencoder=None,
                reference=None, autoencoder_normalization=None, **predict_kwargs):
    """Rank the objects of a stack by how likely they are wrong; a progress generator returning a :class:`Review`.

    Parameters
    ----------
    model : torch.nn.Module
        A segmentation model (one foreground class, or class 0 = background).
    image : array-like (Z, Y, X) or (Y, X)
    voxel_size : sequence of float, optional
        nm per voxel, z-y-x (default 1 nm; decides whether the xz/yz planes are used).
    views : sequence of str, optional
        Predictions compared (see :mod:`napari_segnets.inference.orthoplane`); default
        :func:`default_views` (flips and a quarter turn). The objects come from the mean of all views.
    threshold, min_size, min_voxels, split, min_fraction
        As for :func:`napari_segnets.objects.label_objects` (``min_size`` in nm^3; specks under
        ``min_voxels``, default 2 x 2 x 2 voxels, are dropped). ``min_fraction`` drops fragments
        (objects under that share of the typical object) as ``napari-segnets objects`` does by
        default (0.1), but the review keeps them by default: a reviewer sees and judges every
        object, and the error bars estimate the count of a review of all of them. Dropped, small
        true objects would be outside the review and its intervals (on Drosophila 3 of 29 true
        objects were among the fragments, and the count intervals missed the truth every time).
    score : callable, optional
        ``score(table) -> array`` (e.g. a :class:`~napari_segnets.review.score.FittedScore`'s
        ``score``); default: the fixed rule :func:`~napari_segnets.review.score.default_score`.
    autoencoder : torch.nn.Module, optional
        An autoencoder trained on the training slices: adds the ``novelty`` signal
        (:mod:`napari_segnets.review.novelty`; not part of the default score). Needs ``reference``.
    reference : array-like (Z, Y, X) or (Y, X), optional
        The training slices the novelty is measured against.
    autoencoder_normalization : dict, optional
        The autoencoder's normalisation spec (its checkpoint's ``normalization``).
    **predict_kwargs
        Passed to :func:`~napari_segnets.inference.predict` (device, tile, amp ...); the
        autoencoder gets the same device, amp and batch size.
    """
    from ..inference.orthoplane import orthoplane_pays, predict_views_iter
    from ..objects import check_voxel_size

    shape = tuple(int(s) for s in np.shape(image))
    voxel = check_voxel_size(voxel_size, len(shape)) if voxel_size is not None else None
    views = tuple(views) if views is not None else default_views(shape, voxel)
    if len(views) < 2:
        raise InputError("Compare at least two views (e.g. 'xy' and 'flip_x') to find disagreements.")
    if (autoencoder is None) != (reference is None):
        raise InputError("Novelty needs both an autoencoder and the reference (training) slices it is measured "
                         "against; give both or neither.")
    preds = yield from predict_views_iter(model, image, views, normalization=normalization, **predict_kwargs)
    novelty = None
    if autoencoder is not None:
        from .novelty import reconstruct_iter

        ae_kwargs = {k: predict_kwargs[k] for k in ("device", "amp", "batch_size") if k in predict_kwargs}
        novelty = {"reconstruction": (yield from reconstruct_iter(
                       autoencoder, image, normalization=autoencoder_normalization, **ae_kwargs)),
                   "reference": reference,
                   "reference_reconstruction": (yield from reconstruct_iter(
                       autoencoder, reference, normalization=autoencoder_normalization, **ae_kwargs)),
                   "normalization": autoencoder_normalization}
    result = yield from review_views_iter(preds, image, voxel_size=voxel, threshold=threshold,
                                          min_size=min_size, min_voxels=min_voxels, split=split, score=score,
                                          novelty=novelty, min_fraction=min_fraction)
    if {"xz", "yz"} & set(views) and not orthoplane_pays(shape, voxel):
        result.notes.append("xz/yz views on a stack that is thin or not near isotropic (or of unknown voxel "
                            "size): the planes' objects look unlike the training sections")
    return result


def review_views_iter(views: dict, image, *, voxel_size=None, threshold: float = 0.5,
                      min_size: float | None = None, min_voxels: int | None = None, split: str | None = None,
                      score=None, novelty: dict | None = None, min_fraction: float | None = None):
    """:func:`review_iter` from views already predicted (``{view: class-first probabilities}``).

    ``novelty``: the keyword arguments of :func:`~napari_segnets.review.novelty.novelty_signals`
    after the labels and image (``reconstruction``, ``reference``, ``reference_reconstruction``,
    optionally ``normalization``, ``levels`` ...); None = no novelty signal.
    """
    from .. import objects
    from .signals import foreground_of

    shape = tuple(int(s) for s in np.shape(image))
    voxel = voxel_size
    fgs = {v: foreground_of(p, len(shape)).astype(np.float32, copy=False) for v, p in views.items()}
    prob = np.mean(list(fgs.values()), axis=0, dtype=np.float64).astype(np.float32)
    yield Progress("review", 0, 3, "objects")
    dropped: dict = {}
    labels = objects.label_objects(prob, voxel_size=voxel, min_size=min_size, min_voxels=min_voxels, split=split,
                                   threshold=threshold, min_fraction=min_fraction, report=dropped)
    yield Progress("review", 1, 3, f"measuring {int(labels.max())} objects")
    table = objects.measure(labels, np.asarray(image), voxel_size=voxel or (1.0,) * len(shape))
    yield Progress("review", 2, 3, "signals")
    found = None
    if novelty is not None:
        from .novelty import novelty_signals

        found = novelty_signals(labels, image, **novelty)
    add_signals(table, labels, fgs, voxel_size=voxel, threshold=threshold, novelty=found)
    table = ranked(table, score)
    yield Progress("review", 3, 3, f"{len(table)} objects ranked")
    notes = []
    if voxel is None:
        name_in_voxels(table)
        notes.append("no voxel size given: object sizes in the queue are in voxels")
    note = fragments_note(dropped, voxel, how="min_fraction=0 (CLI: --min-fraction 0)")
    if note:
        notes.append(note.rstrip("."))
    return Review(labels, table, prob, tuple(views), notes)


def name_in_voxels(table) -> None:
    """Measured at 1 nm per voxel for want of a voxel size: the columns say voxels, not nm (in place)."""
    renamed = {}
    for name, values in table.columns.items():
        for unit, vox in (("_nm3", "_vox3"), ("_nm2", "_vox2"), ("_nm", "_vox")):
            if name.endswith(unit):
                name = name[: -len(unit)] + vox
                break
        renamed.setdefault(name, values)  # centroid_z_nm == centroid_z_vox at 1 nm: keep one
    table.columns = renamed
    table.voxel_size = None


def review(model, image, **kwargs) -> Review:
    """The plain twin of :func:`review_iter`."""
    return drive(review_iter(model, image, **kwargs))


def ranked(table, score=None):
    """A copy of ``table`` with ``score`` and ``rank`` (1 = most likely wrong), rows in that order."""
    from ..objects import ObjectTable

    s = default_score(table) if score is None else np.asarray(score(table), float)
    order = rank(table, s)
    cols = {k: v[order] for k, v in table.columns.items()}
    cols["score"] = s[order]
    cols["rank"] = np.arange(1, len(order) + 1)
    first = [c for c in QUEUE_FIRST if c in cols]
    signals = [c for c in SIGNALS if c in cols and c not in first]
    rest = [c for c in cols if c not in first and c not in signals]
    return ObjectTable({c: cols[c] for c in first + signals + rest}, voxel_size=table.voxel_size,
                       shape=table.shape)


def audit_due(n_reviewed: int, audit_every: int) -> bool:
    """Whether the next pick, after ``n_reviewed`` objects, is a random audit (every ``audit_every``-th)."""
    return bool(audit_every) and (int(n_reviewed) + 1) % int(audit_every) == 0


def next_object(table, reviewed=(), *, audit_every: int = 0, seed: int = 0) -> int | None:
    """The id to review next: the highest-ranked object not yet reviewed.

    With ``audit_every = n > 0`` every n-th pick is instead a random unreviewed object (seeded by
    ``seed`` and the number reviewed so far): such audits of ordinary objects are what lets
    :func:`~napari_segnets.review.errorbars.error_bars` estimate the error of the objects nobody looks at.
    Returns None when every object was reviewed.
    """
    done = {int(i) for i in reviewed}
    left = [int(i) for i in table.ids if int(i) not in done]  # table rows are in queue order
    if not left:
        return None
    if audit_due(len(done), audit_every):
        rng = np.random.default_rng([int(seed), len(done)])
        return left[int(rng.integers(len(left)))]
    return left[0]


def describe_object(table, object_id: int) -> dict:
    """What a viewer needs to show one queue entry: where to jump, its box, and its signals in words.

    The text names at most three signals, the strongest first, and only those that say something
    about this object: a value above 0 (every signal is 0 when nothing is suspicious) that is
    higher than at least half of the other objects' values. "above n% of objects" is the share of
    the other objects with a lower value (objects that share the value are not counted below it).

    Returns
    -------
    dict
        ``id``, ``rank``, ``score``, ``center`` (z, y, x voxels, or y, x), ``box`` (lows and highs,
        end excluded), ``signals`` (name -> value), ``text`` (one line, the strongest signals first)
        and ``all_signals`` (every signal with its value and, when above 0, the share of the other
        objects below it, strongest first: the CSV's columns, compact enough for a narrow panel).
    """
    row = table.row(object_id)
    axes = "zyx" if "centroid_z_vox" in table.columns else "yx"
    center = tuple(float(row[f"centroid_{a}_vox"]) for a in axes)
    box = (tuple(int(row[f"bbox_{a}0_vox"]) for a in axes), tuple(int(row[f"bbox_{a}1_vox"]) for a in axes))
    i = table.index_of(object_id)
    names = [n for n in SIGNALS if n in table.columns]
    signals = {n: float(row[n]) for n in names}
    below = {}
    for n in names:
        v = np.asarray(table[n], float)
        others = np.delete(v, i)
        if np.isfinite(v[i]) and v[i] > 0 and len(others):
            below[n] = float(np.mean(np.where(np.isfinite(others), others, -np.inf) < v[i]))
    strongest = sorted((n for n in below if below[n] >= 0.5), key=lambda n: (-below[n], n))[:3]
    words = (", ".join(f"{n} {signals[n]:.3g} ({_above(below[n])})" for n in strongest)
             if strongest else "no signal stands out against the other objects")
    score = row.get("score", float("nan"))
    text = f"object {object_id}, rank {row.get('rank', '?')} of {len(table)}, score {score:.2f}: {words}"
    order = sorted(below, key=lambda n: (-below[n], n)) + [n for n in names if n not in below]
    every = ", ".join(f"{n} {_value(signals[n])}" + (f" ({100 * below[n]:.0f}%)" if n in below else "")
                      for n in order)
    return {"id": int(object_id), "rank": row.get("rank"), "score": row.get("score"), "center": center,
            "box": box, "signals": signals, "text": text, "all_signals": every}


def _value(v: float) -> str:
    return "n/a" if not np.isfinite(v) else ("0" if v == 0 else f"{v:.2g}")


def _above(share: float) -> str:
    return "above every other object" if share >= 1.0 else f"above {100 * share:.0f}% of objects"
