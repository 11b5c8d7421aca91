"""Cancel and error reporting: the job runner and the Train widget's Cancel."""

from __future__ import annotations

import pytest

from tests._widget_helpers import Notes, synthetic_layers, wait_for

pytestmark = pytest.mark.gui


def _runner():
    from napari_segnets._widgets._runner import JobRunner

    return JobRunner(None)


def test_cancel_closes_the_generator_in_the_worker(qtbot, monkeypatch):
    import threading
    import time

    from napari_segnets.progress import Progress

    notes = Notes(monkeypatch)
    state = {"closed_in": None, "steps": 0}

    def job():
        try:
            for i in range(10_000):
                time.sleep(0.005)
                state["steps"] = i
                yield Progress("work", i, 10_000)
        finally:
            state["closed_in"] = threading.current_thread()

    runner = _runner()
    done = []
    runner.start(job, title="job", on_done=done.append, torch_job=False)
    qtbot.waitUntil(lambda: state["steps"] > 3, timeout=10_000)
    runner.cancel()
    qtbot.waitUntil(lambda: not runner.running, timeout=10_000)
    assert runner.cancelled and not done
    assert state["closed_in"] is not None and state["closed_in"] is not threading.main_thread()
    assert state["steps"] < 9_999
    assert not notes.errors


@pytest.mark.parametrize(("exc", "expected"), [
    ("input", "The image is empty; open a stack with pixels."),
    ("bug", "Unexpected ZeroDivisionError"),
])
def test_errors_become_one_sentence_notifications(qtbot, monkeypatch, exc, expected):
    from napari_segnets.errors import InputError
    from napari_segnets.progress import Progress

    notes = Notes(monkeypatch)

    def job():
        yield Progress("work", 0, 1)
        if exc == "input":
            raise InputError("The image is empty; open a stack with pixels.")
        return 1 / 0

    runner = _runner()
    done = []
    runner.start(job, title="job", on_done=done.append, torch_job=False)
    qtbot.waitUntil(lambda: not runner.running, timeout=10_000)
    assert not done
    assert len(notes.errors) == 1 and notes.errors[0].startswith(expected)
    assert "Traceback" not in notes.errors[0]


def test_cancel_during_training(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    from napari_segnets import checkpoints
    from napari_segnets._widgets import TrainWidget
    from napari_segnets._widgets._session import REGISTRY

    notes = Notes(monkeypatch)
    viewer = make_napari_viewer()
    img, truth = synthetic_layers(viewer)
    widget = TrainWidget(viewer)
    widget.image.value, widget.labels_layer.value = img, truth
    widget.base.value, widget.crop.value, widget.batch_size.value = 8, 32, 2
    widget.epochs.value, widget.steps.value = 100, 50
    widget.device.value = "cpu"
    widget.output.value = tmp_path / "cancelled.safetensors"
    assert not widget.cancel_button.enabled
    assert widget.run() is not None
    assert widget.cancel_button.enabled and not widget.train_button.enabled
    qtbot.waitUntil(lambda: any("loss" in h for h in widget.history), timeout=60_000)
    widget.cancel_button.native.click()
    wait_for(qtbot, widget)
    assert widget.runner.cancelled and widget.result is None
    assert "cancelled" in widget.status.value
    assert len(widget.history) < 100 * 50
    assert widget.train_button.enabled and not widget.cancel_button.enabled
    saved = tmp_path / "cancelled.safetensors"
    if saved.exists():  # an epoch finished: its best checkpoint loads and is offered in Segment
        checkpoints.load(saved)
        assert len(REGISTRY) == 1 and str(saved) in widget.status.value
    else:
        assert len(REGISTRY) == 0 and "no checkpoint" in widget.status.value
    assert not notes.errors, notes.errors
