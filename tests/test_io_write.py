"""write_labels(): TIFF/Zarr by suffix, atomic, voxel size kept, bad input refused."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segnets.errors import InputError
from napari_segnets.io import read, write_labels


@pytest.fixture
def labels(rng):
    return rng.integers(0, 4, (4, 30, 26)).astype(np.int64)  # napari Labels data are often int64


@pytest.mark.parametrize("suffix", [".tif", ".tiff", ".zarr"])
def test_round_trip_keeps_values_and_voxel_size(tmp_path, labels, suffix):
    path = tmp_path / f"labels{suffix}"
    assert write_labels(path, labels, {"voxel_size": (50.0, 4.0, 4.0)}) == [str(path)]
    back, meta = read(path)
    np.testing.assert_array_equal(back, labels)
    assert back.dtype == np.uint8  # the smallest type that holds the labels
    assert meta["voxel_size"] == pytest.approx((50.0, 4.0, 4.0))
    assert meta["kind"] == "labels"


def test_tiff_is_compressed(tmp_path):
    import tifffile

    mask = np.zeros((8, 256, 256), np.uint8)
    mask[:, 100:150, 60:90] = 1
    write_labels(tmp_path / "m.tif", mask)
    assert (tmp_path / "m.tif").stat().st_size < mask.nbytes / 20
    with tifffile.TiffFile(tmp_path / "m.tif") as tif:
        assert tif.pages[0].compression != 1


def test_2d_bool_and_large_label_values(tmp_path, rng):
    mask = rng.random((20, 21)) > 0.5
    write_labels(tmp_path / "b.tif", mask)
    back, meta = read(tmp_path / "b.tif")
    np.testing.assert_array_equal(back, mask.astype(np.uint8))
    assert meta["voxel_size"] is None and back.ndim == 2
    ids = np.arange(20 * 21, dtype=np.int32).reshape(20, 21) * 1000
    write_labels(tmp_path / "ids.zarr", ids)
    back, _ = read(tmp_path / "ids.zarr")
    assert back.dtype == np.uint32
    np.testing.assert_array_equal(back, ids)


def test_lazy_labels_are_written_plane_by_plane(tmp_path, labels):
    import dask.array as da

    lazy = da.from_array(labels, chunks=(1, 30, 26))
    for suffix in (".tif", ".zarr"):
        write_labels(tmp_path / f"lazy{suffix}", lazy)
        np.testing.assert_array_equal(read(tmp_path / f"lazy{suffix}")[0], labels)


@pytest.mark.parametrize("name", ["labels.png", "labels.h5", "labels"])
def test_other_suffixes_refused(tmp_path, labels, name):
    with pytest.raises(InputError, match=r"use a \.tif, \.tiff or \.zarr path"):
        write_labels(tmp_path / name, labels)
    assert not (tmp_path / name).exists()


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (np.zeros((2, 2, 8, 8), np.uint8), "2D .* or 3D"),
        (np.zeros((0, 8), np.uint8), "empty"),
        (np.full((8, 8), 0.5, np.float32), "must be integers"),
        (np.full((8, 8), -1, np.int16), "must not be negative"),
    ],
)
def test_bad_labels_refused(tmp_path, data, match):
    with pytest.raises(InputError, match=match):
        write_labels(tmp_path / "x.tif", data)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_the_old_file_intact(tmp_path, labels, monkeypatch):
    import tifffile

    path = tmp_path / "keep.tif"
    write_labels(path, labels)
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(tifffile.TiffWriter, "write", broken)
    with pytest.raises(OSError, match="disk full"):
        write_labels(path, labels + 1)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.tif"]  # no temporary left behind


def test_zarr_overwrite_replaces_the_store(tmp_path, labels):
    path = tmp_path / "l.zarr"
    write_labels(path, labels)
    write_labels(path, labels[:2])
    back, _ = read(path)
    assert back.shape == (2, 30, 26)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.zarr"]


@pytest.mark.parametrize("suffix", [".tif", ".zarr"])
def test_partial_calibration_survives_a_save(tmp_path, suffix):
    labels = np.zeros((3, 16, 16), np.uint16)
    labels[1, 4:8, 4:8] = 7
    write_labels(tmp_path / f"l{suffix}", labels, {"voxel_size": (None, 5.0, 4.0)})
    arr, meta = read(tmp_path / f"l{suffix}")
    np.testing.assert_array_equal(arr, labels)
    assert meta["voxel_size"] == (None, 5.0, 4.0)
