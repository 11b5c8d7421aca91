"""Atomic writes: write to a temporary file beside the target, fsync, rename.

The one place that implements write-fsync-rename. A reader never sees a
half-written file, and a crash leaves either the old file or the new one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a directory entry so that a rename inside it survives a crash."""
    try:
        fd = os.open(os.fspath(path), os.O_RDONLY)
    except OSError:  # some platforms (Windows) cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    if path.is_file():
        with open(path, "rb+") as fh:
            os.fsync(fh.fileno())
        return
    for sub in sorted(path.rglob("*")):
        if sub.is_file():
            with open(sub, "rb+") as fh:
                os.fsync(fh.fileno())
    for sub in sorted(p for p in path.rglob("*") if p.is_dir()):
        fsync_dir(sub)
    fsync_dir(path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it into place.

    Works for files and for directories (e.g. a Zarr store). On an exception the
    temporary is removed and ``path`` is left untouched.

    Parameters
    ----------
    path : path-like
        The final destination.
    overwrite : bool
        If False, refuse to replace an existing ``path`` (``FileExistsError``).
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    if not overwrite and final.exists():
        raise FileExistsError(f"{final} already exists and will not be overwritten")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()  # the caller creates a file or a directory here
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written to the temporary path for {final}")
        _fsync_tree(tmp)
        if final.is_dir() and tmp.is_dir():
            # Directories cannot be replaced atomically in one call: swap via a side name.
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        elif not overwrite:
            os.link(tmp, final)  # fails if final appeared meanwhile: no silent overwrite
            tmp.unlink()
        else:
            os.replace(tmp, final)
        fsync_dir(final.parent)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, overwrite: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, *, overwrite: bool = True) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically and return the path."""
    return atomic_write_bytes(path, text.encode("utf-8"), overwrite=overwrite)
