"""Review decisions (accept / fix / delete) with provenance, and the curated samples they make.

A :class:`DecisionLog` is a JSON-lines file: one record per decision, appended under an exclusive
lock as one fsync'd line (the curated store's append, :mod:`napari_segnets.curation._manifest`), never
rewritten; the latest record of an object wins. Object ids only mean something in one queue's labels:
each record names its queue (``queue_id``, :func:`queue_fingerprint` of the labels), so one log (the
Objects widget's ``<store>-review.jsonl``) holds the decisions of several queues and
:meth:`DecisionLog.latest` reads one at a time. :func:`record_decision` also puts the reviewed region
into a :class:`~napari_segnets.curation.Store`: each slice of the object's box (grown by a margin),
labelled 1 = object / 0 = background, with the voxels of other, unreviewed objects set to the
ignore value, so fine-tuning learns from exactly what the reviewer looked at; deciding an object
again (``replaces=``) removes its earlier samples that the new ones do not supersede.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..errors import InputError, StoreError

DECISIONS = ("accept", "fix", "delete")
IGNORE = 255


class DecisionLog:
    """Append-only decisions of one review, in ``path`` (JSON lines)."""

    def __init__(self, path):
        self.path = Path(path)

    def append(self, record: dict) -> dict:
        from ..curation._manifest import append_record, exclusive_lock

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(self.path.with_name(self.path.name + ".lock")):
            append_record(self.path, record)
        return record

    def records(self) -> list[dict]:
        """Every complete record, oldest first (a torn last line from a killed writer is skipped)."""
        if not self.path.exists():
            return []
        out = []
        lines = self.path.read_bytes().split(b"\n")
        for k, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except ValueError as exc:
                if k == len(lines) - 1:  # torn tail: never committed
                    continue
                raise StoreError(f"{self.path} line {k + 1} is not valid JSON; the log was edited by hand.") from exc
        return out

    def latest(self, queue_id: str | None = None) -> dict:
        """Object id -> its latest decision record (only those made on queue ``queue_id``, when given).

        Ids are those of one queue's labels: a log that holds the decisions of several queues
        (re-ranked after a fine-tune) is read one queue at a time with ``queue_id``.
        """
        return {int(r["object"]): r for r in self.records() if r.get("kind") == "decision"
                and (queue_id is None or r.get("queue_id", "") == queue_id)}


def queue_fingerprint(labels) -> str:
    """A short id of a queue's labels: decisions name objects by id, and ids only mean something in these labels."""
    import hashlib

    arr = np.ascontiguousarray(np.asarray(labels), dtype=np.uint32)
    digest = hashlib.sha256(repr(arr.shape).encode())
    digest.update(memoryview(arr).cast("B"))
    return digest.hexdigest()[:16]


def fixed_mask(queue_labels, current_labels, object_id: int) -> np.ndarray:
    """The object as the reviewer left it, for a ``"fix"`` decision.

    ``queue_labels`` are the labels as ranked, ``current_labels`` the same after the reviewer's
    edits (paint, merge, split, delete). The object after the fix is every labelled voxel of its
    original footprint, plus all voxels of the ids found there that are its own id or ids the
    queue did not have (the pieces of a split, a new label painted over it): growth painted with
    those ids counts, a neighbouring object that only touches the footprint does not.
    """
    queue_labels = np.asarray(queue_labels)
    current = np.asarray(current_labels)
    if queue_labels.shape != current.shape:
        raise InputError("The edited labels no longer have the queue's shape; rank the objects again.")
    foot = queue_labels == int(object_id)
    if not foot.any():
        raise InputError(f"Object {object_id} is not in the queue's labels.")
    inside = np.unique(current[foot])
    own = [int(i) for i in inside if i != 0 and (i == int(object_id) or not (queue_labels == i).any())]
    return (foot & (current > 0)) | (np.isin(current, own) if own else False)


def voxels_of(labels, ids) -> dict:
    """id -> flat indices of its voxels in ``labels``, for ``ids`` (one pass): what :func:`match_reviewed` takes."""
    if not len(ids):
        return {}
    flat = np.asarray(labels).ravel()
    where = np.flatnonzero(np.isin(flat, np.asarray(ids, flat.dtype)))
    values = flat[where]
    order = np.argsort(values, kind="stable")
    found, starts = np.unique(values[order], return_index=True)
    return {int(i): part for i, part in zip(found, np.split(where[order], starts[1:]))}


def match_reviewed(reviewed: dict, labels, *, min_iou: float = 0.5) -> dict:
    """Objects of new labels that are objects already reviewed (after a re-rank): new id -> (old id, IoU).

    ``reviewed``: old id -> flat voxel indices of the object as the reviewer accepted or fixed it
    (:func:`voxels_of` of the old labels, or ``np.flatnonzero`` of a :func:`fixed_mask`).
    A new object matches the reviewed object it overlaps most when their IoU is at least ``min_iou``;
    each old object matches at most one new one.
    """
    flat = np.asarray(labels).ravel()
    sizes = np.bincount(flat)
    out = {}
    for old, idx in sorted(reviewed.items()):
        idx = np.asarray(idx, np.int64)
        if idx.size == 0:
            continue
        hits = np.bincount(flat[idx], minlength=1)
        hits[0] = 0
        new = int(np.argmax(hits))
        if new == 0 or new in out:
            continue
        overlap = int(hits[new])
        iou = overlap / float(sizes[new] + idx.size - overlap)
        if iou >= min_iou:
            out[new] = (int(old), iou)
    return out


def _region(mask: np.ndarray, margin: int):
    """The box of ``mask`` grown by ``margin`` in y and x, not in z: slices hold the samples."""
    from scipy import ndimage as ndi

    from .signals import _grow

    box = ndi.find_objects(mask.astype(np.uint8))[0]
    return _grow(box, mask.shape, margin, grow_z=False)


def record_decision(log: DecisionLog, *, object_id: int, decision: str, labels, fixed=None, image=None,
                    store=None, source: str = "", checkpoint=None, row: dict | None = None,
                    reviewer: str = "", note: str = "", margin: int = 8, split: str = "train",
                    queue_id: str = "", replaces: dict | None = None, audit: bool = False) -> dict:
    """Record one decision and, with a ``store``, add the reviewed region to it.

    Parameters
    ----------
    log : DecisionLog
    object_id : int
        The object's id in ``labels`` (the queue's labels).
    decision : {"accept", "fix", "delete"}
    labels : int array (Z, Y, X) or (Y, X)
        The labels the queue refers to (before the decision).
    fixed : bool array like ``labels``, optional
        For ``"fix"``: the object's corrected voxels (several pieces if it was a merge). Accept
        uses the object as it is, delete an empty mask.
    image : array like ``labels``, optional
        Needed with ``store``: the grey levels of the samples.
    store : napari_segnets.curation.Store, optional
        Where accepted, fixed and deleted objects' regions go (a deleted object teaches
        background where the model saw one).
    source, checkpoint
        Provenance: the image file and the checkpoint that made the prediction.
    row : dict, optional
        The object's queue row (rank, score, signals), kept in the record.
    queue_id : str, optional
        Which queue's ids these are (:func:`queue_fingerprint` of ``labels``), so one log can
        hold the decisions of several queues (:meth:`DecisionLog.latest`).
    replaces : dict, optional
        The object's earlier record when the reviewer changes their mind: its store samples
        that the new ones do not supersede are removed (tombstoned), so the store never teaches
        both answers.
    audit : bool
        The object was shown as a random audit (:func:`~napari_segnets.review.queue.next_object`),
        not as the next likely error: the error bars use audits as a random sample of the objects
        the queue has not reached.

    Returns
    -------
    dict
        The record: object, decision, time, reviewer, source, checkpoint, count_after
        (objects it became), voxels_before/after, the queue row and the store sample ids.
    """
    from scipy import ndimage as ndi

    if decision not in DECISIONS:
        raise InputError(f"Unknown decision {decision!r}: use accept, fix or delete.")
    labels = np.asarray(labels)
    if labels.ndim == 2:
        labels = labels[None]
        fixed = None if fixed is None else np.asarray(fixed)[None]
        image = None if image is None else np.asarray(image)[None]
    obj = labels == int(object_id)
    if not obj.any():
        raise InputError(f"Object {object_id} is not in the labels; review objects of the current queue.")
    if decision == "fix":
        if fixed is None or np.shape(fixed) != labels.shape:
            raise InputError("A fix needs the corrected object as a mask of the labels' shape.")
        after = np.asarray(fixed, bool)
    else:
        after = obj if decision == "accept" else np.zeros_like(obj)
    from ..curation._validate import checkpoint_info

    region = _region(obj | after, margin)  # holds all of the object before and after: work inside it only
    count_after = int(ndi.label(after[region])[1]) if after.any() else 0
    ckpt = checkpoint_info(checkpoint)
    record = {
        "kind": "decision", "object": int(object_id), "decision": decision,
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "reviewer": reviewer or os.environ.get("USER", ""), "source": str(source), "checkpoint": ckpt,
        "note": note, "queue_id": str(queue_id), "audit": bool(audit),
        "count_after": count_after, "voxels_before": int(obj.sum()), "voxels_after": int(after.sum()),
        "queue": {k: _plain(v) for k, v in (row or {}).items()}, "samples": [],
    }
    if store is not None:
        if image is None or np.shape(image) != labels.shape:
            raise InputError("Adding reviewed objects to the store needs the image, same shape as the labels.")
        box_obj, box_after = obj[region], after[region]
        unreviewed = (labels[region] > 0) & ~box_obj & ~box_after
        mask = np.where(box_after, 1, np.where(unreviewed, IGNORE, 0)).astype(np.uint8)
        ys, xs = region[1], region[2]
        for k, z in enumerate(range(region[0].start, region[0].stop)):
            rec = store.add(np.asarray(image[z][ys, xs]), mask[k], source=str(source or "review"),
                            index=z, region=(ys.start, xs.start, ys.stop, xs.stop), checkpoint=ckpt,
                            changed_pixels=int((box_obj[k] != box_after[k]).sum()), split=split,
                            ignore_index=IGNORE, classes=2, note=f"review {decision} object {int(object_id)}")
            record["samples"].append(rec["id"])
        stale = [i for i in (replaces or {}).get("samples", []) if i not in record["samples"]]
        for sample_id in stale:
            try:
                store.remove(sample_id, reason=f"review: object {int(object_id)} decided again ({decision})")
            except StoreError:  # already removed (or never in this store): nothing to undo
                pass
        record["replaced_samples"] = stale
    return log.append(record)


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
