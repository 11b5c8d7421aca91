"""Temporary Zarr stores for results of stacks larger than memory.

A whole-stack prediction of a lazy stack is written to a Zarr store on disk so
it stays lazy. Those stores are the widgets' scratch space: each lives in its
own ``segnets-*`` folder under the system's temporary directory, is deleted when
the layer showing it is removed from the viewer (and no other layer shows it),
and whatever is left is deleted when Python exits. A result worth keeping is
saved with napari's File > Save Selected Layers (or added to the curated store).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
import weakref
from pathlib import Path

__all__ = ["release", "temporary_root", "temporary_store", "watch_viewer"]

_DIRS: set[Path] = set()
_LOCK = threading.Lock()
_WATCHED: weakref.WeakSet = weakref.WeakSet()


def temporary_store(prefix: str = "segnets-") -> str:
    """A fresh path ``<tmp>/segnets-XXXX/result.zarr`` for a result Zarr store (thread-safe)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    with _LOCK:
        if not _DIRS:
            atexit.register(cleanup)
        _DIRS.add(folder)
    return str(folder / "result.zarr")


def temporary_root(data) -> Path | None:
    """The scratch folder holding ``data`` (a Zarr array made by :func:`temporary_store`), else None."""
    store = getattr(getattr(data, "store_path", None), "store", None)
    root = getattr(store, "root", None) or getattr(getattr(data, "store", None), "path", None)
    if root is None:
        return None
    folder = Path(root).resolve().parent
    with _LOCK:
        return folder if folder in {d.resolve() for d in _DIRS} else None


def release(data) -> bool:
    """Delete the scratch folder behind ``data``; True if there was one."""
    folder = temporary_root(data)
    if folder is None:
        return False
    with _LOCK:
        _DIRS.difference_update({d for d in _DIRS if d.resolve() == folder})
    shutil.rmtree(folder, ignore_errors=True)
    return True


def cleanup() -> None:
    """Delete every scratch folder still registered (at exit)."""
    with _LOCK:
        folders = list(_DIRS)
        _DIRS.clear()
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def watch_viewer(viewer) -> None:
    """Release a layer's scratch store when the layer leaves ``viewer`` (once per viewer)."""
    if viewer in _WATCHED:
        return
    _WATCHED.add(viewer)
    ref = weakref.ref(viewer)

    def removed(event) -> None:
        layer = event.value
        data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
        if temporary_root(data) is None:
            return
        still = ref()
        if still is not None and any(other.data is data for other in still.layers):
            return  # another layer shows the same store
        release(data)

    viewer.layers.events.removed.connect(removed)
