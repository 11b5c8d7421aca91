"""Integrity of a store folder: every file checked against the manifest hashes."""

from __future__ import annotations

import time
from pathlib import Path

from napari_segnets.curation._manifest import ManifestRead
from napari_segnets.curation._validate import file_sha256


def _is_temp(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


def verify_store(root: Path, read: ManifestRead) -> dict:
    """Check the files of every sample record (live or not) against their sha256 hashes.

    Run it while no one is writing: a sample being added shows up meanwhile as orphan or temp files.

    Returns
    -------
    dict
        ``ok`` (no missing or corrupt file, no unreadable line, no tombstone of an unknown id),
        ``records``, ``files_checked``, ``missing`` and ``corrupt`` (paths relative to the root),
        ``bad_lines`` (manifest line numbers), ``unknown_targets``, and the harmless leftovers of a writer
        that was killed: ``torn_tail`` (the last append was cut off; the next write removes it),
        ``orphans`` (data files no record names) and ``temp_files`` (see ``Store.tidy``); ``problems``
        lists the serious findings as sentences.
    """
    samples = [r for r in read.records if r["kind"] == "sample"]
    ids = {r["id"] for r in samples}
    missing, corrupt, problems, named = [], [], [], set()
    for r in samples:
        for part in ("image", "mask"):
            rel = r.get(part)
            named.add(rel)
            path = root / rel if rel else None
            if path is None or not path.is_file():
                missing.append(rel)
                problems.append(f"the {part} file {rel} of sample {r['id']} (version {r.get('version')}) "
                                "is missing")
            elif file_sha256(path) != r.get(f"{part}_sha256"):
                corrupt.append(rel)
                problems.append(f"the {part} file {rel} of sample {r['id']} (version {r.get('version')}) "
                                "does not match its hash: it was changed or corrupted")
    unknown = sorted({t for r in read.records if r["kind"] == "tombstone"
                      for t in r.get("targets", []) if t not in ids})
    problems += [f"manifest line {n} is unreadable" for n in read.bad_lines]
    problems += [f"a tombstone names the unknown sample {u}" for u in unknown]
    orphans, temps = [], []
    for folder in ("images", "masks"):
        d = root / folder
        if d.is_dir():
            for p in sorted(d.iterdir()):
                rel = f"{folder}/{p.name}"
                if _is_temp(p.name):
                    temps.append(rel)
                elif rel not in named:
                    orphans.append(rel)
    temps += sorted(p.name for p in root.iterdir() if _is_temp(p.name))
    return {
        "ok": not problems,
        "records": len(read.records),
        "files_checked": 2 * len(samples) - len(missing),
        "missing": missing,
        "corrupt": corrupt,
        "bad_lines": read.bad_lines,
        "unknown_targets": unknown,
        "torn_tail": read.torn_tail,
        "orphans": orphans,
        "temp_files": temps,
        "problems": problems,
    }


def tidy_store(root: Path, temp_files: list[str], older_than: float) -> list[str]:
    """Delete the listed temp files older than ``older_than`` seconds (a write in progress is younger)."""
    gone = []
    for rel in temp_files:
        path = root / rel
        try:
            if time.time() - path.stat().st_mtime >= older_than:
                path.unlink()
                gone.append(rel)
        except FileNotFoundError:  # finished or tidied by someone else meanwhile
            pass
    return gone
