"""Pieces every reader shares: units, the lazy threshold, dask wrapping, final shape checks."""

from __future__ import annotations

import os
import warnings
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


def unit_to_nm(unit: str | None) -> float | None:
    """Nanometres per ``unit`` (e.g. ``"µm"`` -> 1000), or None when unknown or not a length."""
    if unit is None:
        return None
    return _UNIT_NM.get(str(unit).strip().lower())


def clean_voxel_size(sizes) -> tuple[float, ...] | None:
    """Tuple of positive finite floats, or None when any entry is missing or meaningless."""
    if sizes is None:
        return None
    try:
        out = tuple(float(s) for s in sizes)
    except (TypeError, ValueError):
        return None
    if not out or not all(np.isfinite(s) and s > 0 for s in out):
        return None
    return out


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


def slice_chunks(shape, native=None, *, rgb: bool = False) -> tuple[int, ...]:
    """Tile-friendly chunks: one (Y, X) plane (with its colour samples) per chunk, or ``native``."""
    if native is not None:
        return tuple(int(c) for c in native)
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


def finalize(array, meta: dict[str, Any], *, axes: str | None = None, rgb: bool = False):
    """Squeeze singleton axes, convert RGB to grey, check 2D/3D and non-empty; fill ``meta``.

    Parameters
    ----------
    array : numpy or dask array
    meta : dict
        Partly filled metadata; ``voxel_size`` (if any) matches ``axes``.
    axes : str, optional
        One letter per axis of ``array`` (e.g. ``"zyx"``, ``"tczyx"``).
    rgb : bool
        The last axis holds colour samples (RGB or RGBA).
    """
    meta.setdefault("notes", [])
    name = Path(meta.get("path", "the file")).name
    shape = tuple(int(s) for s in array.shape)
    if any(s == 0 for s in shape) or len(shape) == 0:
        raise InputError(
            f"{name} holds an empty array (shape {shape}); choose a file or dataset with pixels in it."
        )
    axes = (axes or "").lower()
    if len(axes) != len(shape):
        axes = ""
    voxel = meta.get("voxel_size")
    if voxel is not None and len(voxel) != len(shape) - (1 if rgb else 0):
        voxel = None
    if rgb:
        if shape[-1] not in (3, 4):
            raise InputError(
                f"{name} has {shape[-1]} colour samples per pixel; only grey, RGB or RGBA images can be read."
            )
        kind = "RGBA" if shape[-1] == 4 else "RGB"
        note = f"{kind} image converted to grey (luminance); the colour was dropped."
        meta["notes"].append(note)
        warnings.warn(f"{name}: {note}", UserWarning, stacklevel=3)
        array = _rgb_to_grey(array)
        axes = axes[:-1] if axes else ""
        shape = shape[:-1]
    keep = [i for i, s in enumerate(shape) if s != 1]
    if len(keep) < 2:  # a 1 x N image: keep the last two axes so it stays an image
        keep = list(range(len(shape)))[-2:]
    if len(keep) != len(shape):
        array = array[tuple(slice(None) if i in keep else 0 for i in range(len(shape)))]
        axes = "".join(axes[i] for i in keep) if axes else ""
        if voxel is not None:
            voxel = tuple(voxel[i] for i in keep)
        shape = tuple(shape[i] for i in keep)
    if len(shape) > 3:
        ax = f" (axes {axes.upper()})" if axes else ""
        raise InputError(
            f"{name} has {len(shape)} dimensions {shape}{ax}; only 2D (Y, X) or 3D (Z, Y, X) single-channel "
            "stacks can be read, so save one channel/time point as its own file."
        )
    if "c" in axes:
        n = shape[axes.index("c")]
        raise InputError(
            f"{name} has {n} channels; only single-channel stacks can be read, so save one channel as its own file."
        )
    if len(shape) == 3 and axes and axes[0] not in "zqis" and axes[1:] == "yx":
        # q/i/s: tifffile's unknown, sequence and planar-sample axes, which are stacks anyway
        meta["notes"].append(
            f"Axis {axes[0].upper()} (size {shape[0]}) is read as the stack (z) axis."
        )
    if not axes or set(axes) - set("zyx") or len(set(axes)) != len(axes):
        axes = "zyx"[-len(shape) :]
    meta.update(
        shape=shape,
        dtype=str(array.dtype),
        axes=axes,
        voxel_size=clean_voxel_size(voxel),
        lazy=not isinstance(array, np.ndarray),
    )
    if array.dtype.kind == "b":
        array = array.astype(np.uint8)
        meta["dtype"] = "uint8"
    if np.issubdtype(array.dtype, np.complexfloating):
        raise InputError(f"{name} holds complex numbers; save the magnitude as a real image first.")
    return array, meta
