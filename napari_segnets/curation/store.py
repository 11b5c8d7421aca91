"""The curated training set: corrected masks with provenance, in a folder anyone can read.

Layout of a store folder::

    manifest.jsonl     one JSON record per line, oldest first (samples and removals)
    images/NAME.tif    the image of each sample (one 2D slice or region)
    masks/NAME.tif     its mask: integer labels, ``ignore_index`` (when the record names one) = not labelled
    README.txt         this layout in words, for people opening the folder without the plugin
    .lock              taken while the manifest is appended to

Nothing is ever overwritten: adding the same (source, index, region) again writes new files and a new
record with the next ``version``; removing writes a tombstone record and keeps the files. Data files are
written atomically (temp file, fsync, rename) *before* their manifest line, and a manifest line counts only
once it is complete, so a process killed at any moment leaves at worst an orphan file or a torn last line,
both harmless and reported by :meth:`Store.verify`.
"""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from napari_segnets.curation import _validate as v
from napari_segnets.curation._integrity import _is_temp, tidy_store, verify_store
from napari_segnets.curation._manifest import (
    append_record,
    exclusive_lock,
    read_manifest,
)
from napari_segnets.errors import InputError, StoreError
from napari_segnets.io.atomic import atomic_write_bytes, atomic_write_text, fsync_dir

MANIFEST = "manifest.jsonl"
LOCK = ".lock"
README = "README.txt"
FORMAT = 1
_KNOWN = {MANIFEST, LOCK, README, "images", "masks"}


README_TEXT = """\
Curated training set written by napari-segnets.

images/   one TIFF per sample: a 2D slice or region of the source image
masks/    the matching TIFF (same name): integer labels; the value recorded as "ignore_value"
          in the manifest (255 for edited regions, null when every pixel is labelled) marks
          pixels nobody labelled
manifest.jsonl
          one JSON record per line, oldest first. "kind": "sample" records give the id, version,
          source file, slice index, region [y0, x0, y1, x1], the checkpoint that made the prediction
          (path and sha256), changed_pixels, time (UTC), split (train/val), note, the file names and
          their sha256 hashes. "kind": "tombstone" records list ids that were removed (files are kept).
          A later version of the same source/index/region replaces the earlier one for training.
Nothing here is ever overwritten. Check integrity with napari_segnets.curation.Store(path).verify().
"""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _tiff_bytes(arr: np.ndarray) -> bytes:
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, photometric="minisblack")
    return buf.getvalue()


def _key(rec: dict) -> tuple:
    region = rec.get("region")
    return (rec["source"], rec["index"], tuple(region) if region else None)


class Store:
    """A folder of curated (image, mask) samples with a JSON-lines manifest.

    Parameters
    ----------
    root : path-like
        The store folder. Created when missing; an existing folder must be empty or already a store.
    create : bool
        If False, a missing store is an error instead of being created.
    """

    def __init__(self, root: str | os.PathLike, *, create: bool = True):
        root = Path(root).expanduser()
        if root.exists() and not root.is_dir():
            raise StoreError(f"{root} is a file, not a folder; choose a folder for the training set.")
        manifest = root / MANIFEST
        if root.is_dir() and not manifest.is_file():
            strangers = sorted(p.name for p in root.iterdir() if p.name not in _KNOWN and not _is_temp(p.name))
            if strangers:
                raise StoreError(
                    f"{root} already holds other files ({', '.join(strangers[:3])}) and no {MANIFEST}; "
                    "choose an empty folder or an existing training-set store."
                )
        if not manifest.is_file():
            if not create:
                raise StoreError(f"{root} is not a training-set store (no {MANIFEST}); create it first.")
            root.mkdir(parents=True, exist_ok=True)
            try:
                atomic_write_bytes(manifest, b"", overwrite=False)
            except FileExistsError:  # another process created it first: fine
                pass
        if not (root / README).is_file():
            try:
                atomic_write_text(root / README, README_TEXT, overwrite=False)
            except OSError:  # exists meanwhile, or a read-only store opened for reading: not needed
                pass
        self.root = root
        self.manifest_path = manifest
        self._lock = root / LOCK

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    def __len__(self) -> int:
        return len(self.samples())

    # ---------------------------------------------------------------- writing
    def add(self, image, mask, *, source, index, region=None, checkpoint=None, changed_pixels=None,
            split="train", note="", ignore_index=None, classes=None) -> dict:
        """Add a corrected slice or region and return its manifest record.

        Parameters
        ----------
        image : array (Y, X)
            The grey-level slice or region, stored as given.
        mask : array (Y, X)
            Integer labels; ``ignore_index`` marks pixels nobody checked (left out of training).
        source : str or path
            The image file (or layer name) the sample came from.
        index : int
            The slice number in ``source`` (0 for a 2D image).
        region : (y0, x0, y1, x1), optional
            Where the image was cut from inside the slice; None for the whole slice.
        checkpoint : path or dict, optional
            The checkpoint that made the prediction the person corrected; its content is hashed.
        changed_pixels : int, optional
            How many pixels the person changed.
        split : {"train", "val"}
        note : str
        ignore_index : int or None
            The mask value of pixels nobody checked; None (the default): every pixel is labelled,
            so a 0/255 mask is background/object, never "255 = unchecked".
        classes : int, optional
            The number of classes the model predicts; labels outside 0..classes-1 (other than
            ``ignore_index``) are refused.

        Returns
        -------
        dict
            The record: ``id``, ``version``, provenance fields, file names and their sha256 hashes.
        """
        ignore_index = v.check_ignore(ignore_index)
        img = v.check_image(image)
        msk = v.check_mask(mask, img.shape, ignore_index, classes)
        source = v.check_source(source)
        index = v.check_index(index)
        region = v.check_region(region, img.shape)
        split = v.check_split(split)
        changed = v.check_changed(changed_pixels, img.size)
        if not isinstance(note, str):
            raise InputError(f"note must be text, got {type(note).__name__}.")
        ckpt = v.checkpoint_info(checkpoint)

        sample_id = uuid.uuid4().hex[:16]
        where = f"_y{region[0]}x{region[1]}-y{region[2]}x{region[3]}" if region else ""
        name = f"{v.slug(source)}_z{index:04d}{where}_{sample_id}.tif"
        image_bytes, mask_bytes = _tiff_bytes(img), _tiff_bytes(msk)
        labels, counts = np.unique(msk, return_counts=True)
        label_pixels = {str(int(lab)): int(n) for lab, n in zip(labels, counts) if lab != ignore_index}
        record = {
            "kind": "sample",
            "format": FORMAT,
            "id": sample_id,
            "source": source,
            "index": index,
            "region": region,
            "checkpoint": ckpt,
            "changed_pixels": changed,
            "split": split,
            "note": note,
            # The manifest's on-disk key stays "ignore_value" (format 1): every store written so far
            # and SliceDataset.from_store read it there. The API name is ignore_index.
            "ignore_value": ignore_index,
            "shape": list(img.shape),
            "image_dtype": str(img.dtype),
            "mask_dtype": str(msk.dtype),
            "label_pixels": label_pixels,
            "image": f"images/{name}",
            "mask": f"masks/{name}",
            "image_sha256": hashlib.sha256(image_bytes).hexdigest(),
            "mask_sha256": hashlib.sha256(mask_bytes).hexdigest(),
        }
        written: list[Path] = []
        try:
            for rel, data in ((record["image"], image_bytes), (record["mask"], mask_bytes)):
                target = self.root / rel
                target.parent.mkdir(exist_ok=True)
                # The name carries a fresh random id, so nothing existing can be replaced; plain
                # rename (not the hard link of overwrite=False) also works on network/FAT drives.
                atomic_write_bytes(target, data)
                written.append(target)
            fsync_dir(self.root)
        except BaseException:
            # Files of a sample that never reached the manifest are useless: take them back.
            for path in written:
                path.unlink(missing_ok=True)
            raise
        # From here on the files stay even if the append fails: once its line may be on disk, deleting
        # them could break a committed record, while an orphan is harmless (verify() reports it).
        with exclusive_lock(self._lock):
            # The version is decided under the lock so concurrent writers never share one.
            earlier = [r for r in self._read().records if r["kind"] == "sample" and _key(r) == _key(record)]
            record["version"] = 1 + max((r.get("version", 0) for r in earlier), default=0)
            record["supersedes"] = earlier[-1]["id"] if earlier else None
            record["time"] = _now()
            append_record(self.manifest_path, record)
        return dict(record)

    def remove(self, sample_id: str, reason: str = "", *, all_versions: bool = False) -> dict:
        """Record that a sample is removed (a tombstone); its files stay on disk.

        Removing the latest version makes the previous live version of that slice/region current again;
        ``all_versions=True`` removes every version, taking the slice/region out of the training set.
        """
        if not isinstance(reason, str):
            raise InputError(f"reason must be text, got {type(reason).__name__}.")
        with exclusive_lock(self._lock):
            records = self._read().records
            samples = {r["id"]: r for r in records if r["kind"] == "sample"}
            removed = _removed_ids(records)
            if sample_id not in samples:
                raise StoreError(f"No sample with id {sample_id!r} in {self.root}; list the store's samples to find the right id.")
            if all_versions:
                key = _key(samples[sample_id])
                targets = [i for i, r in samples.items() if _key(r) == key and i not in removed]
            else:
                targets = [sample_id] if sample_id not in removed else []
            if not targets:
                raise StoreError(f"Sample {sample_id!r} was already removed; nothing to do.")
            tomb = {"kind": "tombstone", "format": FORMAT, "id": uuid.uuid4().hex[:16],
                    "targets": targets, "reason": reason, "time": _now()}
            append_record(self.manifest_path, tomb)
        return dict(tomb)

    # ---------------------------------------------------------------- reading
    def _read(self):
        return read_manifest(self.manifest_path)

    def history(self) -> list[dict]:
        """Every committed record, samples and tombstones, oldest first."""
        return self._read().records

    def samples(self, split: str | None = None, source: str | None = None) -> list[dict]:
        """The live samples: for each (source, index, region) its latest version that is not removed.

        Parameters
        ----------
        split : {"train", "val"}, optional
            Only samples of this split.
        source : str, optional
            Only samples from this source.
        """
        if split is not None:
            v.check_split(split)
        records = self._read().records
        removed = _removed_ids(records)
        latest: dict[tuple, dict] = {}
        for r in records:
            if r["kind"] != "sample" or r["id"] in removed:
                continue
            k = _key(r)
            if k not in latest or r.get("version", 0) >= latest[k].get("version", 0):
                latest[k] = r
        out = [r for r in latest.values() if split in (None, r["split"]) and source in (None, r["source"])]
        order = {r["id"]: i for i, r in enumerate(records)}
        return sorted(out, key=lambda r: order[r["id"]])

    def pairs(self, split: str | None = None, source: str | None = None):
        """Yield ``(image, mask, record)`` for every live sample (see :meth:`samples`), hashes checked."""
        for rec in self.samples(split=split, source=source):
            image, mask = self.load(rec["id"])
            yield image, mask, rec

    def versions(self, sample_id: str) -> list[dict]:
        """Every version of the slice/region that ``sample_id`` belongs to, oldest first.

        Each record gets ``removed`` (bool): whether a tombstone names it.
        """
        key = _key(self.record(sample_id))
        records = self._read().records
        removed = _removed_ids(records)
        return [dict(r, removed=r["id"] in removed) for r in records
                if r["kind"] == "sample" and _key(r) == key]

    def record(self, sample_id: str) -> dict:
        """The manifest record of any sample version, live or removed."""
        for r in self._read().records:
            if r["kind"] == "sample" and r["id"] == sample_id:
                return r
        raise StoreError(f"No sample with id {sample_id!r} in {self.root}; list the store's samples to find the right id.")

    def load(self, sample_id: str) -> tuple[np.ndarray, np.ndarray]:
        """Read a sample's (image, mask), checking both files against their manifest hashes."""
        import tifffile

        rec = self.record(sample_id)
        arrays = []
        for part in ("image", "mask"):
            path = self.root / rec[part]
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                raise StoreError(f"The {part} file {path} of sample {sample_id} is missing; run verify().") from None
            if hashlib.sha256(data).hexdigest() != rec[f"{part}_sha256"]:
                raise StoreError(
                    f"The {part} file {path} of sample {sample_id} does not match its hash (corrupted); "
                    "run verify()."
                )
            arrays.append(tifffile.imread(io.BytesIO(data)))
        return arrays[0], arrays[1]

    def counts(self) -> dict:
        """Live samples per split, versions and removals, and labelled pixels per class per split."""
        records = self._read().records
        live = self.samples()
        pixels: dict[str, dict[str, int]] = {"train": {}, "val": {}}
        for r in live:
            for lab, n in r.get("label_pixels", {}).items():
                pixels[r["split"]][lab] = pixels[r["split"]].get(lab, 0) + n
        return {
            "live": len(live),
            "train": sum(r["split"] == "train" for r in live),
            "val": sum(r["split"] == "val" for r in live),
            "versions": sum(r["kind"] == "sample" for r in records),
            "removed": len(_removed_ids(records)),
            "label_pixels": pixels,
        }

    def covered(self, source: str | None = None) -> list:
        """Where live samples are: slice indices, or (index, y0, x0, y1, x1) for regions.

        Pass it as ``exclude`` to :func:`rank_uncertainty` to skip what was already corrected.
        """
        out = []
        for r in self.samples(source=source):
            out.append((r["index"], *r["region"]) if r.get("region") else r["index"])
        return out

    def verify(self) -> dict:
        """Check every file against the manifest hashes; see :func:`~._integrity.verify_store`."""
        return verify_store(self.root, self._read())

    def tidy(self, older_than: float = 300.0) -> list[str]:
        """Delete temp files left by interrupted writes (older than ``older_than`` s); return them.

        Committed and orphan data files are never deleted, nor a temp file of a write in progress.
        """
        return tidy_store(self.root, self.verify()["temp_files"], older_than)

def _removed_ids(records: list[dict]) -> set[str]:
    return {t for r in records if r["kind"] == "tombstone" for t in r.get("targets", [])}
