"""Real files written by other software (tests/data/real, see its README): right or refused.

Each readable file is compared with an independent decode (Pillow, h5py, zarr, mrcfile) moved
to (Z, Y, X) by hand, eagerly, lazily and through npe2 (the napari reader).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from napari_segnets import _napari
from napari_segnets.errors import InputError
from napari_segnets.io import layer_kind, read

REAL = Path(__file__).parent / "data" / "real"
LUMA = np.array([0.2125, 0.7154, 0.0721])


def _pil(path):
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im)


def _grey(rgb, dtype):
    """Luminance as the reader computes it, from an (..., Y, X, 3+) array."""
    grey = np.rint(np.asarray(rgb[..., :3], np.float64) @ LUMA)
    return np.clip(grey, np.iinfo(dtype).min, np.iinfo(dtype).max).astype(dtype)


def _h5(path, key="data"):
    import h5py

    with h5py.File(path, "r") as f:
        return f[key][()]


def _zarr(path, key):
    import zarr

    return np.asarray(zarr.open(str(path), mode="r")[key][...])


def _mrc(path):
    import mrcfile

    with mrcfile.open(path, permissive=True) as m:
        return np.array(m.data)


def _tiff(path):
    import tifffile

    return tifffile.imread(path)


# path -> (reference pixels in Z, Y, X, voxel size (nm) or None, a note that must appear or None)
READABLE = {
    "mrcfile/EMD-3197.map": (lambda p: _mrc(p), (1.14, 1.14, 1.14), None),
    # MAPC/MAPR/MAPS = 3, 1, 2: stored (sections = Y, rows = X, columns = Z)
    "mrcfile/EMD-3001.map": (
        lambda p: _mrc(p).transpose(2, 0, 1),
        (33.03 / 72 / 10, 4.71 / 12 / 10, 17.93 / 40 / 10),
        "reordered to Z, Y, X",
    ),
    "pillow/hopper.tif": (lambda p: _grey(_pil(p), np.uint8), None, "RGB image converted"),
    "pillow/hopper_lzw.tif": (lambda p: _grey(_pil(p), np.uint8), None, "RGB image converted"),
    "pillow/hopper_bigtiff.tif": (lambda p: _grey(_pil(p), np.uint8), None, "RGB image"),
    # JPEG: decoders may differ by a grey level, compared with a tolerance below
    "pillow/hopper_jpg.tif": (lambda p: _grey(_pil(p), np.uint8), None, "RGB image converted"),
    # libtiff planar RGB (PlanarConfiguration 2): one grey image, not three z slices
    "pillow/tiff_strip_planar_16bit_RGB.tiff": (
        lambda p: _grey(np.moveaxis(_tiff(p), 0, -1), np.uint16),
        None,
        "RGB image converted",
    ),
    "pillow/tiff_16bit_RGBa.tiff": (
        lambda p: _grey(_tiff(p), np.uint16),
        None,
        "RGBA image converted",
    ),
    "pillow/12bit.cropped.tif": (lambda p: _pil(p), None, None),
    "pillow/16bit.MM.cropped.tif": (lambda p: _pil(p).astype("=u2"), None, None),
    "pillow/16bit.MM.deflate.tif": (lambda p: _pil(p).astype("=u2"), None, None),
    "pillow/rdf.tif": (lambda p: _tiff(p)[..., 0], None, "alpha"),  # palette index + alpha
    "pillow/g4-fillorder-test.tif": (lambda p: _tiff(p).astype(np.uint8), None, None),
    "pillow/multipage.tiff": (lambda p: _tiff(p).astype(np.uint8), None, "2 image series"),
    "pillow/mode_grayscale_alpha.png": (lambda p: _pil(p)[..., 0], None, "alpha"),
    "ilastik/3d.h5": (lambda p: _h5(p), None, None),
    "ilastik/3d1c-synthetic.h5": (lambda p: _h5(p)[..., 0], None, None),  # z, y, x, c
    "ilastik/5t2d1c.h5": (lambda p: _h5(p)[..., 0], None, "Axis T (size 5)"),  # t, y, x, c
    "ilastik/5t2d_simple.h5": (lambda p: _h5(p, "simple"), None, "Axis T"),  # t, y, x
    "ilastik/2d3c_Binary_Segmentation.h5": (
        lambda p: _h5(p, "exported_data")[..., 0],
        None,
        None,
    ),
    # ImageJ: X in cm (5 cm: a placeholder, dropped), Y in nm (6 nm: kept)
    "ilastik/2d_with_pixel_sizes.tif": (lambda p: _tiff(p), (6.0, None), None),
    "ome-zarr-fiji-java/2d_v4.ome.zarr": (lambda p: _zarr(p, "0"), None, None),
    "ome-zarr-fiji-java/zyx_v5.ome.zarr": (lambda p: _zarr(p, "0"), None, None),
    "ome-zarr-fiji-java/single_v5.ome.zarr": (lambda p: _zarr(p, "0"), None, None),
    "ome-zarr-fiji-java/tyx_v4.ome.zarr": (lambda p: _zarr(p, "0"), None, "Axis T (size 4)"),
}

REFUSED = {
    "ilastik/1d.h5": r"no 2D or 3D dataset \(data \(10,\)\)",
    "ilastik/2d3c.h5": r"3 channels \(the file does not name its axes.*read as Y, X, C\)",
    "ilastik/2d3c_Probabilities.h5": r"2 channels",
    "pillow/separate_planar_extra_samples.tiff": r"2 samples per pixel that are not RGB",
    "pillow/tiff_strip_cmyk_jpeg.tif": r"4 samples per pixel that are not RGB",
    "ome-zarr-fiji-java/cyx_v5.ome.zarr": r"3 channels",
    "ome-zarr-fiji-java/tzyx_v4.ome.zarr": r"4 dimensions \(4, 16, 64, 64\)",
    "ome-zarr-py/v2.zarr": r"2 channels",
    "pillow/broken_data_stream.png": r"broken_data_stream.png .*(not a readable PNG|could not be read)",
}


def _path(rel: str) -> Path:
    path = REAL / rel
    if not path.exists():
        pytest.skip(f"{rel} is not in tests/data/real")
    return path


def _close(actual, expected, rel):
    """Equal; colour files within the rounding of luminance (float32 here vs float64 there)."""
    assert actual.shape == expected.shape, rel
    note = READABLE.get(rel, (None, None, None))[2] or ""
    tolerance = 2 if rel.endswith("_jpg.tif") else 1 if "RGB" in note else 0
    if tolerance == 0:
        np.testing.assert_array_equal(actual, expected, err_msg=rel)
    else:
        assert np.abs(actual.astype(np.int64) - expected.astype(np.int64)).max() <= tolerance, rel


@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "lazy"])
@pytest.mark.parametrize("rel", sorted(READABLE))
def test_real_file_reads_right(rel, lazy):
    path = _path(rel)
    reference, voxel, note = READABLE[rel]
    expected = reference(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "RGB converted to grey" is also a note
        array, meta = read(path, lazy=lazy)
    assert meta["lazy"] is lazy
    assert array.dtype == expected.dtype and array.dtype.isnative, rel
    _close(np.asarray(array), expected, rel)
    assert meta["shape"] == expected.shape and meta["axes"] == "zyx"[-expected.ndim :]
    if voxel is None:
        assert meta["voxel_size"] is None, rel
    else:
        assert len(meta["voxel_size"]) == len(voxel)
        for got, want in zip(meta["voxel_size"], voxel):
            assert (got is None) if want is None else got == pytest.approx(want, rel=1e-5)
    if note:
        assert any(note in n for n in meta["notes"]), meta["notes"]


@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "lazy"])
@pytest.mark.parametrize("rel", sorted(REFUSED))
def test_real_file_refused_with_one_sentence(rel, lazy):
    with pytest.raises(InputError, match=REFUSED[rel]) as info:
        array, _ = read(_path(rel), lazy=lazy)
        np.asarray(array)  # a lazy read must refuse at the latest when pixels are fetched
    text = str(info.value)
    assert "\n" not in text and len(text) < 400 and text.endswith(".")


def test_bioformats2raw_layout_lists_its_series_and_reads_each():
    path = _path("ome-zarr-fiji-java/bf2raw_v5.ome.zarr")
    from napari_segnets.io import AmbiguousInputError

    with pytest.raises(AmbiguousInputError, match=r"several 2D images \(0 \(64, 64\), 1") as info:
        read(path)
    assert info.value.choices == ["0", "1"]
    for key in ("0", "1"):
        array, meta = read(path, key=key)
        np.testing.assert_array_equal(array, _zarr(path, f"{key}/0"))
        assert meta["format"] == "ome-zarr" and meta["key"] == f"{key}/0"


def _npe2(path):
    import npe2

    return npe2.read([str(path)], plugin_name="napari-segnets", stack=False)


@pytest.fixture(scope="module")
def pm():
    npe2 = pytest.importorskip("npe2")
    manager = npe2.PluginManager.instance()
    manager.discover()
    if "napari-segnets" not in manager._manifests:
        repo = Path(__file__).resolve().parents[1]
        manager.register(npe2.PluginManifest.from_file(repo / "napari.yaml"))
    return manager


@pytest.mark.parametrize("rel", sorted(READABLE))
def test_real_file_through_npe2(pm, rel, monkeypatch):
    path = _path(rel)
    shown = []
    monkeypatch.setattr(_napari, "_notify", shown.append)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        layers = _npe2(path)
        eager, meta = read(path)
    assert len(layers) == 1
    data, kwargs, kind = layers[0]
    full = meta["voxel_size"] is not None and None not in meta["voxel_size"]
    file_scale = tuple(meta["scale"]) if meta.get("scale") else None  # OME-Zarr's own, unitless
    assert kwargs.get("scale") == (tuple(meta["voxel_size"]) if full else file_scale)
    _close(np.asarray(data), np.asarray(eager), rel)
    assert kind == layer_kind(eager, meta)
    notes = [f"{path.name}: {n}" for n in meta["notes"]]
    if meta["voxel_size"] and None in meta["voxel_size"]:  # a partial calibration is shown too
        notes.append(
            f"{path.name}: The file does not calibrate X; the layer is shown in pixels (the known "
            "sizes are kept in its metadata)."
        )
    assert shown == notes


def test_npe2_opens_every_series_of_a_bioformats2raw_store(pm):
    path = _path("ome-zarr-fiji-java/bf2raw_v5.ome.zarr")
    layers = _npe2(path)
    assert [kw["name"] for _, kw, _ in layers] == [f"{path.name} [0/0]", f"{path.name} [1/0]"]


@pytest.mark.parametrize("rel", sorted(REFUSED))
def test_real_file_refused_through_the_napari_reader(rel):
    path = _path(rel)
    reader = _napari.get_reader(str(path))
    assert reader is not None
    with pytest.raises(InputError, match=REFUSED[rel]):
        for data, _, _ in reader(str(path)):
            np.asarray(data)


def test_masks_open_as_labels_and_images_as_images():
    kinds = {}
    for rel in (
        "ilastik/2d3c_Binary_Segmentation.h5",
        "ilastik/3d1c-synthetic.h5",
        "pillow/g4-fillorder-test.tif",
        "ilastik/3d.h5",
        "pillow/hopper_lzw.tif",
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            array, meta = read(_path(rel))
        kinds[rel] = _napari.layer_tuple(array, meta)[2]
    assert kinds == {
        "ilastik/2d3c_Binary_Segmentation.h5": "labels",  # 2 values, "Segmentation" in the name
        "ilastik/3d1c-synthetic.h5": "labels",  # 2 values
        "pillow/g4-fillorder-test.tif": "labels",  # bilevel
        "ilastik/3d.h5": "image",
        "pillow/hopper_lzw.tif": "image",
    }
