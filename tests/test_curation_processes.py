"""The store survives writers killed at any moment and concurrent writers (real processes)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from napari_segnets.curation import Store

REPO = Path(__file__).resolve().parents[1]

# argv: root, source tag, number of samples, number of distinct slice indices, go-file ("" = start at
# once), crash point ("" = none): the writer SIGKILLs itself there, to prove the store survives a writer
# dying at exactly that moment. The points are made by wrapping what Store.add calls, here in the test.
WRITER = """
import json, os, signal, sys, time
import numpy as np
from napari_segnets.curation import Store
from napari_segnets.curation import store as store_module
root, tag, n, keys, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
crash = sys.argv[6]

def die():
    os.kill(os.getpid(), signal.SIGKILL)

write_file, append = store_module.atomic_write_bytes, store_module.append_record

def write_then_die(target, data, **kw):  # after_image, after_mask
    write_file(target, data, **kw)
    if crash == "after_" + target.parent.name[:-1]:
        die()

def append_then_die(path, record):
    if crash == "manifest_partial":  # half a line reaches the disk, then the writer dies
        line = (json.dumps(record, sort_keys=True) + "\\n").encode()
        with open(path, "ab") as fh:
            fh.write(line[: len(line) // 2])
            fh.flush()
            os.fsync(fh.fileno())
        die()
    append(path, record)
    if crash == "after_manifest":
        die()

store_module.atomic_write_bytes, store_module.append_record = write_then_die, append_then_die
store = Store(root)
rng = np.random.default_rng(os.getpid())
print("ready", flush=True)
while go and not os.path.exists(go):
    time.sleep(0.005)
for i in range(n):
    image = rng.integers(0, 255, (48, 48), dtype=np.uint8)
    store.add(image, (image > 128).astype(np.uint8), source=tag, index=i % keys, note=str(i))
    print(i, flush=True)
"""


def _start(root, tag, n, keys=1000, go="", crash=""):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(root), tag, str(n), str(keys), go, crash],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    return proc


def _assert_consistent(root) -> dict:
    """The store opens, verify() is clean, and every committed record's files load intact."""
    store = Store(root)
    rep = store.verify()
    assert rep["ok"], rep["problems"]
    assert not rep["bad_lines"] and not rep["missing"] and not rep["corrupt"]
    for rec in store.history():
        if rec["kind"] == "sample":
            image, mask = store.load(rec["id"])  # checks both hashes
            assert image.shape == mask.shape == (48, 48)
    # every orphan belongs to a sample that never reached the manifest
    ids = {r["id"] for r in store.history()}
    for rel in rep["orphans"]:
        assert Path(rel).stem.rsplit("_", 1)[-1] not in ids
    return rep


@pytest.mark.slow
def test_writer_killed_at_random_moments(tmp_path):
    root = tmp_path / "store"
    rnd = random.Random(1)
    committed = 0
    for _ in range(5):
        proc = _start(root, "stack.tif", 100_000, keys=7)
        time.sleep(rnd.uniform(0.02, 0.35))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        _assert_consistent(root)
        n = sum(r["kind"] == "sample" for r in Store(root).history())
        assert n >= committed  # nothing committed earlier was lost
        committed = n
    # the store keeps working after all that, versions still unique per key
    store = Store(root)
    ones = np.ones((48, 48), np.uint8)
    store.add(ones, ones, source="stack.tif", index=0)
    rep = _assert_consistent(root)
    assert not rep["torn_tail"]
    for key in range(7):
        versions = [r["version"] for r in store.history()
                    if r["kind"] == "sample" and r["index"] == key]
        assert versions == list(range(1, len(versions) + 1))
    assert committed > 0


@pytest.mark.parametrize(
    "point, orphans, torn, records",
    [
        ("after_image", 1, False, 0),
        ("after_mask", 2, False, 0),
        ("manifest_partial", 2, True, 0),
        ("after_manifest", 0, False, 1),
    ],
)
def test_writer_killed_at_chosen_points(tmp_path, point, orphans, torn, records):
    root = tmp_path / "store"
    store = Store(root)
    first = store.add(np.zeros((48, 48), np.uint8), np.ones((48, 48), np.uint8), source="s", index=99)
    proc = _start(root, "stack.tif", 3, crash=point)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    rep = _assert_consistent(root)
    assert len(rep["orphans"]) == orphans
    assert rep["torn_tail"] is torn
    assert len(store.history()) == 1 + records
    assert store.history()[0] == {k: first[k] for k in first}
    # the next write repairs the torn tail and appends cleanly
    store.add(np.zeros((48, 48), np.uint8), np.ones((48, 48), np.uint8), source="s", index=100)
    rep = _assert_consistent(root)
    assert not rep["torn_tail"] and len(store.history()) == 2 + records
    lines = store.manifest_path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and all(json.loads(x) for x in lines[:-1])


@pytest.mark.slow
def test_two_processes_add_at_once(tmp_path):
    root = tmp_path / "store"
    Store(root)
    go = tmp_path / "go"
    procs = [_start(root, tag, 20, go=str(go)) for tag in ("a.tif", "b.tif")]
    # plus two writers hammering one and the same slice, to race for version numbers
    procs += [_start(root, "shared.tif", 6, keys=1, go=str(go)) for _ in range(2)]
    go.touch()
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    store = Store(root)
    live = store.samples()
    assert len([r for r in live if r["source"] in ("a.tif", "b.tif")]) == 40
    assert len(store.samples(source="shared.tif")) == 1
    shared = [r["version"] for r in store.history() if r["source"] == "shared.tif"]
    assert sorted(shared) == list(range(1, 13))
    assert store.samples(source="shared.tif")[0]["version"] == 12
    rep = _assert_consistent(root)
    assert rep["records"] == 52 and not rep["orphans"] and not rep["torn_tail"]
