"""Public datasets: local loaders (label conventions, data roots) and the hash-checked downloader."""

from __future__ import annotations

import hashlib
import re
import shutil
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import tifffile

from napari_segnets.errors import InputError
from napari_segnets.io import public
from napari_segnets.sample_data import fetch_public, load_public


@pytest.fixture
def fake_dataset(tmp_path, monkeypatch, rng):
    """A tiny dataset in the registry, laid out like the shared data, served from ``mirror``."""
    mirror = tmp_path / "mirror" / "fake_set"
    mirror.mkdir(parents=True)
    image = rng.integers(0, 255, (3, 16, 16), dtype=np.uint8)
    labels = np.where(rng.random((3, 16, 16)) > 0.7, 255, 0).astype(np.uint8)
    tifffile.imwrite(mirror / "img.tif", image, photometric="minisblack")
    tifffile.imwrite(mirror / "lab.tif", labels, photometric="minisblack")
    files = {
        n: hashlib.sha256((mirror / n).read_bytes()).hexdigest() for n in ("img.tif", "lab.tif")
    }
    spec = {
        "folder": "fake_set",
        "image": "img.tif",
        "labels": "lab.tif",
        "shape": (3, 16, 16),
        "voxel_size": (10.0, 2.0, 2.0),
        "target": "mitochondrion",
        "files": files,
    }
    monkeypatch.setitem(public.DATASETS, "fake", spec)
    return tmp_path / "mirror", image, labels


def test_fetch_from_a_file_url_checks_hashes_and_loads(fake_dataset, tmp_path):
    mirror, image, labels = fake_dataset
    folder = fetch_public("fake", tmp_path / "cache", base_url=mirror.as_uri())
    assert folder == tmp_path / "cache" / "fake_set"
    img, lab, meta = load_public("fake", root=tmp_path / "cache")
    np.testing.assert_array_equal(img, image)
    np.testing.assert_array_equal(lab, (labels > 0).astype(np.uint8))
    assert meta["voxel_size"] == (10.0, 2.0, 2.0)


def test_corrupted_copy_is_refused_and_not_kept(fake_dataset, tmp_path):
    mirror, _, _ = fake_dataset
    data = bytearray((mirror / "fake_set" / "img.tif").read_bytes())
    data[-1] ^= 0xFF
    (mirror / "fake_set" / "img.tif").write_bytes(bytes(data))
    with pytest.raises(InputError, match="img.tif .*failed its sha256 check and was discarded"):
        fetch_public("fake", tmp_path / "cache", base_url=mirror.as_uri())
    assert not (tmp_path / "cache" / "fake_set" / "img.tif").exists()


def test_fetch_over_http(fake_dataset, tmp_path):
    mirror, image, _ = fake_dataset
    handler = partial(SimpleHTTPRequestHandler, directory=str(mirror))
    handler.log_message = lambda *a, **k: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        fetch_public("fake", tmp_path / "web", base_url=url, files=["img.tif"])
        np.testing.assert_array_equal(
            tifffile.imread(tmp_path / "web" / "fake_set" / "img.tif"), image
        )
        with pytest.raises(InputError, match="Could not download fake_set/lab.tif"):
            shutil.rmtree(mirror / "fake_set")
            fetch_public("fake", tmp_path / "web", base_url=url, files=["lab.tif"])
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_fetch_needs_a_location_and_known_files(fake_dataset, monkeypatch, tmp_path):
    monkeypatch.delenv("SEGNETS_DATA_URL", raising=False)
    with pytest.raises(InputError, match=r"pass base_url= or set \$SEGNETS_DATA_URL"):
        fetch_public("fake", tmp_path)
    with pytest.raises(InputError, match="has no file"):
        fetch_public("fake", tmp_path, base_url="file:///nowhere", files=["other.tif"])
    with pytest.raises(InputError, match="Unknown dataset 'mnist'"):
        load_public("mnist")


def test_data_root_from_env_and_dataset_folder(fake_dataset, monkeypatch):
    mirror, image, _ = fake_dataset
    monkeypatch.setenv("SEGNETS_DATA", str(mirror))
    np.testing.assert_array_equal(load_public("fake")[0], image)
    monkeypatch.delenv("SEGNETS_DATA")
    np.testing.assert_array_equal(
        load_public("fake", root=mirror / "fake_set")[0], image
    )  # the folder itself


def _readme_hashes(readme):
    rows = re.findall(
        r"^\|\s*(\S+\.tif)\s*\|.*\|\s*([0-9a-f]{64})\s*\|\s*$", readme.read_text(), re.M
    )
    return dict(rows)


def test_registry_matches_the_readmes(shared_data):
    for spec in public.DATASETS.values():
        assert _readme_hashes(shared_data / spec["folder"] / "README.md") == spec["files"]


def test_fetch_real_files_from_a_local_mirror(shared_data, tmp_path):
    folder = fetch_public(
        "drosophila",
        tmp_path,
        base_url=shared_data.as_uri(),
        files=["stack1_synapses.tif", "stack1_mitochondria.tif"],
    )
    assert sorted(p.name for p in folder.iterdir()) == [
        "stack1_mitochondria.tif",
        "stack1_synapses.tif",
    ]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "shape", "fraction", "voxel"),
    [
        ("isbi2012", (30, 512, 512), 0.220, (50.0, 4.0, 4.0)),  # README: 78.0 % interior
        ("lucchi", (30, 768, 1024), 0.0819, (5.0, 5.0, 5.0)),
        ("drosophila", (20, 1024, 1024), 0.0538, (50.0, 4.6, 4.6)),
    ],
)
def test_load_public_label_conventions(shared_data, name, shape, fraction, voxel):
    image, labels, meta = load_public(name, root=shared_data)
    assert image.shape == labels.shape == shape
    assert image.dtype == labels.dtype == np.uint8
    assert set(np.unique(labels)) == {0, 1}
    assert labels.mean() == pytest.approx(fraction, abs=0.002)
    assert meta["voxel_size"] == voxel
    if name == "isbi2012":  # membranes are dark in the image: foreground must be the dark class
        assert image[labels == 1].mean() < image[labels == 0].mean()


def test_default_fetch_lands_where_load_public_looks(fake_dataset, tmp_path, monkeypatch):
    mirror, image, _ = fake_dataset
    monkeypatch.delenv("SEGNETS_DATA", raising=False)
    monkeypatch.setattr(public, "beside_repo", lambda: tmp_path / "absent")
    monkeypatch.setattr(public, "download_cache", lambda: tmp_path / "cache")
    with pytest.raises(InputError, match="fetch_public"):
        load_public("fake")
    fetch_public("fake", base_url=mirror.as_uri())
    np.testing.assert_array_equal(load_public("fake")[0], image)
