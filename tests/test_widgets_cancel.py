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


def test_events_are_handled_in_order_when_the_progress_bar_reenters_the_event_loop(qtbot, monkeypatch):
    from magicgui.widgets import Label

    from napari_segnets._widgets._runner import JobRunner
    from napari_segnets.progress import Progress
    from tests._widget_helpers import reentrant_bars

    notes = Notes(monkeypatch)
    bars = reentrant_bars(monkeypatch)
    calls = []

    def job():
        for i in range(5):
            yield Progress("work", i + 1, 5, f"step {i + 1}", {"i": i})
        return "result"

    label = Label(value="")
    runner = JobRunner(None, label=label)
    runner.start(job, title="job", torch_job=False,
                 on_event=lambda e: calls.append(("event", e.payload["i"], len(bars), bars[0].closed)),
                 on_done=lambda r: calls.append(("done", r)),
                 on_finish=lambda: calls.append(("finish", label.value, runner.running)))
    qtbot.waitUntil(lambda: not runner.running, timeout=30_000)
    assert calls == [*(("event", i, 1, False) for i in range(5)), ("done", "result"),
                     ("finish", "job: done", False)]
    assert len(bars) == 1 and bars[0].closed and bars[0].n == 5
    record = runner.record
    assert record.finished and record.returned and not record.cancelled
    assert record.events == 5 and record.facts == {"i": 4} and record.status == "job: done"
    assert label.value == "job: done", "the status line ends with the job's final word"
    assert not notes.errors, notes.errors


def test_a_cancel_is_recorded_after_every_event_the_job_sent(qtbot, monkeypatch):
    import threading

    from napari_segnets._widgets._runner import JobRunner
    from napari_segnets.progress import Progress
    from tests._widget_helpers import reentrant_bars

    notes = Notes(monkeypatch)
    bars = reentrant_bars(monkeypatch)
    reached, proceed = threading.Event(), threading.Event()
    seen = []

    def job():
        for i in range(3):
            yield Progress("work", i + 1, 10, payload={"slice": i + 1})
        reached.set()
        proceed.wait(30)
        yield Progress("work", 4, 10, payload={"slice": 3})  # the worker stops after this one
        yield Progress("work", 5, 10, payload={"slice": 4})
        return "never"

    runner = JobRunner(None)
    runner.start(job, title="job", torch_job=False, on_event=lambda e: seen.append(e.done),
                 on_done=seen.append,
                 on_finish=lambda: seen.append(("finish", dict(runner.record.facts), runner.cancelled)))
    assert reached.wait(30)  # no Qt events handled meanwhile: the GUI sees all signals at once
    runner.cancel()
    proceed.set()
    qtbot.waitUntil(lambda: not runner.running, timeout=30_000)
    assert seen == [1, 2, 3, 4, ("finish", {"slice": 3}, True)]
    assert runner.record.cancelled and not runner.record.returned
    assert all(bar.closed for bar in bars)
    assert not notes.errors


def test_a_runtime_error_in_the_job_is_reported_and_ends_the_job(qtbot, monkeypatch):
    """superqt takes a generator's RuntimeError for a deleted worker and never says finished."""
    from napari_segnets.progress import Progress

    notes = Notes(monkeypatch)

    def job():
        yield Progress("work", 0, 1)
        raise RuntimeError("Given groups=1, weight of size [8, 1, 3, 3], expected input[1, 3, 64, 64]")

    runner = _runner()
    finished = []
    runner.start(job, title="job", on_finish=lambda: finished.append(runner.record), torch_job=False)
    qtbot.waitUntil(lambda: not runner.running, timeout=10_000)
    assert len(finished) == 1 and isinstance(finished[0].error, RuntimeError)
    assert len(notes.errors) == 1 and notes.errors[0].startswith("Unexpected RuntimeError: Given groups=1")
