"""Lazy reads: dask arrays with one plane per chunk, chosen by size, never loading the whole stack."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import tifffile

from napari_segnets.io import lazy_threshold, read


@pytest.fixture
def stack(rng):
    return rng.integers(0, 255, (6, 40, 36), dtype=np.uint8)


def _write_all(tmp_path, stack):
    import h5py
    import mrcfile
    import zarr
    from PIL import Image

    tifffile.imwrite(tmp_path / "raw.tif", stack, photometric="minisblack")
    tifffile.imwrite(tmp_path / "zlib.tif", stack, photometric="minisblack", compression="zlib")
    with mrcfile.new(tmp_path / "v.mrc") as mrc:
        mrc.set_data(stack)
    z = zarr.create_array(
        str(tmp_path / "a.zarr"), shape=stack.shape, chunks=(1, 40, 36), dtype="u1"
    )
    z[:] = stack
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f.create_dataset("raw", data=stack)
    (tmp_path / "pngs").mkdir()
    for i, plane in enumerate(stack):
        Image.fromarray(plane).save(tmp_path / "pngs" / f"{i}.png")
    return ["raw.tif", "zlib.tif", "v.mrc", "a.zarr", "v.h5", "pngs"]


def test_every_format_reads_lazily_with_one_plane_per_chunk(tmp_path, stack):
    import dask.array as da

    for name in _write_all(tmp_path, stack):
        arr, meta = read(tmp_path / name, lazy=True)
        assert isinstance(arr, da.Array), name
        assert meta["lazy"] is True, name
        assert arr.chunksize == (1, 40, 36), name
        np.testing.assert_array_equal(arr[2].compute(), stack[2], err_msg=name)
        np.testing.assert_array_equal(arr.compute(), stack, err_msg=name)
        eager, meta2 = read(tmp_path / name, lazy=False)
        assert isinstance(eager, np.ndarray) and meta2["lazy"] is False
        np.testing.assert_array_equal(eager, stack, err_msg=name)


def test_size_threshold_decides(tmp_path, stack, monkeypatch):
    tifffile.imwrite(tmp_path / "s.tif", stack, photometric="minisblack")
    monkeypatch.setenv("SEGNETS_LAZY_BYTES", str(stack.nbytes - 1))
    assert read(tmp_path / "s.tif")[1]["lazy"] is True
    monkeypatch.setenv("SEGNETS_LAZY_BYTES", str(stack.nbytes))
    assert read(tmp_path / "s.tif")[1]["lazy"] is False


def test_default_threshold_is_a_quarter_of_ram(monkeypatch):
    import psutil

    monkeypatch.delenv("SEGNETS_LAZY_BYTES", raising=False)
    assert lazy_threshold() == psutil.virtual_memory().total // 4


def test_folder_reads_only_the_slices_asked_for(tmp_path, stack, monkeypatch):
    from napari_segnets.io import slices

    _write_all(tmp_path, stack)
    calls = []
    original = slices.read_slice
    monkeypatch.setattr(slices, "read_slice", lambda p: calls.append(p.name) or original(p))
    arr, _ = read(tmp_path / "pngs", lazy=True)
    assert calls == []  # opening reads headers only
    np.testing.assert_array_equal(arr[4].compute(), stack[4])
    assert calls == ["4.png"]


def test_one_slice_of_a_lazy_stack_touches_one_chunk(tmp_path, stack):
    _write_all(tmp_path, stack)
    for name in ("zlib.tif", "v.h5", "a.zarr"):
        arr, _ = read(tmp_path / name, lazy=True)
        one = arr[3]
        graph = one.__dask_optimize__(one.__dask_graph__(), one.__dask_keys__())
        getters = [k for k in dict(graph) if isinstance(k, tuple) and k[0] == arr.name]
        assert len(getters) <= 1, (name, getters)


def test_lazy_tiff_does_not_load_the_stack(tmp_path, rng):
    big = rng.integers(0, 65535, (32, 256, 512), dtype=np.uint16)  # 8 MiB, 256 KiB per slice
    for compression in (None, "zlib"):
        path = tmp_path / f"big_{compression}.tif"
        tifffile.imwrite(path, big, photometric="minisblack", compression=compression)
        tracemalloc.start()
        arr, meta = read(path, lazy=True)
        plane = arr[7].compute()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        np.testing.assert_array_equal(plane, big[7])
        assert peak < big.nbytes / 4, (compression, peak)


def test_single_png_lazy_when_forced(tmp_path, stack):
    import dask.array as da
    from PIL import Image

    Image.fromarray(stack[0]).save(tmp_path / "one.png")
    arr, meta = read(tmp_path / "one.png", lazy=True)
    assert isinstance(arr, da.Array) and meta["lazy"] is True and arr.shape == (40, 36)
    np.testing.assert_array_equal(arr.compute(), stack[0])


def test_lazy_rgb_stack_keeps_whole_planes(tmp_path, rng):
    rgb = rng.integers(0, 255, (3, 20, 30, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    with pytest.warns(UserWarning, match="RGB"):
        arr, _ = read(tmp_path / "rgb.tif", lazy=True)
    with pytest.warns(UserWarning, match="RGB"):
        eager, _ = read(tmp_path / "rgb.tif", lazy=False)
    assert arr.chunksize == (1, 20, 30)
    np.testing.assert_array_equal(arr.compute(), eager)


def test_lazy_arrays_pickle_as_recipes_not_pixels(tmp_path, rng):
    import pickle

    big = rng.integers(0, 255, (6, 128, 128), dtype=np.uint8)
    for name in _write_all(tmp_path, big):
        arr, _ = read(tmp_path / name, lazy=True)
        blob = pickle.dumps(arr)
        assert len(blob) < big.nbytes / 4, (name, len(blob))
        np.testing.assert_array_equal(pickle.loads(blob)[3].compute(), big[3], err_msg=name)


@pytest.mark.slow
def test_lazy_tiff_computes_in_other_processes(tmp_path, stack):
    tifffile.imwrite(tmp_path / "z.tif", stack, photometric="minisblack", compression="zlib")
    arr, _ = read(tmp_path / "z.tif", lazy=True)
    np.testing.assert_array_equal(
        (arr.sum(axis=0)).compute(scheduler="processes", num_workers=2),
        stack.sum(axis=0, dtype=np.uint64),
    )
