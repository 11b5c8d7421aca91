"""The axis model on generated files: declared axes -> (Z, Y, X), voxel sizes moved with them.

Generated because no real file of these kinds was found (see tests/data/real/README.md).
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_segnets.errors import InputError
from napari_segnets.io import read


@pytest.fixture
def zyx(rng):
    return rng.integers(0, 255, (5, 24, 16), dtype=np.uint8)


@pytest.mark.parametrize("lazy", [False, True])
@pytest.mark.parametrize("letter", ["Z", "T"])
def test_tiff_stack_axis_last_is_moved_first(tmp_path, zyx, letter, lazy):
    tifffile.imwrite(tmp_path / "s.tif", zyx.transpose(1, 2, 0), metadata={"axes": f"YX{letter}"})
    arr, meta = read(tmp_path / "s.tif", lazy=lazy)
    np.testing.assert_array_equal(np.asarray(arr), zyx)
    assert meta["shape"] == (5, 24, 16) and meta["axes"] == "zyx"
    assert any(f"stores its axes as Y, X, {letter}" in n for n in meta["notes"])


@pytest.mark.parametrize("lazy", [False, True])
def test_grey_plus_alpha_tiff_keeps_the_grey(tmp_path, zyx, lazy):
    grey_alpha = np.stack([zyx[0], np.full_like(zyx[0], 255)], axis=-1)
    tifffile.imwrite(tmp_path / "ga.tif", grey_alpha, photometric="minisblack", extrasamples=[2])
    arr, meta = read(tmp_path / "ga.tif", lazy=lazy)
    np.testing.assert_array_equal(np.asarray(arr), zyx[0])
    assert any("alpha" in n for n in meta["notes"])


def test_two_unexplained_samples_are_refused(tmp_path, zyx):
    two = np.stack([zyx[0], zyx[1]], axis=-1)
    tifffile.imwrite(tmp_path / "two.tif", two, photometric="minisblack", extrasamples=[0])
    with pytest.raises(InputError, match="2 samples per pixel that are not RGB colour"):
        read(tmp_path / "two.tif")


def test_ome_tiff_partial_calibration_keeps_xy(tmp_path, zyx):
    md = {"axes": "ZYX", "PhysicalSizeX": 4.0, "PhysicalSizeXUnit": "nm",
          "PhysicalSizeY": 5.0, "PhysicalSizeYUnit": "nm"}  # fmt: skip
    tifffile.imwrite(tmp_path / "p.ome.tif", zyx, ome=True, metadata=md)
    assert read(tmp_path / "p.ome.tif")[1]["voxel_size"] == (None, 5.0, 4.0)


def test_imagej_xy_without_spacing_is_partial(tmp_path, zyx):
    tifffile.imwrite(
        tmp_path / "ij.tif", zyx, imagej=True, resolution=(1 / 0.004, 1 / 0.005),
        metadata={"unit": "um", "axes": "ZYX"},
    )  # fmt: skip
    voxel = read(tmp_path / "ij.tif")[1]["voxel_size"]
    assert voxel[0] is None and voxel[1:] == pytest.approx((5.0, 4.0))


@pytest.mark.parametrize("lazy", [False, True])
def test_ome_zarr_axes_stored_x_y_z_are_reordered_with_their_scale(tmp_path, zyx, lazy):
    import zarr

    g = zarr.open_group(str(tmp_path / "xyz.ome.zarr"), mode="w", zarr_format=2)
    g.create_array("0", shape=zyx.T.shape, dtype="u1")[:] = zyx.T  # stored (X, Y, Z)
    axes = [{"name": a, "type": "space", "unit": "nanometer"} for a in "xyz"]
    scale = [{"type": "scale", "scale": [4.0, 5.0, 40.0]}]
    g.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": axes,
            "datasets": [{"path": "0", "coordinateTransformations": scale}],
        }
    ]
    arr, meta = read(tmp_path / "xyz.ome.zarr", lazy=lazy)
    np.testing.assert_array_equal(np.asarray(arr), zyx)
    assert meta["voxel_size"] == (40.0, 5.0, 4.0) and meta["scale"] == [40.0, 5.0, 4.0]


@pytest.mark.parametrize("lazy", [False, True])
def test_hdf5_dimension_labels_and_element_size(tmp_path, zyx, lazy):
    import h5py

    with h5py.File(tmp_path / "yxz.h5", "w") as f:
        ds = f.create_dataset("raw", data=zyx.transpose(1, 2, 0))
        for i, label in enumerate("yxz"):
            ds.dims[i].label = label
        ds.attrs["element_size_um"] = [0.005, 0.004, 0.04]  # per stored axis: y, x, z
    arr, meta = read(tmp_path / "yxz.h5", lazy=lazy)
    np.testing.assert_array_equal(np.asarray(arr), zyx)
    assert meta["voxel_size"] == pytest.approx((40.0, 5.0, 4.0))


def test_zarr_xarray_dimension_names(tmp_path, zyx):
    import zarr

    z = zarr.open_array(str(tmp_path / "a.zarr"), mode="w", shape=(24, 5, 16), dtype="u1",
                        zarr_format=2)  # fmt: skip
    z[:] = zyx.transpose(1, 0, 2)
    z.attrs["_ARRAY_DIMENSIONS"] = ["y", "z", "x"]
    np.testing.assert_array_equal(read(tmp_path / "a.zarr")[0], zyx)


def test_mrc_with_rows_along_z(tmp_path, zyx):
    import mrcfile

    with mrcfile.new(tmp_path / "p.mrc") as m:
        m.set_data(zyx.transpose(1, 0, 2).astype(np.int8))  # stored (Y, Z, X): rows are Z
        m.header.mapc, m.header.mapr, m.header.maps = 1, 3, 2
        m.voxel_size = (40.0, 50.0, 400.0)  # x, y, z in Å
    arr, meta = read(tmp_path / "p.mrc")
    np.testing.assert_array_equal(arr, zyx.astype(np.int8))
    assert meta["voxel_size"] == pytest.approx((40.0, 5.0, 4.0))


@pytest.mark.parametrize("lazy", [False, True])
def test_big_endian_pixels_come_back_native(tmp_path, zyx, lazy):
    big = zyx.astype(">u2") * 100
    tifffile.imwrite(tmp_path / "be.tif", big, byteorder=">", photometric="minisblack")
    arr, meta = read(tmp_path / "be.tif", lazy=lazy)
    assert arr.dtype == np.dtype("uint16") and arr.dtype.isnative
    np.testing.assert_array_equal(np.asarray(arr), big.astype("=u2"))


def test_tifffile_old_planar_default_stays_a_stack(tmp_path, zyx):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        tifffile.imwrite(tmp_path / "p3.tif", zyx[:3], photometric="rgb", planarconfig="separate")
    arr, meta = read(tmp_path / "p3.tif")
    assert arr.shape == (3, 24, 16) and "planes are read as z slices" in meta["notes"][0]


@pytest.mark.parametrize("lazy", [False, True])
def test_palette_png_labels_keep_their_indices_grey_palettes_their_values(tmp_path, lazy):
    from PIL import Image

    idx = np.zeros((16, 16), np.uint8)
    idx[4:8, 4:8], idx[10:12] = 2, 1
    colour = Image.fromarray(idx, mode="P")
    colour.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0])
    colour.save(tmp_path / "mask.png")
    arr, meta = read(tmp_path / "mask.png", lazy=lazy)
    np.testing.assert_array_equal(np.asarray(arr), idx)
    assert "palette indices were read" in meta["notes"][0]
    grey = Image.fromarray(idx * 100, mode="P")
    grey.putpalette([v for g in range(256) for v in (g, g, g)])
    grey.save(tmp_path / "grey.png")
    arr, meta = read(tmp_path / "grey.png", lazy=lazy)
    np.testing.assert_array_equal(np.asarray(arr), idx * 100)
    assert meta["notes"] == []


@pytest.mark.parametrize(
    "shape, axes, out",
    [
        ((1, 1, 7), "zyx", (1, 7)),  # a 1 x N image stays an image
        ((1, 4, 1, 7), "tzyx", (4, 7)),  # T and the singleton Y go, Z and X stay
        ((2, 1, 1, 8, 8), "tczyx", (2, 8, 8)),
        ((1, 1, 1, 8, 8), None, (8, 8)),
    ],
)
def test_singleton_axes_are_dropped_leading_first_and_y_x_last(shape, axes, out):
    from napari_segnets.io.axes import to_zyx

    data = np.arange(int(np.prod(shape))).reshape(shape)
    array, letters, _ = to_zyx(data, axes, {}, [], name="f")
    assert array.shape == out and letters == "zyx"[-len(out) :]
    np.testing.assert_array_equal(array.ravel(), data.ravel())
