"""The manifest: one JSON record per line, appended under an exclusive lock.

Crash safety rests on three rules. A record is committed only once its whole line, newline included,
is on disk (written in one ``write`` and fsync'd). Readers skip a last line that lacks its newline (a
writer was killed mid-append) and report it. The next writer, holding the lock, cuts such a torn tail
off before appending, so a fragment can never glue itself to a good record.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from napari_segnets.errors import StoreError


@contextlib.contextmanager
def exclusive_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``lock_path`` (released by the OS if the process dies)."""
    fd = os.open(os.fspath(lock_path), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            import fcntl
        except ImportError:  # Windows: byte-range lock on the first byte instead
            import msvcrt

            while True:
                try:
                    msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
                    break
                except OSError:  # LK_LOCK gives up after ~10 s; keep waiting like flock does
                    continue
            try:
                yield
            finally:
                os.lseek(fd, 0, os.SEEK_SET)
                msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
            return
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@dataclass
class ManifestRead:
    """The parsed manifest: good records in order, plus what had to be skipped."""

    records: list[dict] = field(default_factory=list)
    torn_tail: bool = False  # the last line lacked its newline: an append was cut off
    bad_lines: list[int] = field(default_factory=list)  # 1-based numbers of complete but unreadable lines


_SAMPLE_KEYS = ("id", "source", "index", "split", "image", "mask", "image_sha256", "mask_sha256")


def _well_formed(rec) -> bool:
    """A record this code can use: a known kind, its keys, and data paths inside the store."""
    if not isinstance(rec, dict):
        return False
    if rec.get("kind") == "tombstone":
        return isinstance(rec.get("id"), str) and isinstance(rec.get("targets"), list)
    if rec.get("kind") != "sample" or not all(k in rec for k in _SAMPLE_KEYS):
        return False
    for part in ("image", "mask"):
        rel = rec[part]
        # Only files under images/ or masks/: a hand-edited line must not point load() elsewhere.
        if not isinstance(rel, str) or not rel.startswith(f"{part}s/") or ".." in rel or "\\" in rel:
            return False
    return isinstance(rec["index"], int) and isinstance(rec["id"], str)


def read_manifest(path: Path) -> ManifestRead:
    """Read every committed record; tolerate a torn last line and report broken ones."""
    out = ManifestRead()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return out
    lines = data.split(b"\n")
    if lines and lines[-1] != b"":
        out.torn_tail = True
    for number, raw in enumerate(lines[:-1], start=1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            out.bad_lines.append(number)
            continue
        if not _well_formed(rec):
            out.bad_lines.append(number)
            continue
        out.records.append(rec)
    return out


def append_record(path: Path, record: dict) -> None:
    """Append one record as one fsync'd line. The caller holds the store's exclusive lock."""
    line = (json.dumps(record, sort_keys=True, ensure_ascii=True) + "\n").encode("utf-8")
    fd = os.open(os.fspath(path), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size:
            os.lseek(fd, size - 1, os.SEEK_SET)
            if os.read(fd, 1) != b"\n":
                # Cut off a torn tail left by a writer that died mid-append: it was never committed.
                size = _last_newline(fd, size)
                os.ftruncate(fd, size)
                os.fsync(fd)
        os.lseek(fd, size, os.SEEK_SET)
        written = os.write(fd, line)
        if written != len(line):
            raise StoreError(f"Could only write {written} of {len(line)} bytes to {path}; is the disk full?")
        os.fsync(fd)
    finally:
        os.close(fd)


def _last_newline(fd: int, size: int) -> int:
    """Offset just after the last newline in the file (0 if none), scanning backwards in blocks."""
    pos = size
    while pos > 0:
        start = max(0, pos - 65536)
        os.lseek(fd, start, os.SEEK_SET)
        block = os.read(fd, pos - start)
        cut = block.rfind(b"\n")
        if cut >= 0:
            return start + cut + 1
        pos = start
    return 0
