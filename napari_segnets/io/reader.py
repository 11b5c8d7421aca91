"""``read(path)``: one entry point for every EM stack format, eager or lazy."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from ..errors import InputError
from ._common import finalize

TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8", ".ome.tif")
MRC_SUFFIXES = (".mrc", ".rec", ".st", ".map", ".mrcs", ".ali")
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")
ZARR_MARKERS = (".zarray", ".zgroup", "zarr.json")
FORMATS = ("tiff", "mrc", "zarr", "hdf5", "folder", "png")


def sniff(path: str | os.PathLike) -> str | None:
    """The format :func:`read` would use for ``path`` (``"tiff"``, ``"zarr"``...), or None.

    Cheap: looks at the suffix, directory markers and the first bytes only.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if p.is_dir():
        if suffix == ".zarr" or any((p / m).exists() for m in ZARR_MARKERS):
            return "zarr"
        from .slices import list_slices

        try:
            return "folder" if list_slices(p) else None
        except OSError:
            return None
    if suffix in TIFF_SUFFIXES:
        return "tiff"
    if suffix in MRC_SUFFIXES:
        return "mrc"
    if suffix in HDF5_SUFFIXES:
        return "hdf5"
    if suffix == ".png":
        return "png"
    if suffix == ".zarr":
        return "zarr"
    return None


def read(
    path: str | os.PathLike, *, key: str | None = None, lazy: bool | None = None
) -> tuple[Any, dict]:
    """Read an EM stack as a 2D ``(Y, X)`` or 3D ``(Z, Y, X)`` single-channel array.

    Parameters
    ----------
    path : path-like
        A TIFF (single/multi-page, BigTIFF, ImageJ, OME), MRC/REC, Zarr v2/v3 or OME-Zarr store,
        HDF5 file, a single PNG, or a folder of PNG/TIFF slices (sorted naturally).
    key : str, optional
        Dataset/array inside an HDF5 file or Zarr group. Default: the only 3D one.
    lazy : bool, optional
        Force a lazy dask array (True) or a numpy array (False). Default: lazy when the
        uncompressed size exceeds :func:`~napari_segnets.io.lazy_threshold` (about RAM / 4).

    Returns
    -------
    array : numpy.ndarray or dask.array.Array
        Lazy arrays have one (Y, X) plane per chunk (or the storage's own chunks).
    meta : dict
        ``format``, ``path``, ``shape``, ``dtype``, ``lazy``, ``voxel_size``, ``axes``
        (``"zyx"`` or ``"yx"``), ``key``, ``notes``; sometimes ``kind`` (``"labels"`` for files
        our writer made), ``scale``, ``files``. ``voxel_size`` is in nm, one entry per axis in
        ``axes`` order, None for an axis the file does not calibrate (e.g. ``(None, 4.0, 4.0)``
        for an XY pixel size without a z spacing), or None when nothing is calibrated.

    Raises
    ------
    InputError
        Missing file, not a regular file, unknown format, corrupt/truncated data, a missing
        codec, more than 3 dimensions after dropping singleton axes, several channels or
        samples, a 1D or empty array, non-numeric pixels, or an ambiguous HDF5/Zarr container
        without ``key`` (:class:`AmbiguousInputError`, whose ``choices`` list the keys). Lazy
        arrays raise InputError at compute time for the same reasons.

    Notes
    -----
    Axes the file declares (OME, ImageJ, OME-Zarr ``axes``, MRC MAPC/MAPR/MAPS, HDF5
    ``axistags``/``DIMENSION_LABELS``) are moved to (Z, Y, X) with their voxel sizes; readings
    worth knowing (RGB converted to grey, a T axis read as z, a reordering) are written to
    ``meta["notes"]``.
    """
    p = Path(os.fspath(path)).expanduser()
    if not p.exists():
        raise InputError(f"{p} does not exist; check the path (and that the disk is mounted).")
    try:
        mode = p.stat().st_mode
    except OSError as exc:
        raise InputError(f"{p} cannot be opened ({exc.strerror}); check its permissions.") from exc
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        # a pipe or device would block or stream forever: refuse before opening it
        raise InputError(
            f"{p.name} is not a regular file (a pipe, socket or device); save the image to a file."
        )
    fmt = sniff(p)
    if fmt is None:
        if p.is_dir():
            raise InputError(
                f"The folder {p.name} contains no PNG or TIFF slices and is not a Zarr store; "
                "choose a folder of .png/.tif images or a .zarr store."
            )
        raise InputError(
            f"{p.name}: unknown format {p.suffix or '(no suffix)'!r}; napari-segnets reads TIFF, MRC/REC, "
            "Zarr/OME-Zarr, HDF5, PNG and folders of PNG/TIFF slices."
        )
    if key is not None and fmt not in ("hdf5", "zarr"):
        raise InputError(
            f"key={key!r} only applies to HDF5 files and Zarr groups, not to {fmt} {p.name}."
        )
    alpha = False
    try:
        if fmt == "tiff":
            from .tiff import read_tiff

            array, meta, axes, rgb, alpha = read_tiff(p, lazy=lazy)
        elif fmt == "mrc":
            from .slices import read_mrc

            array, meta, axes, rgb = read_mrc(p, lazy=lazy)
        elif fmt == "zarr":
            from .containers import read_zarr

            array, meta, axes, rgb = read_zarr(p, key=key, lazy=lazy)
        elif fmt == "hdf5":
            from .containers import read_hdf5

            array, meta, axes, rgb = read_hdf5(p, key=key, lazy=lazy)
        elif fmt == "png":
            from .slices import read_png

            array, meta, axes, rgb = read_png(p, lazy=lazy)
        else:
            from .slices import read_folder

            array, meta, axes, rgb = read_folder(p, lazy=lazy)
    except InputError:
        raise
    except Exception as exc:  # a third-party failure no reader anticipated: still one sentence
        from ._sources import failure_sentence

        raise InputError(failure_sentence(p.name, exc)) from exc
    meta.setdefault("key", key)
    meta["path"] = str(p)
    meta.setdefault("kind", None)
    return finalize(array, meta, axes=axes, rgb=rgb, alpha=alpha)
