"""Saving label stacks: compressed OME-TIFF or OME-Zarr, atomically, keeping the voxel size."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from ._common import partial_voxel_size
from .atomic import atomic_path

LABEL_SUFFIXES = (".tif", ".tiff", ".zarr")
LABELS_NAME = "napari-segnets labels"  # lets read() recognise our own label files


def _label_dtype(data) -> np.dtype:
    """The smallest unsigned integer type holding the labels (OME allows at most 32 bits)."""
    dtype = np.dtype(data.dtype)
    if dtype.kind == "b":
        return np.dtype(np.uint8)
    if not np.issubdtype(dtype, np.integer):
        raise InputError(
            f"Labels must be integers (got {dtype}); round or threshold them before saving."
        )
    if dtype.itemsize == 1 and dtype.kind == "u":
        return dtype
    lo, hi = (int(v) for v in _minmax(data))
    if lo < 0:
        raise InputError(
            f"Labels must not be negative (found {lo}); relabel them from 0 upward before saving."
        )
    for candidate in (np.uint8, np.uint16, np.uint32):
        if hi <= np.iinfo(candidate).max:
            return np.dtype(candidate)
    raise InputError(
        f"Label value {hi} is too large to save (the limit is {np.iinfo(np.uint32).max})."
    )


def _minmax(data):
    if isinstance(data, np.ndarray):
        return (data.min(), data.max()) if data.size else (0, 0)
    import dask

    return dask.compute(data.min(), data.max())


def _planes(data, dtype):
    """Yield (Y, X) planes as numpy, computing one at a time for lazy input."""
    if data.ndim == 2:
        yield np.asarray(data).astype(dtype, copy=False)
        return
    for z in range(data.shape[0]):
        yield np.asarray(data[z]).astype(dtype, copy=False)


def write_labels(path: str | os.PathLike, data, meta: dict | None = None) -> list[str]:
    """Save a 2D/3D label array as compressed OME-TIFF (``.tif``/``.tiff``) or OME-Zarr (``.zarr``).

    Atomic: the file appears complete or not at all, and an existing file is only replaced once
    the new one is fully written. Lazy (dask) input is written plane by plane.

    Parameters
    ----------
    path : path-like
        Destination; its suffix picks the format.
    data : array-like
        Integer or boolean labels, ``(Y, X)`` or ``(Z, Y, X)``.
    meta : dict, optional
        ``voxel_size`` (nm, one per axis; None for an uncalibrated axis) is stored in the file,
        axis by axis, so a partial calibration stays partial.

    Returns
    -------
    list of str
        The written path.
    """
    p = Path(os.fspath(path)).expanduser()
    suffix = p.suffix.lower()
    if suffix not in LABEL_SUFFIXES:
        raise InputError(
            f"Cannot save labels as {p.suffix or 'a file without suffix'!r}; use a .tif, .tiff or .zarr path."
        )
    if not hasattr(data, "shape") or not hasattr(data, "dtype"):
        data = np.asarray(data)
    if data.ndim not in (2, 3):
        raise InputError(
            f"Labels must be 2D (Y, X) or 3D (Z, Y, X), got shape {tuple(data.shape)}."
        )
    if 0 in data.shape:
        raise InputError(f"The labels are empty (shape {tuple(data.shape)}); nothing to save.")
    dtype = _label_dtype(data)
    voxel = partial_voxel_size((meta or {}).get("voxel_size"))
    if voxel is not None and len(voxel) != data.ndim:
        voxel = None
    if suffix == ".zarr":
        _write_zarr(p, data, dtype, voxel)
    else:
        _write_tiff(p, data, dtype, voxel)
    return [str(p)]


def _write_tiff(path: Path, data, dtype, voxel) -> None:
    import tifffile

    axes = "ZYX"[-data.ndim :]
    metadata = {"axes": axes, "Name": LABELS_NAME}
    for ax, size in zip(axes, voxel or ()):
        if size is not None:
            metadata[f"PhysicalSize{ax}"] = float(size)
            metadata[f"PhysicalSize{ax}Unit"] = "nm"
    with atomic_path(path) as tmp:
        with tifffile.TiffWriter(tmp, bigtiff=data.size * dtype.itemsize > 2**31, ome=True) as tw:
            tw.write(
                _planes(data, dtype),
                shape=tuple(data.shape),
                dtype=dtype,
                compression="zlib",
                metadata=metadata,
            )


def _write_zarr(path: Path, data, dtype, voxel) -> None:
    import zarr

    names = "zyx"[-data.ndim :]
    sizes = list(voxel) if voxel else [None] * data.ndim
    # an uncalibrated axis gets scale 1 and no unit, which the reader takes as "unknown"
    axes = [
        {"name": n, "type": "space", **({"unit": "nanometer"} if v is not None else {})}
        for n, v in zip(names, sizes)
    ]
    scale = [1.0 if v is None else float(v) for v in sizes]
    attrs = {
        "multiscales": [
            {
                "version": "0.4",
                "name": LABELS_NAME,
                "axes": axes,
                "datasets": [
                    {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}
                ],
            }
        ],
        "napari-segnets": {"layer_type": "labels", "voxel_size_nm": list(voxel) if voxel else None},
    }
    chunks = tuple([1] * (data.ndim - 2) + [min(s, 1024) for s in data.shape[-2:]])
    with atomic_path(path) as tmp:
        group = zarr.open_group(str(tmp), mode="w", zarr_format=2)
        group.attrs.update(attrs)
        arr = group.create_array("0", shape=tuple(data.shape), dtype=dtype, chunks=chunks)
        if data.ndim == 2:
            arr[...] = next(_planes(data, dtype))
        else:
            for z, plane in enumerate(_planes(data, dtype)):
                arr[z] = plane
