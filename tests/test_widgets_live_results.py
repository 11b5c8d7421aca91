"""Whole-stack results appear while they are computed, and a cancel keeps the finished slices."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from tests._widget_helpers import Notes, synthetic_layers, wait_for

pytestmark = pytest.mark.gui


@pytest.fixture
def segment(make_napari_viewer, tmp_path):
    from napari_segnets import checkpoints, models
    from napari_segnets._widgets import SegmentWidget
    from napari_segnets._widgets._session import REGISTRY

    viewer = make_napari_viewer()
    img, _truth = synthetic_layers(viewer, shape=(4, 64, 64))
    path = checkpoints.save(tmp_path / "m.safetensors", models.build("unet", base=4, depth=2))
    REGISTRY.add(path, task="segment")
    widget = SegmentWidget(viewer)
    widget.image.value, widget.checkpoint.model.value, widget.device.value = img, "m", "cpu"
    widget.scope.value = "whole stack"
    yield viewer, img, widget, path


def test_the_result_layer_exists_from_the_click_and_ends_equal_to_predict(segment, qtbot):
    from napari_segnets import checkpoints
    from napari_segnets.inference import predict

    viewer, img, widget, path = segment
    assert widget.run() is not None
    live = viewer.layers["m labels"]  # synchronously, before the worker reported anything
    assert live.data.shape == img.data.shape and live.data.dtype == np.uint8
    assert tuple(live.scale) == tuple(img.scale)
    wait_for(qtbot, widget)
    assert widget.last_layer is live
    model, meta = checkpoints.load(path)
    expected = predict(model, img.data, output="labels", normalization=meta.get("normalization"))
    np.testing.assert_array_equal(live.data, expected)
    assert live.metadata["segnets"]["predicted"] == [0, 1, 2, 3]
    np.testing.assert_array_equal(live.metadata["segnets"]["original"], expected)


def test_cancel_keeps_the_finished_slices(segment, qtbot, monkeypatch):
    from napari_segnets._widgets import segment as seg_module

    viewer, img, widget, path = segment
    notes = Notes(monkeypatch)
    reached, proceed = threading.Event(), threading.Event()

    slow_job = _two_slices_then_wait(reached, proceed)

    monkeypatch.setattr(seg_module, "predict_job", slow_job)
    assert widget.run() is not None
    qtbot.waitUntil(reached.is_set, timeout=30_000)
    widget.runner.cancel()
    proceed.set()
    wait_for(qtbot, widget)
    live = viewer.layers["m labels"]
    assert live.data[:2].all() and not live.data[2:].any(), "finished slices kept, the rest untouched"
    info = live.metadata["segnets"]
    assert info["predicted"] == [0, 1] and info["model"] == "m"
    assert "cancelled: slices 0-1 are complete in 'm labels'" == widget.status.value
    assert not notes.errors, notes.errors


def test_a_cancel_keeps_the_finished_slices_when_the_gui_sees_the_job_late(segment, qtbot, monkeypatch):
    """The GUI handles nothing until the cancelled job is over: its bar re-enters the event loop.

    The real napari progress bar calls ``processEvents`` as it is made and updated, so Qt
    delivers ``finished`` inside the first event's handler; the runner must still handle
    the events first.
    """
    from qtpy.QtCore import QThreadPool

    from napari_segnets._widgets import segment as seg_module

    viewer, img, widget, path = segment
    notes = Notes(monkeypatch)
    reached, proceed = threading.Event(), threading.Event()

    slow_job = _two_slices_then_wait(reached, proceed, status="on cpu (1 threads)")

    monkeypatch.setattr(seg_module, "predict_job", slow_job)
    assert widget.run() is not None
    assert reached.wait(30)  # the GUI thread waits here without handling any Qt event
    widget.runner.cancel()
    proceed.set()
    assert QThreadPool.globalInstance().waitForDone(30_000)  # every signal is queued now
    wait_for(qtbot, widget)
    live = viewer.layers["m labels"]
    assert live.metadata["segnets"]["predicted"] == [0, 1]
    assert widget.status.value == "cancelled: slices 0-1 are complete in 'm labels'"
    assert viewer.status == "segment with m: cancelled"
    assert not widget.runner.job and widget.runner.record.finished
    assert not notes.errors, notes.errors


def test_a_live_reconstruction_shares_the_input_range(make_napari_viewer, qtbot, tmp_path):
    from napari_segnets import checkpoints, models
    from napari_segnets._widgets import SegmentWidget
    from napari_segnets._widgets._session import REGISTRY

    viewer = make_napari_viewer()
    img, _truth = synthetic_layers(viewer, shape=(3, 64, 64))
    path = checkpoints.save(tmp_path / "ae.safetensors", models.build("unet", task="autoencode", base=4, depth=2))
    REGISTRY.add(path, task="autoencode")
    widget = SegmentWidget(viewer)
    widget.image.value, widget.checkpoint.model.value, widget.device.value = img, "ae", "cpu"
    widget.task.value, widget.scope.value = "autoencode", "whole stack"
    assert widget.run() is not None
    live = viewer.layers["ae reconstruction"]
    assert live.data.dtype == np.float32 and tuple(live.contrast_limits) == tuple(img.contrast_limits)
    wait_for(qtbot, widget)
    assert widget.last_layer is live and np.isfinite(live.data).all() and live.data.std() > 0


def _two_slices_then_wait(reached, proceed, status=None):
    """A fake predict job: writes slices 0 and 1, reports that slice 2 started, then waits."""
    from napari_segnets.progress import Progress

    def slow_job(entry, image, *, out, **_kwargs):
        if status is not None:
            yield Progress("predict", 0, None, status)
        for z in range(2):
            out[z] = 1
            yield Progress("predict", z + 1, 4, f"slice {z + 1}", {"slice": z + 1})
        reached.set()
        proceed.wait(30)
        yield Progress("predict", 3, 4, "slice 3", {"slice": 2})  # cancelled here
        out[2:] = 1
        return out, {}

    return slow_job
