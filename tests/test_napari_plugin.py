"""The npe2 contributions: reader for every format, label writer, sample data; the public TIFFs."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_segnets import _napari
from napari_segnets.errors import InputError

REPO = Path(__file__).resolve().parents[1]
PLUGIN = "napari-segnets"


@pytest.fixture(scope="module")
def pm():
    npe2 = pytest.importorskip("npe2")
    manager = npe2.PluginManager.instance()
    manager.discover()
    if PLUGIN not in manager._manifests:  # not installed as a distribution: register our manifest
        manager.register(npe2.PluginManifest.from_file(REPO / "napari.yaml"))
    return manager


def _npe2_read(path):
    import npe2

    return npe2.read([str(path)], plugin_name=PLUGIN, stack=False)


def test_manifest_commands_resolve_to_our_functions():
    import npe2

    manifest = npe2.PluginManifest.from_file(REPO / "napari.yaml")
    mine = {
        c.id: c.python_name
        for c in manifest.contributions.commands
        if c.python_name.startswith("napari_segnets._napari:")
    }
    assert set(mine) == {
        f"{PLUGIN}.{n}"
        for n in (
            "get_reader",
            "write_labels",
            "sample_synthetic",
            "sample_isbi2012",
            "sample_lucchi",
        )
    }
    for python_name in mine.values():
        assert callable(getattr(_napari, python_name.split(":")[1]))


def _files(tmp_path, rng):
    import h5py
    import mrcfile
    import zarr
    from PIL import Image

    data = rng.integers(0, 255, (4, 24, 20), dtype=np.uint8)
    tifffile.imwrite(
        tmp_path / "s.tif",
        data,
        imagej=True,
        resolution=(250, 250),
        metadata={"spacing": 0.05, "unit": "um", "axes": "ZYX"},
    )
    with mrcfile.new(tmp_path / "s.mrc") as mrc:
        mrc.set_data(data)
        mrc.voxel_size = 40.0
    zarr.create_array(str(tmp_path / "s.zarr"), shape=data.shape, dtype="u1")[:] = data
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f["raw"] = data
    (tmp_path / "slices").mkdir()
    for i, plane in enumerate(data):
        Image.fromarray(plane).save(tmp_path / "slices" / f"s{i}.png")
    Image.fromarray(data[0]).save(tmp_path / "one.png")
    return data, {
        "s.tif": (50.0, 4.0, 4.0),
        "s.mrc": (4.0, 4.0, 4.0),
        "s.zarr": None,
        "s.h5": None,
        "slices": None,
        "one.png": None,
    }


def test_napari_resolves_our_reader_for_every_format(pm, tmp_path, rng):
    data, scales = _files(tmp_path, rng)
    for name, scale in scales.items():
        path = tmp_path / name
        readers = [r.command for r in pm.iter_compatible_readers([str(path)])]
        assert f"{PLUGIN}.get_reader" in readers, name
        layers = _npe2_read(path)
        assert len(layers) == 1, name
        arr, kwargs, kind = layers[0]
        assert kind == "image"
        expected = data[0] if name == "one.png" else data
        np.testing.assert_array_equal(np.asarray(arr), expected, err_msg=name)
        if arr.dtype == np.uint8:
            assert kwargs["contrast_limits"] == [0.0, 255.0]
        else:  # mrcfile stores uint8 as uint16: robust percentiles of the data instead
            lo, hi = kwargs["contrast_limits"]
            assert expected.min() <= lo < 10 and 245 < hi <= expected.max()
        if scale is None:
            assert "scale" not in kwargs, name
        else:
            assert kwargs["scale"] == pytest.approx(scale), name
            assert kwargs["units"] == ("nm",) * 3
        assert kwargs["metadata"]["segnets"]["path"] == str(path)


def test_get_reader_declines_what_it_cannot_read(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    assert _napari.get_reader(str(tmp_path / "notes.txt")) is None
    assert _napari.get_reader(str(tmp_path / "empty")) is None
    assert _napari.get_reader([str(tmp_path / "notes.txt")]) is None


def test_reader_function_raises_a_clear_error_for_corrupt_files(tmp_path):
    (tmp_path / "bad.tif").write_bytes(b"garbage" * 10)
    reader = _napari.get_reader(str(tmp_path / "bad.tif"))
    assert reader is not None
    with pytest.raises(InputError, match="not a readable TIFF"):
        reader(str(tmp_path / "bad.tif"))


def test_contrast_limits_for_uint16_and_float(tmp_path, rng):
    u16 = rng.integers(1000, 3000, (3, 32, 32), dtype=np.uint16)
    f32 = rng.standard_normal((3, 32, 32)).astype(np.float32)
    tifffile.imwrite(tmp_path / "u16.tif", u16, photometric="minisblack")
    tifffile.imwrite(tmp_path / "f32.tif", f32, photometric="minisblack")
    lo, hi = _napari.get_reader(str(tmp_path / "u16.tif"))(str(tmp_path / "u16.tif"))[0][1][
        "contrast_limits"
    ]
    assert 1000 <= lo < 1100 and 2900 < hi <= 3000
    lo, hi = _napari.get_reader(str(tmp_path / "f32.tif"))(str(tmp_path / "f32.tif"))[0][1][
        "contrast_limits"
    ]
    assert -4 < lo < -2 and 2 < hi < 4


def test_lazy_stack_reaches_napari_as_dask(pm, tmp_path, rng, monkeypatch):
    import dask.array as da

    tifffile.imwrite(
        tmp_path / "big.tif",
        rng.integers(0, 255, (5, 64, 64), dtype=np.uint8),
        photometric="minisblack",
    )
    monkeypatch.setenv("SEGNETS_LAZY_BYTES", "1000")
    arr, kwargs, _ = _npe2_read(tmp_path / "big.tif")[0]
    assert isinstance(arr, da.Array) and kwargs["metadata"]["segnets"]["lazy"] is True


@pytest.mark.parametrize("suffix", [".tif", ".zarr"])
def test_writer_through_npe2_round_trips(pm, tmp_path, rng, suffix):
    import npe2

    labels = rng.integers(0, 3, (3, 16, 16)).astype(np.int32)
    path = tmp_path / f"mask{suffix}"
    written = npe2.write(
        str(path),
        [(labels, {"name": "mask", "scale": (50.0, 4.0, 4.0)}, "labels")],
        plugin_name=PLUGIN,
    )
    assert written == [str(path)]
    arr, kwargs, kind = _npe2_read(path)[0]
    assert kind == "labels"  # our own label files come back as a Labels layer
    np.testing.assert_array_equal(np.asarray(arr), labels)
    assert kwargs["scale"] == pytest.approx((50.0, 4.0, 4.0))


def test_writer_prefers_the_voxel_size_our_reader_stored(tmp_path):
    from napari_segnets.io import read

    attrs = {"scale": (1.0, 1.0, 1.0), "metadata": {"segnets": {"voxel_size": (30.0, 2.0, 2.0)}}}
    path = str(tmp_path / "m.tif")
    assert _napari.write_labels(path, np.ones((2, 8, 8), np.uint8), attrs) == [path]
    assert read(path)[1]["voxel_size"] == pytest.approx((30.0, 2.0, 2.0))


def test_sample_synthetic(pm):
    layers = pm.get_command(f"{PLUGIN}.sample_synthetic").exec()
    (image, ikw, ikind), (classes, ckw, ckind) = layers
    assert (ikind, ckind) == ("image", "labels")
    assert image.dtype == np.uint8 and classes.shape == image.shape and image.ndim == 3
    assert set(np.unique(classes)) == {0, 1, 2}


def test_public_samples_say_where_to_put_the_data(tmp_path, monkeypatch):
    from napari_segnets.io import public

    monkeypatch.setenv("SEGNETS_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setattr(public, "beside_repo", lambda: tmp_path / "also-nowhere")
    monkeypatch.setattr(public, "download_cache", lambda: tmp_path / "no-cache")
    for fn, folder in (
        (_napari.sample_isbi2012, "isbi2012_em_segmentation"),
        (_napari.sample_lucchi, "epfl_lucchi_mitochondria"),
    ):
        with pytest.raises(
            InputError, match=rf"not found .*put its folder {folder}/ there, set \$SEGNETS_DATA"
        ):
            fn()


def _readme_shapes(readme: Path) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for line in readme.read_text().splitlines():
        m = re.match(r"\|\s*(\S+\.tif)\s*\|\s*\(([\d,\s]+)\)\s*\|", line)
        if m:
            shapes[m.group(1)] = tuple(int(v) for v in m.group(2).split(","))
    return shapes


@pytest.mark.slow
def test_every_shared_tiff_reads_with_its_readme_shape(pm, shared_data):
    checked = 0
    for readme in sorted(shared_data.glob("*/README.md")):
        for name, shape in _readme_shapes(readme).items():
            layers = _npe2_read(readme.parent / name)
            arr, kwargs, kind = layers[0]
            assert arr.shape == shape, name
            # the raw stacks open as images, their 0/255 masks as Labels layers
            images = ("raw", "volume", "training_slices")
            expected = "image" if any(w in name for w in images) else "labels"
            assert arr.dtype == np.uint8 and kind == expected, name
            checked += 1
    assert checked >= 10


@pytest.mark.slow
def test_public_sample_contributions(pm, shared_data, monkeypatch):
    monkeypatch.setenv("SEGNETS_DATA", str(shared_data))
    for key, shape, fraction in (
        ("isbi2012", (30, 512, 512), 0.22),
        ("lucchi", (30, 768, 1024), 0.0819),
    ):
        (image, ikw, _), (labels, lkw, kind) = pm.get_command(f"{PLUGIN}.sample_{key}").exec()
        assert image.shape == labels.shape == shape and kind == "labels"
        assert labels.mean() == pytest.approx(fraction, abs=0.005)
        assert ikw["scale"] == lkw["scale"]


@pytest.mark.gui
def test_viewer_shows_a_lazy_stack_without_loading_it(
    make_napari_viewer, tmp_path, rng, monkeypatch
):
    import dask.array as da

    from napari_segnets.io import slices

    viewer = make_napari_viewer()
    data = rng.integers(0, 255, (12, 32, 32), dtype=np.uint8)
    (tmp_path / "pngs").mkdir()
    from PIL import Image

    for i, plane in enumerate(data):
        Image.fromarray(plane).save(tmp_path / "pngs" / f"slice_{i}.png")
    calls = []
    original = slices.read_slice
    monkeypatch.setattr(slices, "read_slice", lambda p: calls.append(p.name) or original(p))
    monkeypatch.setenv("SEGNETS_LAZY_BYTES", "1000")  # anything bigger than 1 kB is "huge"
    layer = viewer.open(str(tmp_path / "pngs"), plugin=PLUGIN)[0]
    assert isinstance(layer.data, da.Array)
    viewer.dims.set_current_step(0, 7)
    assert "slice_7.png" in calls  # napari fetched the slice it shows...
    assert len(set(calls)) < len(data)  # ...and not the whole stack


@pytest.mark.gui
def test_viewer_opens_stacks_and_samples(make_napari_viewer, tmp_path, rng):
    viewer = make_napari_viewer()
    data = rng.integers(0, 255, (4, 32, 32), dtype=np.uint8)
    tifffile.imwrite(
        tmp_path / "v.tif",
        data,
        imagej=True,
        resolution=(250, 250),
        metadata={"spacing": 0.05, "unit": "um", "axes": "ZYX"},
    )
    layers = viewer.open(str(tmp_path / "v.tif"), plugin=PLUGIN)
    assert layers[0].data.shape == (4, 32, 32)
    assert tuple(layers[0].scale) == pytest.approx((50.0, 4.0, 4.0))
    viewer.open_sample(PLUGIN, "synthetic")
    kinds = sorted(type(layer).__name__ for layer in viewer.layers)
    assert kinds == ["Image", "Image", "Labels"]


@pytest.mark.gui
def test_viewer_mask_as_labels_container_as_layers_notes_as_notifications(
    make_napari_viewer, tmp_path, rng
):
    import h5py
    from napari.utils.notifications import notification_manager

    viewer = make_napari_viewer()
    mask = np.zeros((3, 32, 32), np.uint8)
    mask[:, 8:20, 8:20] = 255  # a 0/255 mask as labs keep them
    tifffile.imwrite(tmp_path / "cells.tif", mask, photometric="minisblack")
    (layer,) = viewer.open(str(tmp_path / "cells.tif"), plugin=PLUGIN)
    assert type(layer).__name__ == "Labels" and layer.data.max() == 255
    viewer.dims.set_current_step(0, 1)
    rgba = layer.get_color(255)  # the object gets a visible colour, the background none
    background = layer.get_color(0)
    assert rgba is not None and rgba[3] > 0 and (background is None or background[3] == 0)
    with h5py.File(tmp_path / "two.h5", "w") as f:
        f["raw"] = rng.integers(0, 255, (3, 32, 32), dtype=np.uint8)
        f["gt"] = mask // 255
    layers = viewer.open(str(tmp_path / "two.h5"), plugin=PLUGIN)
    assert {(lyr.name, type(lyr).__name__) for lyr in layers} == {
        ("two.h5 [gt]", "Labels"),
        ("two.h5 [raw]", "Image"),
    }
    rgb = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "colour.tif", rgb, photometric="rgb")
    seen = []
    notification_manager.notification_ready.connect(lambda n: seen.append(str(n.message)))
    with pytest.warns(UserWarning, match="RGB image converted"):
        viewer.open(str(tmp_path / "colour.tif"), plugin=PLUGIN)
    assert any("colour.tif: RGB image converted to grey" in m for m in seen), seen
