"""read(): every supported format, dtypes and voxel sizes."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tifffile

from napari_segnets.io import read, sniff


@pytest.fixture
def stack(rng):
    return rng.integers(0, 255, (5, 48, 40), dtype=np.uint8)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_tiff_multipage_dtypes(tmp_path, rng, dtype):
    data = (rng.random((4, 32, 24)) * 1000).astype(dtype)
    tifffile.imwrite(tmp_path / "s.tif", data, photometric="minisblack")
    arr, meta = read(tmp_path / "s.tif")
    assert isinstance(arr, np.ndarray)
    np.testing.assert_array_equal(arr, data)
    assert meta["format"] == "tiff" and meta["dtype"] == np.dtype(dtype).name
    assert meta["shape"] == (4, 32, 24) and meta["axes"] == "zyx" and meta["lazy"] is False
    assert meta["voxel_size"] is None and meta["notes"] == []


def test_tiff_single_page_is_2d(tmp_path, rng):
    data = rng.integers(0, 60000, (33, 17), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "one.tiff", data)
    arr, meta = read(tmp_path / "one.tiff")
    np.testing.assert_array_equal(arr, data)
    assert meta["axes"] == "yx" and meta["shape"] == (33, 17)


def test_bigtiff(tmp_path, stack):
    tifffile.imwrite(tmp_path / "big.tif", stack, bigtiff=True)
    arr, meta = read(tmp_path / "big.tif")
    assert meta["format"] == "bigtiff"
    np.testing.assert_array_equal(arr, stack)


def test_tiff_imagej_voxel_size(tmp_path, stack):
    tifffile.imwrite(
        tmp_path / "ij.tif",
        stack,
        imagej=True,
        resolution=(1 / 0.004, 1 / 0.005),
        metadata={"spacing": 0.05, "unit": "um", "axes": "ZYX"},
    )
    arr, meta = read(tmp_path / "ij.tif")
    np.testing.assert_array_equal(arr, stack)
    assert meta["voxel_size"] == pytest.approx((50.0, 5.0, 4.0))


def test_tiff_ome_voxel_size_and_compression(tmp_path, stack):
    md = {
        "axes": "ZYX",
        "PhysicalSizeX": 4.6,
        "PhysicalSizeXUnit": "nm",
        "PhysicalSizeY": 4.6,
        "PhysicalSizeYUnit": "nm",
        "PhysicalSizeZ": 0.045,
        "PhysicalSizeZUnit": "µm",
    }
    tifffile.imwrite(tmp_path / "o.ome.tif", stack, ome=True, compression="zlib", metadata=md)
    arr, meta = read(tmp_path / "o.ome.tif")
    np.testing.assert_array_equal(arr, stack)
    assert meta["voxel_size"] == pytest.approx((45.0, 4.6, 4.6))


def test_tiff_resolution_tags_in_centimetres(tmp_path, stack):
    # 2.5e6 pixels per cm = 4 nm pixels; no z spacing -> a 2D image keeps its calibration
    tifffile.imwrite(
        tmp_path / "r.tif", stack[0], resolution=(2.5e6, 2.5e6), resolutionunit="CENTIMETER"
    )
    _, meta = read(tmp_path / "r.tif")
    assert meta["voxel_size"] == pytest.approx((4.0, 4.0))


def test_tiff_default_dpi_is_not_a_voxel_size(tmp_path, stack):
    tifffile.imwrite(tmp_path / "dpi.tif", stack[0], resolution=(72, 72), resolutionunit="INCH")
    assert read(tmp_path / "dpi.tif")[1]["voxel_size"] is None


def test_tiff_singleton_axes_are_squeezed(tmp_path, stack):
    tifffile.imwrite(tmp_path / "t.tif", stack[:, None], imagej=True, metadata={"axes": "ZCYX"})
    arr, meta = read(tmp_path / "t.tif")
    assert arr.shape == stack.shape and meta["axes"] == "zyx"


def test_rgb_tiff_is_converted_to_grey_with_a_note(tmp_path, rng):
    rgb = rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    with pytest.warns(UserWarning, match="RGB image converted to grey"):
        arr, meta = read(tmp_path / "rgb.tif")
    assert arr.shape == (20, 30) and arr.dtype == np.uint8
    expected = np.rint(rgb.astype(np.float32) @ np.array([0.2125, 0.7154, 0.0721], np.float32))
    np.testing.assert_array_equal(arr, expected.astype(np.uint8))
    assert any("RGB" in n for n in meta["notes"])


def test_mrc_voxel_size_from_header(tmp_path, rng):
    import mrcfile

    data = rng.standard_normal((3, 20, 24)).astype(np.float32)
    with mrcfile.new(tmp_path / "v.mrc") as mrc:
        mrc.set_data(data)
        mrc.voxel_size = (12.0, 10.0, 30.0)  # x, y, z in Å
    for suffix in (".mrc", ".rec"):
        path = tmp_path / f"v{suffix}"
        if suffix == ".rec":
            path.write_bytes((tmp_path / "v.mrc").read_bytes())
        arr, meta = read(path)
        np.testing.assert_array_equal(arr, data)
        assert meta["format"] == "mrc"
        assert meta["voxel_size"] == pytest.approx((3.0, 1.0, 1.2))


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_zarr_array_v2_v3(tmp_path, stack, zarr_format):
    import zarr

    z = zarr.create_array(
        str(tmp_path / "a.zarr"),
        shape=stack.shape,
        chunks=(1, 48, 40),
        dtype="u1",
        zarr_format=zarr_format,
    )
    z[:] = stack
    z.attrs["resolution"] = [40, 8, 8]
    arr, meta = read(tmp_path / "a.zarr")
    np.testing.assert_array_equal(arr, stack)
    assert meta["format"] == "zarr" and meta["zarr_format"] == zarr_format
    assert meta["voxel_size"] == (40.0, 8.0, 8.0)


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_ome_zarr_level0_and_scales(tmp_path, stack, zarr_format):
    import zarr

    g = zarr.open_group(str(tmp_path / "img.ome.zarr"), mode="w", zarr_format=zarr_format)
    axes = [{"name": "c", "type": "channel"}] + [
        {"name": n, "type": "space", "unit": u}
        for n, u in zip("zyx", ["nanometer", "micrometer", "micrometer"])
    ]
    ms = {
        "version": "0.4",
        "axes": axes,
        "datasets": [
            {
                "path": "s0",
                "coordinateTransformations": [{"type": "scale", "scale": [1, 50, 0.004, 0.004]}],
            },
            {
                "path": "s1",
                "coordinateTransformations": [{"type": "scale", "scale": [1, 50, 0.008, 0.008]}],
            },
        ],
    }
    if zarr_format == 3:
        g.attrs["ome"] = {"version": "0.5", "multiscales": [ms]}
    else:
        g.attrs["multiscales"] = [ms]
    g.create_array("s0", shape=(1, *stack.shape), dtype="u1")[:] = stack[None]
    g.create_array("s1", shape=(1, 5, 24, 20), dtype="u1")[:] = stack[None, :, ::2, ::2]
    arr, meta = read(tmp_path / "img.ome.zarr")
    np.testing.assert_array_equal(arr, stack)
    assert meta["format"] == "ome-zarr" and meta["key"] == "s0"
    assert meta["voxel_size"] == pytest.approx((50.0, 4.0, 4.0))


def test_zarr_group_key_and_ambiguity(tmp_path, stack):
    import zarr

    from napari_segnets.errors import InputError

    g = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    g.create_array("raw", shape=stack.shape, dtype="u1")[:] = stack
    g.create_array("labels", shape=stack.shape, dtype="u1")
    with pytest.raises(
        InputError, match=r"several 3D images \(labels .*raw .*\); choose one \(key="
    ):
        read(tmp_path / "g.zarr")
    arr, meta = read(tmp_path / "g.zarr", key="raw")
    np.testing.assert_array_equal(arr, stack)
    assert meta["key"] == "raw"
    with pytest.raises(InputError, match="no array 'nope'; its images are: labels, raw"):
        read(tmp_path / "g.zarr", key="nope")


def test_hdf5_only_3d_dataset_and_key(tmp_path, stack):
    import h5py

    with h5py.File(tmp_path / "v.h5", "w") as f:
        d = f.create_dataset("volumes/raw", data=stack, chunks=(1, 48, 40))
        d.attrs["element_size_um"] = [0.05, 0.004, 0.004]
        f.create_dataset(
            "volumes/mean", data=stack.mean(0)
        )  # 2D: not a candidate while a 3D one exists
        f.create_dataset("ids", data=np.arange(5))
    arr, meta = read(tmp_path / "v.h5")
    np.testing.assert_array_equal(arr, stack)
    assert meta["key"] == "volumes/raw" and meta["format"] == "hdf5"
    assert meta["voxel_size"] == pytest.approx((50.0, 4.0, 4.0))
    arr2, meta2 = read(tmp_path / "v.h5", key="volumes/mean")
    assert arr2.shape == (48, 40) and meta2["key"] == "volumes/mean"


def _write_pngs(folder, stack, names):
    from PIL import Image

    folder.mkdir()
    for plane, name in zip(stack, names):
        Image.fromarray(plane).save(folder / name)


def test_png_folder_sorted_naturally(tmp_path, stack):
    names = [f"slice_{i}.png" for i in (0, 1, 2, 10, 11)]
    # Shuffle creation order; natural order puts slice_2 before slice_10.
    _write_pngs(tmp_path / "pngs", stack, names)
    arr, meta = read(tmp_path / "pngs")
    np.testing.assert_array_equal(arr, stack)
    assert meta["files"] == names and meta["format"] == "folder"


def test_tiff_folder_uint16(tmp_path, rng):
    data = rng.integers(0, 65535, (3, 16, 12), dtype=np.uint16)
    (tmp_path / "tifs").mkdir()
    for i, plane in enumerate(data):
        tifffile.imwrite(tmp_path / "tifs" / f"z{i + 8}.tif", plane)
    (tmp_path / "tifs" / "notes.txt").write_text("ignored")
    arr, meta = read(tmp_path / "tifs")
    np.testing.assert_array_equal(arr, data)
    assert meta["files"] == ["z8.tif", "z9.tif", "z10.tif"]


def test_single_png_and_16bit_png(tmp_path, rng):
    from PIL import Image

    data = rng.integers(0, 65535, (20, 30), dtype=np.uint16)
    Image.fromarray(data).save(tmp_path / "x.png")
    arr, meta = read(tmp_path / "x.png")
    np.testing.assert_array_equal(arr, data)
    assert meta["format"] == "png" and meta["axes"] == "yx"


def test_rgba_png_folder_converted(tmp_path, rng):
    rgba = rng.integers(0, 255, (2, 10, 12, 4), dtype=np.uint8)
    _write_pngs(tmp_path / "c", rgba, ["a1.png", "a2.png"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        arr, meta = read(tmp_path / "c")
    assert arr.shape == (2, 10, 12)
    assert any("RGBA" in str(w.message) for w in caught) and "RGBA" in meta["notes"][0]


def test_sniff(tmp_path):
    assert sniff(tmp_path / "a.TIF") == "tiff"
    assert sniff(tmp_path / "a.rec") == "mrc"
    assert sniff(tmp_path / "a.hdf5") == "hdf5"
    assert sniff(tmp_path / "a.txt") is None
    assert sniff(tmp_path) is None  # an empty folder


def test_notes_for_planar_three_page_multi_series_and_time_axis(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", DeprecationWarning
        )  # tifffile warns about its planar default
        tifffile.imwrite(
            tmp_path / "p3.tif", np.arange(3 * 16 * 16, dtype=np.uint16).reshape(3, 16, 16)
        )
    arr, meta = read(tmp_path / "p3.tif")
    assert arr.shape == (3, 16, 16) and "planar RGB" in meta["notes"][0]
    with tifffile.TiffWriter(tmp_path / "ms.tif") as tw:
        tw.write(np.zeros((2, 16, 16), np.uint8), photometric="minisblack")
        tw.write(np.zeros((8, 8), np.uint8))
    arr, meta = read(tmp_path / "ms.tif")
    assert arr.shape == (2, 16, 16) and meta["notes"] == [
        "The file holds 2 image series; the first was read."
    ]
    tifffile.imwrite(
        tmp_path / "t.tif", np.zeros((5, 16, 16), np.uint8), imagej=True, metadata={"axes": "TYX"}
    )
    assert read(tmp_path / "t.tif")[1]["notes"] == [
        "Axis T (size 5) is read as the stack (z) axis."
    ]


def test_lazy_strip_tiff_has_one_chunk_per_page(tmp_path, rng):
    data = rng.integers(0, 255, (3, 256, 200), dtype=np.uint8)
    tifffile.imwrite(
        tmp_path / "strips.tif", data, compression="zlib", rowsperstrip=16, photometric="minisblack"
    )
    arr, _ = read(tmp_path / "strips.tif", lazy=True)
    assert arr.chunksize == (1, 256, 200)
    np.testing.assert_array_equal(arr.compute(), data)
