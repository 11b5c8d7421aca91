"""Checks on what is handed to ``Store.add``: every problem is caught before anything touches the disk."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import numpy as np

from napari_segnets.errors import InputError

SPLITS = ("train", "val")


def check_image(image) -> np.ndarray:
    """A finite, non-empty 2D numeric image (bool becomes uint8)."""
    img = np.asarray(image)
    if img.size == 0:
        raise InputError("The image is empty; add a slice or region with at least one pixel.")
    if img.ndim != 2:
        raise InputError(
            f"The image has shape {img.shape}; the store takes one 2D slice or region (Y, X) at a time."
        )
    if img.dtype == bool:
        img = img.astype(np.uint8)
    if not (np.issubdtype(img.dtype, np.integer) or np.issubdtype(img.dtype, np.floating)):
        raise InputError(f"The image has dtype {img.dtype}; pass a grey-level integer or float image.")
    if np.issubdtype(img.dtype, np.floating):
        if img.dtype == np.float16:
            img = img.astype(np.float32)
        if not np.isfinite(img).all():
            raise InputError("The image contains NaN or infinite values; fix or crop them before adding it.")
    return np.ascontiguousarray(img)


def check_mask(mask, shape: tuple[int, ...], ignore_index, classes=None) -> np.ndarray:
    """Non-negative integer labels of the image's shape, stored in the smallest unsigned dtype."""
    m = np.asarray(mask)
    if m.shape != tuple(shape):
        raise InputError(f"The mask has shape {m.shape} but the image has shape {tuple(shape)}; they must match.")
    if m.dtype == bool:
        m = m.astype(np.uint8)
    elif np.issubdtype(m.dtype, np.floating):
        if not np.isfinite(m).all():
            raise InputError("The mask contains NaN or infinite values; masks hold integer class labels.")
        if not np.array_equal(m, np.round(m)):
            raise InputError("The mask has fractional values; masks hold integer class labels (0, 1, 2, ...).")
    elif not np.issubdtype(m.dtype, np.integer):
        raise InputError(f"The mask has dtype {m.dtype}; masks hold integer class labels (0, 1, 2, ...).")
    if m.min() < 0:
        raise InputError(
            f"The mask has negative label {int(m.min())}; use 0 for background and 1, 2, ... for classes."
        )
    top = int(m.max())
    if ignore_index is not None and np.all(m == ignore_index):
        raise InputError(
            f"Every mask pixel equals the ignore value {ignore_index}: there is nothing to learn from it; "
            "label some pixels first."
        )
    if classes is not None:
        if isinstance(classes, bool) or not isinstance(classes, (int, np.integer)) or classes < 1:
            raise InputError(f"classes={classes!r} must be a positive number of classes.")
        labelled = m[m != ignore_index] if ignore_index is not None else m
        if labelled.size and int(labelled.max()) >= classes:
            raise InputError(
                f"The mask has label {int(labelled.max())}, outside the {classes} classes 0..{classes - 1}; "
                "fix the label or the number of classes."
            )
    for dtype in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dtype).max:
            return np.ascontiguousarray(m.astype(dtype))
    raise InputError(f"The mask has label {top}, larger than the store supports (2**32 - 1).")


def check_ignore(ignore_index):
    if ignore_index is None:
        return None
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)) or ignore_index < 0:
        raise InputError(f"ignore_index={ignore_index!r} must be a non-negative integer or None.")
    return int(ignore_index)


def check_source(source) -> str:
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if not isinstance(source, str) or not source.strip():
        raise InputError("source must name the image the sample came from (a file path or a layer name).")
    return source


def check_index(index) -> int:
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
        raise InputError(f"index={index!r} must be the slice number, a non-negative integer.")
    return int(index)


def check_region(region, shape: tuple[int, int]) -> list[int] | None:
    if region is None:
        return None
    try:
        y0, x0, y1, x1 = (int(v) for v in region)
    except (TypeError, ValueError):
        raise InputError(f"region={region!r} must be four integers (y0, x0, y1, x1).") from None
    if min(y0, x0) < 0 or y1 <= y0 or x1 <= x0:
        raise InputError(f"region={region!r} must satisfy 0 <= y0 < y1 and 0 <= x0 < x1.")
    if (y1 - y0, x1 - x0) != tuple(shape):
        raise InputError(
            f"region={region!r} spans {(y1 - y0, x1 - x0)} pixels but the image is {tuple(shape)}; "
            "pass the region the image was cut from."
        )
    return [y0, x0, y1, x1]


def check_split(split) -> str:
    if split not in SPLITS:
        raise InputError(f"split={split!r} must be 'train' or 'val'.")
    return split


def check_changed(changed_pixels, size: int) -> int | None:
    if changed_pixels is None:
        return None
    if isinstance(changed_pixels, bool) or not isinstance(changed_pixels, (int, np.integer)):
        raise InputError(f"changed_pixels={changed_pixels!r} must be a whole number of pixels or None.")
    if not 0 <= changed_pixels <= size:
        raise InputError(f"changed_pixels={changed_pixels} must lie between 0 and the image size {size}.")
    return int(changed_pixels)


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def checkpoint_info(checkpoint) -> dict | None:
    """``{"path", "sha256"}`` for the checkpoint that made the prediction, or None (drawn by hand)."""
    if checkpoint is None:
        return None
    if isinstance(checkpoint, dict):
        digest = checkpoint.get("sha256") or checkpoint.get("content_hash")
        if "path" not in checkpoint or not digest:
            raise InputError("A checkpoint dict needs 'path' and 'sha256' (or 'content_hash').")
        return {"path": str(checkpoint["path"]), "sha256": str(digest)}
    if not isinstance(checkpoint, (str, os.PathLike)):
        raise InputError(f"checkpoint={checkpoint!r} must be a file path, a dict with path and hash, or None.")
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise InputError(
            f"The checkpoint {path} does not exist; pass the file that made the prediction, or None."
        )
    return {"path": str(path.resolve()), "sha256": file_sha256(path)}


def slug(source: str) -> str:
    """A short file-name-safe version of a source name, for readable file names."""
    stem = Path(source.replace("\\", "/")).stem or "sample"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-.")[:40] or "sample"
