"""Lazy array sources that reopen their file in each process.

A dask array built on one of these pickles as a small recipe (opener + arguments), never as
pixel data or an open file handle, so lazy stacks also work with process-based and distributed
schedulers. Each read is a real copy, so chunks never pin a file mapping.
"""

from __future__ import annotations

import re
import threading

import numpy as np

from ..errors import InputError


def missing_codec(exc: BaseException) -> str | None:
    """The codec's name when ``exc`` says a decoder is not installed, else None."""
    text = str(exc)
    if "imagecodecs" not in text and not isinstance(exc, ImportError):
        return None
    found = re.search(r"<\w+\.(\w+): \d+>", text)  # tifffile's "<COMPRESSION.LZW: 5>"
    return found.group(1) if found else "a codec"


def failure_sentence(label: str, exc: BaseException, what: str = "file") -> str:
    """One sentence for a third-party failure while decoding: missing codec or damaged data."""
    codec = missing_codec(exc)
    if codec:
        return (
            f"{label} is compressed with {codec}, whose decoder is not installed; "
            "install it with `pip install imagecodecs` and open the file again."
        )
    if isinstance(exc, MemoryError):
        return f"{label} does not fit in memory; open it lazily (lazy=True) or crop it first."
    reason = " ".join(str(exc).split())[:200] or type(exc).__name__
    return (
        f"{label} could not be read ({reason}); the {what} may be corrupt, truncated, or "
        "changed or removed after opening."
    )


class Reopenable:
    """Array-like (shape, dtype, ndim, ``__getitem__``) over ``opener(*args)``, opened on first use."""

    def __init__(self, opener, args: tuple, shape, dtype, *, label: str, what: str = "file"):
        self.opener, self.args, self.label, self.what = opener, tuple(args), label, what
        self.shape, self.dtype = tuple(int(s) for s in shape), np.dtype(dtype)
        self.ndim = len(self.shape)
        self._obj = None
        self._lock = threading.Lock()

    def _source(self):
        if self._obj is None:
            with self._lock:  # dask may call from several threads at once
                if self._obj is None:
                    self._obj = self.opener(*self.args)
        return self._obj

    def __getitem__(self, key):
        try:
            return np.array(self._source()[key])
        except InputError:
            raise
        except Exception as exc:
            raise InputError(failure_sentence(self.label, exc, self.what)) from exc

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_obj"], state["_lock"] = None, None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()


def reopenable(opener, args: tuple, opened, *, label: str, what: str = "file") -> Reopenable:
    """A :class:`Reopenable` that reuses ``opened`` (already open here) until it is pickled."""
    src = Reopenable(opener, args, opened.shape, opened.dtype, label=label, what=what)
    src._obj = opened
    return src


def open_memmap(path: str, dtype: str, offset: int, shape: tuple, order: str = "C"):
    """A read-only memory map of raw pixels (uncompressed TIFF, MRC)."""
    return np.memmap(path, dtype=np.dtype(dtype), mode="r", offset=offset, shape=shape, order=order)


def open_tiff_zarr(path: str, chunkmode):
    """Level 0 of a TIFF's first series through tifffile's zarr store (compressed, tiled)."""
    import tifffile
    import zarr

    store = tifffile.TiffFile(path).series[0].aszarr(chunkmode=chunkmode)
    z = zarr.open(store, mode="r")
    return z["0"] if isinstance(z, zarr.Group) else z


def open_hdf5(path: str, key: str):
    """One HDF5 dataset; the dataset keeps its file open."""
    import h5py

    return h5py.File(path, "r")[key]


def open_zarr(path: str, key: str | None):
    """One array of a Zarr store (``key`` None: the store is the array)."""
    import zarr

    node = zarr.open(path, mode="r")
    return node[key] if key else node


def memmap_recipe(mm: np.memmap) -> tuple:
    """Arguments for :func:`open_memmap` that recreate ``mm`` (a C-contiguous memory map)."""
    if not mm.flags["C_CONTIGUOUS"] or mm.filename is None:
        raise ValueError("only C-contiguous file-backed memory maps can be reopened")
    return (str(mm.filename), mm.dtype.str, int(mm.offset), tuple(mm.shape), "C")
