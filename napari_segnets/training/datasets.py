"""Training data: 2D slices (from stacks or a curated store) and a seeded random-crop sampler."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..io.normalize import apply_normalization, fit_normalization, normalization_spec
from .masks import IGNORE, require_both, to_targets

_MAX_FG_COORDS = 200_000  # foreground pixels remembered per slice for foreground-centred crops


def _as_slices(array, what: str) -> np.ndarray:
    """A numpy ``(Z, Y, X)`` view of a 2D or 3D array (dask is computed here, once)."""
    if array is None:
        return None
    arr = np.asarray(array)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise InputError(
            f"The {what} has {arr.ndim} dimensions (shape {arr.shape}); give a 2D slice (Y, X) or a 3D stack (Z, Y, X)."
        )
    if 0 in arr.shape:
        raise InputError(
            f"The {what} is empty (shape {arr.shape}); give slices with pixels in them."
        )
    return arr


@dataclass
class _Source:
    image: np.ndarray  # (Z, Y, X) raw intensities
    mask: np.ndarray | None  # (Z, Y, X) targets 0..K-1 and IGNORE (masks.to_targets), or None
    name: str
    records: list = field(default_factory=list)  # provenance per slice (store records), optional


class SliceDataset:
    """2D slices with optional masks, one sample per slice.

    Masks are read once, here, by :func:`napari_segnets.training.masks.to_targets`.

    Parameters
    ----------
    image : array-like
        ``(Y, X)`` or ``(Z, Y, X)``; numpy or dask (read into memory here).
    mask : array-like, optional
        Labels of the same shape; ``None`` for autoencoding.
    annotation : {"full", "sparse"}
        Full masks (0 = background; 0/1, 0/255, bool, label ids ...) or sparse strokes
        (ilastik: 0 = not annotated, 1 = background, 2 = first class, ...).
    classes : int, optional
        Classes including background (1 or 2 = binary); ``None`` reads the mask (see ``to_targets``).
    ignore_index : int, optional
        Full masks only: the mask value of pixels nobody labelled (none unless given).
    name : str
        A label for messages and provenance.
    """

    def __init__(
        self,
        image,
        mask=None,
        *,
        annotation: str = "full",
        classes: int | None = None,
        ignore_index: int | None = None,
        name: str = "data",
    ):
        self.annotation, self.classes_arg, self.ignore_index = annotation, classes, ignore_index
        self.classes = 0  # classes including background, over all sources (0: no masks)
        self.notes: list[str] = []
        self._sources: list[_Source] = []
        self._items: list[tuple[int, int]] = []
        if image is not None:
            self._add(image, mask, name)

    def _like(self) -> SliceDataset:
        return SliceDataset(
            None, annotation=self.annotation, classes=self.classes_arg, ignore_index=self.ignore_index
        )

    # -- construction -----------------------------------------------------------------
    def _add(self, image, mask, name, records=None, *, ignore_index="same", targets=False):
        img = _as_slices(image, f"image {name!r}")
        if img.dtype.kind not in "uif" and img.dtype != bool:
            raise InputError(
                f"The image {name!r} has dtype {img.dtype}; give a numeric greyscale image."
            )
        msk = None
        if mask is not None:
            msk = _as_slices(mask, f"mask {name!r}")
            if msk.shape != img.shape:
                raise InputError(
                    f"The mask of {name!r} has shape {tuple(np.shape(mask))} but the image {tuple(np.shape(image))}; "
                    "they must match pixel for pixel."
                )
            if targets:  # already read (a subset of this dataset)
                k = self.classes
            else:
                ignore = self.ignore_index if ignore_index == "same" else ignore_index
                t = to_targets(
                    msk,
                    annotation=self.annotation,
                    classes=self.classes_arg,
                    ignore_index=ignore,
                    what=f"mask {name!r}",
                )
                msk, k = t.labels, t.classes
                if t.note:
                    self.notes.append(t.note)
            self.classes = max(self.classes, k)
        if self._sources and (msk is None) != (self._sources[0].mask is None):
            raise InputError(
                "Mix of slices with and without masks; give masks for all slices or for none."
            )
        src = len(self._sources)
        self._sources.append(_Source(img, msk, name, list(records or [])))
        self._items.extend((src, z) for z in range(img.shape[0]))

    @classmethod
    def from_pairs(cls, pairs: Sequence, **kwargs) -> SliceDataset:
        """Build from a list of ``(image, mask)`` pairs (slices may differ in size).

        Keyword arguments are those of :class:`SliceDataset`.
        """
        ds = cls(None, **kwargs)
        for i, pair in enumerate(pairs):
            image, mask = pair if isinstance(pair, tuple | list) else (pair, None)
            ds._add(image, mask, f"pair {i}")
        if not ds._items:
            raise InputError("No (image, mask) pairs were given; add at least one labelled slice.")
        return ds

    @classmethod
    def from_store(cls, store, split: str | None = "train", **kwargs) -> SliceDataset:
        """All live samples of a curated :class:`napari_segnets.curation.Store` in ``split``.

        Each sample's ``ignore_index`` is the one its record names (on-disk key ``ignore_value``;
        None: every pixel is labelled).
        """
        records = list(store.samples(split=split))
        if not records:
            raise InputError(
                f"The curated store has no samples in split {split!r}; add corrected slices before training."
            )
        ds = cls(None, **kwargs)
        for rec in records:
            get = rec.get if isinstance(rec, dict) else lambda k, _r=rec: getattr(_r, k, None)
            sid = get("id")
            image, mask = store.load(sid)
            ds._add(image, mask, f"store sample {sid}", records=[rec],
                    ignore_index=get("ignore_value"))
        return ds

    def subset(self, indices: Sequence[int]) -> SliceDataset:
        """A dataset of the chosen slices (by position in this dataset)."""
        ds = self._like()
        ds.classes, ds.notes = self.classes, list(self.notes)
        for i in indices:
            src, z = self._items[int(i)]
            s = self._sources[src]
            ds._add(s.image[z], None if s.mask is None else s.mask[z], f"{s.name}[{z}]", s.records,
                    targets=True)
        return ds

    def holdout(self, crop: int) -> tuple[SliceDataset, SliceDataset | None]:
        """Split off validation data the training never sees: ``(train, val)``.

        Several slices: the last eighth of them (at least one; the neighbours of training slices
        are the least independent, so a block at the end). One slice: a strip along its longer
        side, an eighth of it, leaving at least ``crop`` pixels to train on. ``val`` is None
        when the data is too small to spare anything.
        """
        n = len(self)
        if n >= 2:
            k = max(1, n // 8)
            return self.subset(range(n - k)), self.subset(range(n - k, n))
        src, z = self._items[0]
        s = self._sources[src]
        h, w = s.image.shape[1:]
        axis = 1 if w >= h else 0
        side = (h, w)[axis]
        cut = side - max(side // 8, 1)
        if cut < crop or side - cut < 8:
            return self, None
        parts = []
        for rng in (slice(0, cut), slice(cut, side)):
            ds = self._like()
            ds.classes, ds.notes = self.classes, list(self.notes)
            index = (z, slice(None), rng) if axis == 1 else (z, rng, slice(None))
            mask = None if s.mask is None else s.mask[index]
            ds._add(s.image[index], mask, f"{s.name} (held-out strip)" if parts else s.name,
                    s.records, targets=True)
            parts.append(ds)
        return parts[0], parts[1]

    # -- queries ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._items)

    @property
    def has_masks(self) -> bool:
        return bool(self._sources) and self._sources[0].mask is not None

    def slice(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The raw ``(image, mask)`` of slice ``i``."""
        src, z = self._items[i]
        s = self._sources[src]
        return s.image[z], None if s.mask is None else s.mask[z]

    def min_shape(self) -> tuple[int, int]:
        return (
            min(self._sources[s].image.shape[1] for s, _ in self._items),
            min(self._sources[s].image.shape[2] for s, _ in self._items),
        )

    def check(self, *, classes: int | None = None) -> None:
        """Refuse an empty dataset, masks with more classes than the model, or masks without
        background or without objects (nothing to learn), before any work is done."""
        if not self._items:
            raise InputError("The dataset is empty; give at least one slice.")
        if not self.has_masks:
            return
        if classes is not None and self.classes > max(int(classes), 2):
            raise InputError(
                f"The masks hold {self.classes} classes but the model has {max(int(classes), 2)}; "
                f"build the model with classes={self.classes}."
            )
        require_both(
            (s.mask for s in self._sources), what=f"training data ({self._sources[0].name})",
            sparse=self.annotation == "sparse",
        )

    def normalized(self, spec: dict | None) -> list[np.ndarray]:
        """Float32 slices, normalised with ``spec`` fitted per source stack (as inference fits per image)."""
        spec = dict(spec or normalization_spec())
        fitted = [fit_normalization(s.image, spec) for s in self._sources]
        return [
            apply_normalization(self._sources[src].image[z], fitted[src]) for src, z in self._items
        ]

    def labels(self) -> list[np.ndarray | None]:
        """Targets per slice: ``0..K-1`` and ``IGNORE`` for unlabelled pixels (``None`` entries
        for autoencoding data)."""
        return [self.slice(i)[1] for i in range(len(self))]


class CropSampler:
    """Seeded random crops from normalised slices, optionally centred on foreground.

    Parameters
    ----------
    images : list of float32 (H, W)
    masks : list of integer (H, W) or None
    crop : int
        Square crop side; must not exceed any slice.
    foreground_crop : float
        Probability that a crop is centred on a random foreground pixel (labels >= 1),
        which keeps rare classes (mitochondria are ~8% of pixels) in most batches.
    """

    def __init__(
        self,
        images,
        masks,
        *,
        crop: int,
        ignore_index: int = IGNORE,
        foreground_crop: float = 0.0,
        augmenter=None,
    ):
        self.images, self.masks, self.crop = images, masks, int(crop)
        self.ignore_index, self.foreground_crop, self.augmenter = (
            ignore_index,
            foreground_crop,
            augmenter,
        )
        for img in images:
            if img.shape[0] < crop or img.shape[1] < crop:
                raise InputError(
                    f"The crop size {crop} is larger than a slice of shape {img.shape}; use crop <= {min(img.shape)}."
                )
        weights, self._fg = [], []
        for i, img in enumerate(images):
            m = None if masks is None else masks[i]
            if m is None:
                weights.append(img.size)
                self._fg.append(np.empty(0, np.int64))
                continue
            valid = m != ignore_index
            weights.append(int(valid.sum()))  # slices with more labels are drawn more often
            fg = np.flatnonzero(valid & (m >= 1))
            if fg.size > _MAX_FG_COORDS:
                fg = fg[:: int(np.ceil(fg.size / _MAX_FG_COORDS))]
            self._fg.append(fg)
        w = np.asarray(weights, dtype=np.float64)
        self._p = w / w.sum()

    def with_masks(self, masks) -> CropSampler:
        """The same sampler (crop, foreground share, augmenter) over new masks of the same slices."""
        return CropSampler(
            self.images, masks, crop=self.crop, ignore_index=self.ignore_index,
            foreground_crop=self.foreground_crop, augmenter=self.augmenter,
        )  # fmt: skip

    def sample(self, rng: np.random.Generator):
        """One crop: ``(image float32 (c, c), mask int64 (c, c) or None)``."""
        c = self.crop
        i = int(rng.choice(len(self.images), p=self._p))
        img = self.images[i]
        h, w = img.shape
        fg = self._fg[i]
        if fg.size and rng.random() < self.foreground_crop:
            cy, cx = divmod(int(fg[rng.integers(fg.size)]), w)
            y = int(np.clip(cy - c // 2 + rng.integers(-c // 4, c // 4 + 1), 0, h - c))
            x = int(np.clip(cx - c // 2 + rng.integers(-c // 4, c // 4 + 1), 0, w - c))
        else:
            y, x = int(rng.integers(h - c + 1)), int(rng.integers(w - c + 1))
        ci = img[y : y + c, x : x + c]
        cm = None if self.masks is None else self.masks[i][y : y + c, x : x + c]
        if self.augmenter is not None:
            ci, cm = self.augmenter(ci, cm, rng)
        return np.ascontiguousarray(ci, np.float32), None if cm is None else cm.astype(np.int64)

    def batch(self, rng: np.random.Generator, batch_size: int):
        """Stacked crops: images ``(B, 1, c, c)`` float32 and masks ``(B, c, c)`` int64 (or None)."""
        crops = [self.sample(rng) for _ in range(batch_size)]
        x = np.stack([ci for ci, _ in crops])[:, None]
        y = None if crops[0][1] is None else np.stack([cm for _, cm in crops])
        return x, y
