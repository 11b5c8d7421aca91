"""Proofreading edits of instance labels, as lists of voxel changes.

Each function reads the labels and returns an :class:`Edit` (which voxels get which value,
which objects need measuring again, which are gone) without modifying anything. Applying it
is the caller's business: the Objects widget applies it through napari's ``data_setitem``
so napari's own undo reverts it; scripts call :meth:`Edit.apply`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError


@dataclass
class Edit:
    """Voxel changes of one proofreading step.

    ``changes`` is a list of ``(indices, value)``: ``indices`` a tuple of index arrays (as
    ``np.nonzero`` gives) set to ``value``. ``measure`` lists the ids to (re)measure,
    ``removed`` those that no longer exist.
    """

    what: str
    changes: list = field(default_factory=list)
    measure: list = field(default_factory=list)
    removed: list = field(default_factory=list)

    def apply(self, labels: np.ndarray) -> np.ndarray:
        for indices, value in self.changes:
            labels[indices] = value
        return labels

    @property
    def voxels(self) -> int:
        return int(sum(len(ix[0]) for ix, _v in self.changes))


def _present(labels, ids) -> list[int]:
    ids = sorted({int(i) for i in ids if int(i) != 0})
    found = set(np.unique(labels[np.isin(labels, ids)]).tolist()) if ids else set()
    missing = [i for i in ids if i not in found]
    if missing:
        raise InputError(f"Object(s) {missing} are not in the labels; pick existing objects.")
    return ids


def merge(labels: np.ndarray, ids) -> Edit:
    """Merge objects into the one with the smallest id."""
    ids = _present(labels, ids)
    if len(ids) < 2:
        raise InputError("Pick at least two objects to merge.")
    keep, others = ids[0], ids[1:]
    where = np.nonzero(np.isin(labels, others))
    return Edit(f"merge {ids} into {keep}", [(where, keep)], measure=[keep], removed=others)


def delete(labels: np.ndarray, ids) -> Edit:
    """Delete objects (their voxels become background)."""
    ids = _present(labels, ids)
    if not ids:
        raise InputError("Pick at least one object to delete.")
    return Edit(f"delete {ids}", [(np.nonzero(np.isin(labels, ids)), 0)], removed=ids)


def split(labels: np.ndarray, object_id: int, *, seeds=None, voxel_size=None, depth=None) -> Edit:
    """Split one object: at two or more seed points (voxel coordinates), or automatically.

    With seeds, a watershed on the object's distance transform grows one part from each seed;
    without, seeds are the distance maxima deeper than ``depth`` nm (as ``label_objects(split=...)``).
    The part holding the first seed (or the largest part) keeps the id; the others get new ids
    above the current maximum.
    """
    from scipy import ndimage as ndi
    from skimage.segmentation import watershed

    from .instances import split_touching

    (object_id,) = _present(labels, [object_id])
    box = ndi.find_objects((labels == object_id).astype(np.uint8))[0]
    crop = labels[box] == object_id
    if seeds is not None:
        seeds = [tuple(int(round(float(c))) for c in s) for s in seeds]
        markers = np.zeros(crop.shape, np.int32)
        for k, point in enumerate(seeds, start=1):
            if len(point) != labels.ndim:
                raise InputError(f"Seed {point} needs {labels.ndim} coordinates.")
            local = tuple(p - b.start for p, b in zip(point, box))
            if not all(0 <= q < s for q, s in zip(local, crop.shape)) or not crop[local]:
                raise InputError(f"Seed {point} is not inside object {object_id}; click inside it.")
            markers[local] = k
        if len(seeds) < 2:
            raise InputError("Give at least two seeds (one per part).")
        spacing = voxel_size if voxel_size is not None else (1.0,) * labels.ndim
        dist = ndi.distance_transform_edt(crop, sampling=spacing)
        parts = watershed(-dist, markers, mask=crop)
        first = 1
    else:
        parts = split_touching(crop.astype(np.int32), voxel_size, depth=depth)
        ids, counts = np.unique(parts[parts > 0], return_counts=True)
        if len(ids) < 2:
            raise InputError(f"Object {object_id} has no narrowing to split at; click two seeds instead.")
        first = int(ids[np.argmax(counts)])
    ids = [int(i) for i in np.unique(parts) if i not in (0, first)]
    if not ids:
        raise InputError(f"Object {object_id} could not be split at those seeds; click further apart.")
    top = int(labels.max())
    changes, new = [], []
    for k, part in enumerate(ids, start=1):
        local = np.nonzero(parts == part)
        changes.append((tuple(ix + b.start for ix, b in zip(local, box)), top + k))
        new.append(top + k)
    return Edit(f"split {object_id} into {[object_id, *new]}", changes, measure=[object_id, *new])


def filter_ids(table, *, min_size: float | None = None, max_size: float | None = None,
               drop_border: bool = False) -> list[int]:
    """Ids of the objects a size (nm^3, or nm^2 in 2D) or border filter removes from a measured table."""
    size = table["volume_nm3"] if "volume_nm3" in table.columns else table["area_nm2"]
    out = np.zeros(len(table), bool)
    if min_size is not None:
        out |= size < float(min_size)
    if max_size is not None:
        out |= size > float(max_size)
    if drop_border:
        out |= np.asarray(table["touches_border"], bool)
    return table.ids[out].tolist()


def relabel_sequential(labels: np.ndarray) -> tuple[Edit, dict]:
    """Renumber objects 1..N in raster order of their first voxel; returns the edit and old -> new ids."""
    flat = labels.ravel()
    ids, first = np.unique(flat, return_index=True)
    keep = ids != 0
    ids, first = ids[keep], first[keep]
    ids = ids[np.argsort(first, kind="stable")]
    mapping = {int(old): k for k, old in enumerate(ids.tolist(), start=1) if int(old) != k}
    changes = [(np.nonzero(labels == old), new) for old, new in mapping.items()]
    return Edit(f"relabel {len(mapping)} objects", changes), mapping


def add_to_store(store, image, labels, *, source: str, index: int, split: str = "train", note: str = "",
                 checkpoint=None) -> dict:
    """Add a corrected slice of object labels to a curated store as its semantic mask (0/1).

    The store trains semantic models, so the objects' ids are not kept: every object is class 1.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise InputError(f"Add one slice (Y, X) at a time, got shape {labels.shape}.")
    n = len(np.unique(labels)) - (1 if (labels == 0).any() else 0)
    mask = (labels != 0).astype(np.uint8)
    text = f"objects: {n} on this slice" + (f"; {note}" if note else "")
    return store.add(image, mask, source=source, index=index, split=split, note=text, checkpoint=checkpoint)
