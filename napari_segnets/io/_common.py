"""Pieces every reader shares: units, the lazy threshold, dask wrapping, final shape checks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError

# Length units as they appear in TIFF/OME/ImageJ/OME-Zarr/HDF5 metadata, in nanometres.
_UNIT_GROUPS = {
    1.0: ("nm", "nanometer", "nanometre"),
    1e3: ("um", "µm", "\u03bcm", "\\u00b5m", "micron", "microns", "micrometer", "micrometre"),
    1e6: ("mm", "millimeter", "millimetre"),
    1e7: ("cm", "centimeter", "centimetre"),
    1e9: ("m", "meter", "metre"),
    0.1: ("a", "å", "angstrom", "ångström"),
    1e-3: ("pm", "picometer", "picometre"),
}
_UNIT_NM = {name: factor for factor, names in _UNIT_GROUPS.items() for name in names}
LAZY_ENV = "SEGNETS_LAZY_BYTES"


class AmbiguousInputError(InputError):
    """A container holds several candidate images; ``choices`` are the keys that would open."""

    def __init__(self, message: str, choices=()):
        super().__init__(message)
        self.choices = list(choices)


def unit_to_nm(unit: str | None) -> float | None:
    """Nanometres per ``unit`` (e.g. ``"µm"`` -> 1000), or None when unknown or not a length."""
    if unit is None:
        return None
    return _UNIT_NM.get(str(unit).strip().lower())


def partial_voxel_size(sizes) -> tuple[float | None, ...] | None:
    """One entry per axis: a positive finite size, or None where that axis is uncalibrated.

    None as a whole when no axis is calibrated. This is how ``meta["voxel_size"]`` keeps a
    partial calibration: an XY pixel size without a z spacing reads ``(None, 4.0, 4.0)``.
    """
    if sizes is None:
        return None
    out: list[float | None] = []
    for s in sizes:
        try:
            v = float(s)
        except (TypeError, ValueError):
            v = None
        out.append(v if v is not None and np.isfinite(v) and v > 0 else None)
    if not out or all(v is None for v in out):
        return None
    return tuple(out)


def short_list(items, limit: int = 6) -> str:
    """``"a, b, c and 27 more"``: a listing that stays one readable sentence."""
    items = [str(i) for i in items]
    if len(items) <= limit:
        return ", ".join(items) or "none"
    return ", ".join(items[:limit]) + f" and {len(items) - limit} more"


def lazy_threshold() -> int:
    """Bytes above which :func:`read` returns a lazy dask array.

    About a quarter of the machine's RAM; ``$SEGNETS_LAZY_BYTES`` overrides it.
    """
    env = os.environ.get(LAZY_ENV)
    if env:
        try:
            return int(float(env))
        except ValueError:
            raise InputError(f"${LAZY_ENV} must be a number of bytes, got {env!r}.") from None
    try:
        import psutil

        return int(psutil.virtual_memory().total // 4)
    except Exception:  # psutil missing or unsupported platform: assume a modest 8 GiB machine
        return 2 * 1024**3


def want_lazy(lazy: bool | None, shape, dtype) -> bool:
    """Decide lazy vs eager: forced by ``lazy`` or by the uncompressed size."""
    if lazy is not None:
        return bool(lazy)
    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    return nbytes > lazy_threshold()


def slice_chunks(
    shape, native=None, *, rgb: bool = False, axes: str | None = None
) -> tuple[int, ...]:
    """Tile-friendly chunks: one (Y, X) plane (with its samples/channels) per chunk, or ``native``.

    With ``axes`` (one letter per axis), the Y, X, sample and channel axes are whole wherever
    they are stored; otherwise the last two (three with ``rgb``) axes are.
    """
    if native is not None:
        return tuple(int(c) for c in native)
    if axes and len(axes) == len(shape) and "y" in axes and "x" in axes:
        return tuple(int(n) if a in "yxsc" else 1 for a, n in zip(axes, shape))
    plane = 3 if rgb else 2
    return tuple([1] * (len(shape) - plane) + [int(s) for s in shape[-plane:]])


def as_dask(source, *, chunks, name: str):
    """Wrap an array-like source (see ``_sources``) in dask without reading or hashing it.

    Never pass a numpy memmap directly: dask would copy it into the graph chunk by chunk.
    """
    import dask.array as da

    # An explicit name avoids dask hashing the whole array to build a token.
    # An explicit meta stops dask probing the source with an empty read.
    meta = np.empty((0,) * len(source.shape), dtype=source.dtype)
    return da.from_array(source, chunks=chunks, name=name, asarray=True, fancy=False, meta=meta)


def token(path: Path, *extra) -> str:
    """A name for a dask array that changes when the file changes."""
    try:
        st = path.stat()
        stamp = f"{st.st_mtime_ns}-{st.st_size}"
    except OSError:
        stamp = "?"
    import hashlib

    text = "|".join([str(path.resolve()), stamp, *map(str, extra)])
    return "segnets-read-" + hashlib.sha1(text.encode()).hexdigest()[:16]


def _rgb_to_grey(array):
    """Luminance (ITU-R 709 weights, as scikit-image) of a trailing RGB/RGBA axis, same dtype."""
    weights = np.array([0.2125, 0.7154, 0.0721], dtype=np.float32)
    dtype = array.dtype

    def convert(block):
        grey = np.asarray(block[..., :3], dtype=np.float32) @ weights
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            grey = np.clip(np.rint(grey), info.min, info.max)
        return grey.astype(dtype)

    if isinstance(array, np.ndarray):
        return convert(array)
    return array.map_blocks(convert, drop_axis=array.ndim - 1, dtype=dtype)


def finalize(
    array, meta: dict[str, Any], *, axes: str | None = None, rgb: bool = False, alpha: bool = False
):
    """Check and reorder a reader's array to (Y, X) or (Z, Y, X); fill ``meta``.

    Parameters
    ----------
    array : numpy or dask array, as stored
    meta : dict
        Partly filled metadata; ``voxel_size`` and ``scale`` (if any) have one entry per stored
        axis (None where unknown).
    axes : str, optional
        One letter per stored axis as the file declares it (e.g. ``"yxz"``, ``"tczyx"``); see
        :mod:`napari_segnets.io.axes`.
    rgb, alpha : bool
        The sample axis holds RGB(A) colour / grey + alpha.
    """
    from .axes import check_dtype, to_zyx

    meta.setdefault("notes", [])
    name = Path(meta.get("path", "the file")).name
    shape = tuple(int(s) for s in array.shape)
    check_dtype(array.dtype, name)
    if len(shape) < 2:
        raise InputError(
            f"{name} holds a {len(shape)}D array (shape {shape}), not an image; "
            "choose a 2D image or a 3D stack."
        )
    if any(s == 0 for s in shape):
        raise InputError(
            f"{name} holds an empty array (shape {shape}); choose a file or dataset with pixels in it."
        )
    per_axis = {"voxel_size": meta.get("voxel_size"), "scale": meta.get("scale")}
    array, axes, per_axis = to_zyx(
        array, axes, per_axis, meta["notes"], name=name, rgb=rgb, alpha=alpha
    )
    dtype = np.dtype(array.dtype)
    if dtype.kind == "b":
        array = array.astype(np.uint8)
    elif dtype.byteorder not in ("=", "|") and dtype != dtype.newbyteorder("="):
        # big-endian files (and their memory maps): native pixels, also lazily
        array = array.astype(dtype.newbyteorder("="))
    scale = per_axis.get("scale")
    meta.update(
        shape=tuple(int(s) for s in array.shape),
        dtype=str(array.dtype),
        axes=axes,
        voxel_size=partial_voxel_size(per_axis.get("voxel_size")),
        lazy=not isinstance(array, np.ndarray),
    )
    if scale is not None:
        meta["scale"] = [float(s) for s in scale]
    else:
        meta.pop("scale", None)
    return array, meta
