"""The Wavelets widget: three layers side by side, following the slice; autoencoder comparison."""

from __future__ import annotations

import numpy as np
import pytest

from tests._widget_helpers import Notes, set_slice, synthetic_layers, wait_for

pytestmark = pytest.mark.gui


def _three_layers(viewer):
    from scipy import ndimage

    img, _truth = synthetic_layers(viewer)
    data = img.data.astype(np.float32)
    blurred = viewer.add_image(ndimage.gaussian_filter(data, (0, 2, 2)), name="blurred", scale=img.scale)
    noisy = viewer.add_image(data + np.random.default_rng(0).normal(0, 20, data.shape).astype(np.float32),
                             name="noisy", scale=img.scale)
    return img, blurred, noisy


def test_three_layers_side_by_side_follow_the_slice(make_napari_viewer, qtbot, monkeypatch):
    from napari_segnets import wavelets
    from napari_segnets._widgets import WaveletWidget

    notes = Notes(monkeypatch)
    viewer = make_napari_viewer()
    layers = _three_layers(viewer)
    widget = WaveletWidget(viewer)
    widget.layers.value = list(layers)
    set_slice(viewer, layers[0], 1)
    assert widget.show_mosaics() is not None
    wait_for(qtbot, widget)
    mosaics = widget.mosaic_layers
    assert [m.name for m in mosaics] == [f"{layer.name} mosaic L1" for layer in layers]
    for layer, mos in zip(layers, mosaics):
        assert mos.data.shape == layer.data.shape[1:]
        assert tuple(mos.scale) == tuple(layer.scale[1:])
        expected = wavelets.mosaic(np.asarray(layer.data[1], dtype=np.float32), "haar", level=1)
        np.testing.assert_allclose(mos.data, expected, atol=1e-6)
    grid = viewer.canvas.grid
    assert grid.enabled and grid.shape == (2, 3)
    assert not viewer.layers["membranes"].visible, "layers outside the comparison leave the grid"
    cells = [layer for layer in viewer.layers if layer.visible]
    assert len(cells) == 6 and all(layer.name_overlay.visible for layer in cells), "each cell is labelled"
    assert not viewer.layers["membranes"].name_overlay.visible
    # the power per level of every layer, finest level first, each summing to one
    assert set(widget.power) == {layer.name for layer in layers}
    for power in widget.power.values():
        assert power.sum() == pytest.approx(1.0)
    assert widget.power["blurred"][0] < widget.power["em"][0] < widget.power["noisy"][0]
    qtbot.waitUntil(lambda: widget.plot.image is not None, timeout=60_000)  # the power plot was drawn

    # moving to another slice refreshes the mosaics
    before = mosaics[0].data.copy()
    set_slice(viewer, layers[0], 2)
    qtbot.waitUntil(lambda: not np.array_equal(widget.mosaic_layers[0].data, before), timeout=20_000)
    wait_for(qtbot, widget)
    expected = wavelets.mosaic(np.asarray(layers[0].data[2], dtype=np.float32), "haar", level=1)
    np.testing.assert_allclose(widget.mosaic_layers[0].data, expected, atol=1e-6)

    # another wavelet and level replace the mosaics
    widget.level.value = 2
    qtbot.waitUntil(lambda: "em mosaic L2" in viewer.layers, timeout=20_000)
    wait_for(qtbot, widget)
    assert "em mosaic L1" not in viewer.layers
    widget.wavelet.value = "db2"
    expected = wavelets.mosaic(np.asarray(layers[0].data[2], dtype=np.float32), "db2", level=2)

    def db2_shown():
        data = widget.mosaic_layers[0].data
        return data.shape == expected.shape and np.allclose(data, expected, atol=1e-6)

    qtbot.waitUntil(db2_shown, timeout=20_000)
    wait_for(qtbot, widget)
    widget.grid_off()
    assert not grid.enabled and viewer.layers["membranes"].visible
    assert [layer.name for layer in viewer.layers] == ["em", "membranes", "blurred", "noisy"], "order restored"
    assert not any("mosaic" in layer.name for layer in viewer.layers), "Grid off removes the mosaics"
    assert all(layer.visible and not layer.name_overlay.visible for layer in viewer.layers)
    assert widget.mosaic_layers == []
    set_slice(viewer, layers[0], 0)  # nothing to follow any more
    assert not widget.runner.running
    assert not notes.errors, notes.errors


def test_compare_autoencoders_on_the_current_slice(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    from napari_segnets import checkpoints, models
    from napari_segnets._widgets import WaveletWidget
    from napari_segnets._widgets._session import REGISTRY

    notes = Notes(monkeypatch)
    viewer = make_napari_viewer()
    img, _truth = synthetic_layers(viewer)
    widget = WaveletWidget(viewer)
    # two untrained autoencoders, as if opened from files
    for i, arch in enumerate(("unet", "linear")):
        options = {"base": 8} if arch == "unet" else {}
        path = checkpoints.save(tmp_path / f"ae{i}.safetensors",
                                models.build(arch, task="autoencode", **options))
        REGISTRY.add(path, task="autoencode", arch=arch)
    widget.models.reset_choices()
    assert set(widget.models.choices) == {"ae0", "ae1"}
    widget.image.value = img
    widget.models.value = ["ae0", "ae1"]
    set_slice(viewer, img, 1)
    assert widget.compare() is not None
    qtbot.waitUntil(lambda: widget.comparison is not None and not widget.runner.running, timeout=60_000)
    wait_for(qtbot, widget)
    for name in ("em z1", "ae0 reconstruction z1", "ae1 reconstruction z1"):
        assert name in viewer.layers
        assert viewer.layers[name].data.shape == (64, 64)
    assert len(widget.mosaic_layers) == 3, "each image gets its mosaic"
    table = widget.table.value
    assert [row[0] for row in table["data"]] == ["ae0", "ae1"]
    assert widget.comparison.models == ["ae0", "ae1"]

    # following the slice reconstructs the new slice; the old copies go
    set_slice(viewer, img, 2)
    qtbot.waitUntil(lambda: "em z2" in viewer.layers and len(widget.mosaic_layers) == 3
                    and widget.mosaic_layers[0].name == "em z2 mosaic L1", timeout=60_000)
    wait_for(qtbot, widget)
    assert not [layer.name for layer in viewer.layers if " z1" in layer.name]
    np.testing.assert_array_equal(viewer.layers["em z2"].data, img.data[2].astype(np.float32))
    widget.grid_off()
    assert [layer.name for layer in viewer.layers] == ["em", "membranes"], "Grid off removes the copies"
    assert not notes.errors, notes.errors
