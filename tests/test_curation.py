"""The curated training-set store: round trip, versions, tombstones, integrity, bad inputs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from napari_segnets.curation import Store
from napari_segnets.errors import InputError, StoreError


def _pair(rng, shape=(24, 32), classes=2):
    image = rng.integers(0, 65535, shape, dtype=np.uint16)
    mask = rng.integers(0, classes, shape).astype(np.uint8)
    mask[:2] = 255  # an unlabelled band
    return image, mask


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under root with its bytes (the lock file is content-free and ignored)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(tmp_path / "curated")


def test_round_trip_and_provenance(store, rng, tmp_path):
    image, mask = _pair(rng)
    ckpt = tmp_path / "model.safetensors"
    ckpt.write_bytes(b"weights")
    rec = store.add(image, mask, source="/data/lucchi.tif", index=7, checkpoint=ckpt, changed_pixels=40,
                    note="fixed a mitochondrion", ignore_index=255)
    img2, mask2 = store.load(rec["id"])
    assert img2.dtype == image.dtype and np.array_equal(img2, image)
    assert mask2.dtype == np.uint8 and np.array_equal(mask2, mask)
    assert rec["version"] == 1 and rec["supersedes"] is None
    assert rec["checkpoint"] == {"path": str(ckpt.resolve()), "sha256": hashlib.sha256(b"weights").hexdigest()}
    assert rec["changed_pixels"] == 40 and rec["split"] == "train" and rec["ignore_value"] == 255
    assert rec["time"].endswith("+00:00")
    assert rec["label_pixels"] == {str(c): int((mask == c).sum()) for c in (0, 1)}
    # readable without the plugin: TIFFs beside a JSON-lines manifest naming them with their hashes
    import tifffile

    line = json.loads((store.root / "manifest.jsonl").read_text().splitlines()[0])
    assert line == rec
    assert np.array_equal(tifffile.imread(store.root / line["mask"]), mask)
    digest = hashlib.sha256((store.root / line["image"]).read_bytes()).hexdigest()
    assert digest == line["image_sha256"]
    assert (store.root / "README.txt").is_file()
    # a second Store object on the same folder sees the same thing
    assert Store(store.root).samples() == [rec]
    ((img3, mask3, rec3),) = list(store.pairs(split="train"))
    assert rec3 == rec and np.array_equal(mask3, mask) and np.array_equal(img3, image)
    assert list(store.pairs(split="val")) == []
    # labels inside the class range (255 is the ignore value) are accepted
    assert store.add(image, mask, source="/data/lucchi.tif", index=8, classes=2,
                     ignore_index=255)["version"] == 1


def test_regions_floats_and_bool(store, rng):
    image = rng.random((16, 16)).astype(np.float32)
    mask = np.zeros((16, 16), bool)
    mask[4:8] = True
    rec = store.add(image, mask, source="stack", index=0, region=(16, 32, 32, 48), split="val")
    img2, mask2 = store.load(rec["id"])
    assert img2.dtype == np.float32 and np.array_equal(img2, image)
    assert mask2.dtype == np.uint8 and mask2.sum() == 64
    assert rec["region"] == [16, 32, 32, 48]
    assert store.covered() == [(0, 16, 32, 32, 48)]
    assert store.counts()["val"] == 1 and store.counts()["train"] == 0
    big = np.full((16, 16), 300)
    big[0, 0] = 0
    assert store.load(store.add(image, big, source="s", index=1, ignore_index=None)["id"])[1].dtype == np.uint16


def test_versions_never_overwrite(store, rng):
    image, mask = _pair(rng)
    first = store.add(image, mask, source="a.tif", index=3)
    mask2 = mask.copy()
    mask2[5:9, 5:9] = 1
    second = store.add(image, mask2, source="a.tif", index=3, changed_pixels=16)
    other = store.add(image, mask, source="a.tif", index=3, region=(0, 0, 24, 32))  # a different key
    assert second["version"] == 2 and second["supersedes"] == first["id"]
    assert other["version"] == 1
    live = store.samples()
    assert [r["id"] for r in live] == [second["id"], other["id"]]
    # the earlier version is still there, byte for byte
    assert np.array_equal(store.load(first["id"])[1], mask)
    assert np.array_equal(store.load(second["id"])[1], mask2)
    assert store.counts()["versions"] == 3 and len(store) == 2
    assert [r["id"] for r in store.history()] == [first["id"], second["id"], other["id"]]


def test_tombstones_keep_files(store, rng):
    image, mask = _pair(rng)
    v1 = store.add(image, mask, source="a.tif", index=0)
    v2 = store.add(image, mask, source="a.tif", index=0)
    keep = store.add(image, mask, source="a.tif", index=1, split="val")
    tomb = store.remove(v2["id"], reason="bad correction")
    assert tomb["kind"] == "tombstone" and tomb["targets"] == [v2["id"]]
    # removing the latest version brings back the one before
    assert {r["id"] for r in store.samples()} == {v1["id"], keep["id"]}
    assert store.samples(split="val") == [keep]
    store.remove(v1["id"], all_versions=True)
    assert store.samples() == [keep]
    assert store.counts()["removed"] == 2
    assert [(r["version"], r["removed"]) for r in store.versions(keep["id"])] == [(1, False)]
    assert [(r["version"], r["removed"]) for r in store.versions(v1["id"])] == [(1, True), (2, True)]
    # files stay and stay loadable; the history records everything
    assert (store.root / v2["mask"]).is_file()
    assert store.load(v2["id"])[0].shape == image.shape
    assert [r["kind"] for r in store.history()] == ["sample"] * 3 + ["tombstone"] * 2
    assert store.verify()["ok"]
    with pytest.raises(StoreError, match="already removed"):
        store.remove(v2["id"])
    with pytest.raises(StoreError, match="No sample"):
        store.remove("nonexistent")


def test_verify_catches_corrupt_missing_and_orphans(store, rng):
    image, mask = _pair(rng)
    a = store.add(image, mask, source="a.tif", index=0)
    b = store.add(image, mask, source="a.tif", index=1)
    assert store.verify()["ok"]
    path = store.root / a["mask"]
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # one flipped byte in the pixel data
    path.write_bytes(bytes(data))
    (store.root / b["image"]).unlink()
    (store.root / "images" / "stray.tif").write_bytes(b"x")
    (store.root / "masks" / ".x.tif.abc.tmp").write_bytes(b"")
    rep = store.verify()
    assert not rep["ok"]
    assert rep["corrupt"] == [a["mask"]]
    assert rep["missing"] == [b["image"]]
    assert rep["orphans"] == ["images/stray.tif"]
    assert rep["temp_files"] == ["masks/.x.tif.abc.tmp"]
    assert len(rep["problems"]) == 2
    with pytest.raises(StoreError, match="corrupt"):
        store.load(a["id"])
    with pytest.raises(StoreError, match="missing"):
        store.load(b["id"])
    assert store.tidy() == []  # young: could be a write in progress elsewhere
    assert store.tidy(older_than=0) == ["masks/.x.tif.abc.tmp"]


def test_torn_last_line_is_skipped_then_repaired(store, rng):
    image, mask = _pair(rng)
    a = store.add(image, mask, source="a.tif", index=0)
    with open(store.manifest_path, "ab") as fh:
        fh.write(b'{"kind": "sample", "id": "half')  # a writer died mid-append
    assert [r["id"] for r in store.samples()] == [a["id"]]
    rep = store.verify()
    assert rep["ok"] and rep["torn_tail"]
    b = store.add(image, mask, source="a.tif", index=1)  # the next append cuts the fragment off
    lines = store.manifest_path.read_text().splitlines()
    assert [json.loads(x)["id"] for x in lines] == [a["id"], b["id"]]
    assert not store.verify()["torn_tail"]
    # a complete but garbled line in the middle is reported, the rest still read
    with open(store.manifest_path, "ab") as fh:
        fh.write(b"not json\n")
    store.add(image, mask, source="a.tif", index=2)
    rep = store.verify()
    assert rep["bad_lines"] == [3] and not rep["ok"]
    assert len(store.samples()) == 3
    # hand-edited records that lack fields or point outside the store are refused, not followed
    evil = dict(a, id="e1", image="../../etc/passwd")
    with open(store.manifest_path, "a") as fh:
        fh.write(json.dumps(evil) + "\n")
        fh.write(json.dumps({"kind": "sample", "id": "e2"}) + "\n")
    assert store.verify()["bad_lines"] == [3, 5, 6]
    with pytest.raises(StoreError, match="No sample"):
        store.load("e1")


@pytest.mark.parametrize(
    "change, match",
    [
        ({"mask": np.zeros((24, 31), np.uint8)}, "shape"),
        ({"mask": np.full((24, 32), 0.5)}, "fractional"),
        ({"mask": np.full((24, 32), -1)}, "negative"),
        ({"mask": np.full((24, 32), 255, np.uint8), "ignore_index": 255}, "nothing to learn"),
        ({"mask": np.full((24, 32), np.nan)}, "NaN"),
        ({"image": np.zeros((0, 32)), "mask": np.zeros((0, 32))}, "empty"),
        ({"image": np.full((24, 32), np.nan)}, "NaN"),
        ({"image": np.zeros((2, 24, 32))}, "2D"),
        ({"split": "test"}, "split"),
        ({"index": -1}, "index"),
        ({"source": ""}, "source"),
        ({"region": (0, 0, 10, 10)}, "region"),
        ({"changed_pixels": -3}, "changed_pixels"),
        ({"checkpoint": "/nonexistent/model.safetensors"}, "checkpoint"),
        ({"ignore_index": -1}, "ignore_index"),
        ({"classes": 1}, "outside the 1 classes"),
        ({"classes": 0}, "classes"),
    ],
)
def test_bad_inputs_leave_store_intact(store, rng, change, match):
    image, mask = _pair(rng)
    store.add(image, mask, source="a.tif", index=0)
    before = snapshot(store.root)
    kwargs = {"image": image, "mask": mask, "source": "a.tif", "index": 1}
    kwargs.update(change)
    with pytest.raises(InputError, match=match):
        store.add(kwargs.pop("image"), kwargs.pop("mask"), **kwargs)
    assert snapshot(store.root) == before


def test_bad_remove_and_roots_leave_disk_intact(store, rng, tmp_path):
    image, mask = _pair(rng)
    store.add(image, mask, source="a.tif", index=0)
    before = snapshot(store.root)
    with pytest.raises(StoreError, match="No sample"):
        store.remove("feedbeef")
    with pytest.raises(StoreError, match="No sample"):
        store.load("feedbeef")
    assert snapshot(store.root) == before
    afile = tmp_path / "file.txt"
    afile.write_text("hello")
    with pytest.raises(StoreError, match="is a file"):
        Store(afile)
    assert afile.read_text() == "hello"
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="other files"):
        Store(busy)
    assert [p.name for p in busy.iterdir()] == ["notes.txt"]
    with pytest.raises(StoreError, match="not a training-set store"):
        Store(tmp_path / "missing", create=False)
    assert not (tmp_path / "missing").exists()


def test_store_whose_creation_was_interrupted_opens(tmp_path):
    root = tmp_path / "half"
    root.mkdir()
    (root / ".manifest.jsonl.k3j2.tmp").write_bytes(b"")  # killed while creating the manifest
    store = Store(root)
    assert store.samples() == [] and store.verify()["temp_files"] == [".manifest.jsonl.k3j2.tmp"]


def test_empty_store(store):
    assert store.samples() == [] and store.history() == []
    assert store.counts()["live"] == 0
    rep = store.verify()
    assert rep["ok"] and rep["records"] == 0


def test_a_0_255_correction_trains_its_objects(store, rng):
    """A corrected mask as labs keep it (0/255) is background/object in the store, never "255 =
    unchecked" (the default used to drop every object pixel of such a mask)."""
    from napari_segnets.training import SliceDataset

    image, mask = _pair(rng)
    store.add(image, (mask > 0).astype(np.uint8) * 255, source="lab.tif", index=0)
    (targets,) = SliceDataset.from_store(store).labels()
    assert np.array_equal(targets, (mask > 0).astype(targets.dtype))
