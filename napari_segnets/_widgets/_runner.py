"""Run core job generators off the GUI thread and report to the user.

One place turns the core's long jobs (generators yielding
:class:`napari_segnets.progress.Progress`) into napari's world: a
``thread_worker`` thread, a napari ``progress`` bar per stage, the viewer's
status line, Cancel wired to ``worker.quit()``, and errors shown as
notifications with the sentence the core wrote (never a traceback dialog).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from napari.qt.threading import GeneratorWorker, create_worker
from napari.utils import progress as napari_progress
from napari.utils.notifications import show_error, show_info, show_warning

from ..errors import SegnetsError
from ._warm import _leave_a_core_for_the_gui, warm_up

log = logging.getLogger(__name__)

__all__ = [
    "JobRecord", "JobRunner", "notify_error", "notify_info", "notify_warning", "report_exception",
    "warm_up",
]


def notify_error(message: str) -> None:
    """Show an error notification (one sentence, no traceback)."""
    show_error(message)


def notify_warning(message: str) -> None:
    """Show a warning notification."""
    show_warning(message)


def notify_info(message: str) -> None:
    """Show an information notification."""
    show_info(message)


def report_exception(exc: BaseException, label=None) -> str:
    """Show ``exc`` to the user: the core's sentence, or a short generic one.

    SegnetsError messages are written for people and shown as they are. Anything
    else is a bug or an environment problem: the user gets one sentence and the
    traceback goes to the log, not into a dialog. ``label`` (a widget's status
    line) also shows the sentence. Returns the sentence.
    """
    if isinstance(exc, SegnetsError):
        message = str(exc)
    else:
        log.error("napari-segnets: unexpected error", exc_info=(type(exc), exc, exc.__traceback__))
        message = (f"Unexpected {type(exc).__name__}: {exc}. Check the inputs and try again; "
                   "if it persists, report it with the log.")
    notify_error(message)
    if label is not None:
        try:
            label.value = message
        except RuntimeError:  # the widget is gone
            pass
    return message


def guarded(action: Callable[[], object], status=None):
    """Run a widget action; an exception becomes a notification sentence and None, never a traceback."""
    try:
        return action()
    except Exception as exc:
        report_exception(exc, status)
        return None


class _ClosingWorker(GeneratorWorker):
    """A generator worker that always closes its generator in the worker thread.

    superqt's worker stops iterating on ``quit()`` but leaves the generator to
    the garbage collector; closing it here runs the core's ``finally`` clean-up
    at once, in the thread that owns the generator.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # We show errors ourselves (one sentence); napari's relay, where its
        # mixin connected it, would add a traceback notification on top.
        try:
            self.errored.disconnect(self._relay_error)
        except (TypeError, RuntimeError):
            pass

    def work(self):
        try:
            return super().work()
        finally:
            self._gen.close()


class _JobFailed(Exception):
    """A RuntimeError raised by a job, carried out of the worker thread.

    superqt's generator worker takes a RuntimeError from the generator for "the
    worker was deleted": it emits neither ``errored`` nor ``finished``, so the
    widget would wait forever. torch reports most of its errors as RuntimeError.
    """


def _passthrough(job_factory: Callable[[], Generator], reserve_core: bool) -> Generator:
    # Build the job inside the worker thread: argument checks that a core
    # function does up front (file loading, shape checks) stay off the GUI thread.
    restore = _leave_a_core_for_the_gui() if reserve_core else None
    job = None
    try:
        job = job_factory()
        result = yield from job
    except RuntimeError as exc:
        raise _JobFailed(exc) from exc
    finally:
        if job is not None:
            job.close()
        if restore is not None:
            restore()
    return result


@dataclass
class JobRecord:
    """What one job reported, in the order it reported it; final when ``on_finish`` runs.

    Attributes
    ----------
    title : str
        The job's title.
    events : int
        Progress events handled.
    facts : dict
        The job's event payloads merged in order (the latest value of each key wins),
        e.g. ``facts["slice"]`` after a cancelled prediction.
    result : object
        What the job returned (None unless ``returned``).
    returned, cancelled : bool
        The job ran to its end; the user cancelled it before it did.
    error : BaseException or None
        What the job raised.
    status : str or None
        The status line the job ended with.
    finished : bool
        All of the job's signals have been handled.
    """

    title: str
    events: int = 0
    facts: dict = field(default_factory=dict)
    result: Any = None
    returned: bool = False
    cancelled: bool = False
    error: BaseException | None = None
    status: str | None = None
    finished: bool = False


class _Job:
    """One job's signals, handled strictly in the order the worker emitted them.

    napari's progress bar calls ``QApplication.processEvents()`` while it updates,
    so Qt may deliver the worker's next signals (even ``finished``) while an
    earlier one is still being handled. Each signal is queued here; a signal that
    arrives during handling waits for the handler in progress, which then drains
    the queue. ``finished`` is therefore handled last, after every event.
    """

    def __init__(self, runner: JobRunner, worker, title: str, on_event, on_done, on_finish) -> None:
        self.runner, self.worker, self.title = runner, worker, title
        self.on_event, self.on_done, self.on_finish = on_event, on_done, on_finish
        self.record = JobRecord(title)
        self.bars: dict[str, Any] = {}
        self._queue: deque = deque()
        self._draining = False
        worker.yielded.connect(lambda event: self.post("event", event))
        worker.returned.connect(lambda result: self.post("returned", result))
        worker.errored.connect(lambda exc: self.post("errored", exc))
        worker.finished.connect(lambda: self.post("finished", None))

    def post(self, kind: str, value) -> None:
        self._queue.append((kind, value))
        if self._draining:
            return  # re-entered from inside a handler: the drain below takes it, in order
        self._draining = True
        try:
            while self._queue:
                self._handle(*self._queue.popleft())
        finally:
            self._draining = False

    def _handle(self, kind: str, value) -> None:
        record = self.record
        if record.finished:
            return
        if kind == "finished":
            self._finish()
            return
        try:
            if kind == "event":
                record.events += 1
                payload = getattr(value, "payload", None)
                if isinstance(payload, dict):
                    record.facts.update(payload)
                try:
                    self._show_event(value)
                except Exception:  # the bar and status line are cosmetic; the widget still hears
                    log.exception("napari-segnets: could not show a progress event")
                if self.on_event is not None:
                    self.on_event(value)
            elif kind == "returned":
                record.returned, record.result = True, value
                record.status = f"{self.title}: done"
                if self.on_done is not None:
                    message = self.on_done(value)
                    if isinstance(message, str):
                        record.status = message
            elif kind == "errored":
                record.error = value.__cause__ if isinstance(value, _JobFailed) else value
                record.status = report_exception(record.error, self.runner.label)
        except Exception as exc:  # a display bug must not kill the job silently
            record.status = report_exception(exc, self.runner.label)

    def _finish(self) -> None:
        record, runner = self.record, self.runner
        record.finished = True
        record.cancelled = runner.cancelled and not record.returned and record.error is None
        runner.cancelled = record.cancelled
        if record.cancelled:
            record.status = f"{self.title}: cancelled"
        try:
            for bar in self.bars.values():
                bar.close()
        finally:
            self.bars.clear()
            runner.worker = None
            runner.job = None
            runner._set_busy(False)
            if record.status is not None:
                runner._status(record.status)
        if self.on_finish is not None:
            try:
                self.on_finish()
            except Exception as exc:
                record.status = report_exception(exc, runner.label)

    def _show_event(self, event) -> None:
        stage = getattr(event, "stage", None)
        if stage is None:
            return
        total = event.total if event.total else 0
        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = napari_progress(total=total, desc=f"{self.title}: {stage}")
        elif total and bar.total != total:
            bar.total = total
        bar.n = int(event.done)
        bar.refresh()
        message = event.message or (
            f"{stage} {event.done}/{event.total}" if event.total else f"{stage} {event.done}"
        )
        self.runner._status(f"{self.title}: {message}")


class JobRunner:
    """Run one core job at a time for a widget.

    Parameters
    ----------
    viewer : napari.Viewer or None
        Where status messages go.
    label : magicgui Label or None
        A status label inside the widget, updated with each event's message.
    run_button, cancel_button : magicgui buttons or None
        Disabled/enabled while a job runs; the cancel button calls :meth:`cancel`.

    Attributes
    ----------
    record : JobRecord or None
        The latest job's record: what it reported, returned or raised.
    """

    def __init__(self, viewer=None, *, label=None, run_buttons=(), cancel_button=None) -> None:
        self.viewer = viewer
        self.label = label
        self.run_buttons = list(run_buttons)
        self.cancel_button = cancel_button
        self.worker: GeneratorWorker | None = None
        self.job: _Job | None = None
        self.record: JobRecord | None = None
        self.cancelled = False
        warm_up()
        if cancel_button is not None:
            cancel_button.enabled = False
            cancel_button.changed.connect(self.cancel)

    @property
    def running(self) -> bool:
        """Whether a job is in flight (its signals not all handled yet)."""
        return self.worker is not None

    def start(
        self,
        job_factory: Callable[[], Generator],
        *,
        title: str,
        on_event: Callable[[Any], None] | None = None,
        on_done: Callable[[Any], None] | None = None,
        on_finish: Callable[[], None] | None = None,
        torch_job: bool = True,
    ) -> GeneratorWorker | None:
        """Start ``job_factory()`` in a worker thread.

        ``on_event`` gets every Progress event, ``on_done`` the job's return value
        (not called after a cancel or an error), ``on_finish`` is always called, last,
        after every event was handled; :attr:`record` then tells what happened.
        ``torch_job``: the job runs torch, which then leaves one core to the GUI.
        Returns the worker, or None when a job is already running.
        """
        if self.worker is not None:
            notify_warning(f"{title}: a job is already running; wait for it or press Cancel.")
            return None
        self.cancelled = False
        worker = create_worker(
            _passthrough, job_factory, torch_job, _worker_class=_ClosingWorker, _ignore_errors=True
        )
        self.worker = worker
        self.job = _Job(self, worker, title, on_event, on_done, on_finish)
        self.record = self.job.record
        self._set_busy(True)
        self._status(f"{title}: starting")
        worker.start()
        return worker

    def cancel(self, *_args) -> None:
        """Ask the running job to stop at its next progress event."""
        if self.worker is not None:
            self.cancelled = True
            self._status("cancelling...")
            self.worker.quit()

    def wait(self, timeout_ms: int = 60_000) -> None:
        """Block (processing Qt events) until the job ends; for scripts and tests."""
        from qtpy.QtCore import QCoreApplication, QElapsedTimer, QThread

        timer = QElapsedTimer()
        timer.start()
        while self.worker is not None and timer.elapsed() < timeout_ms:
            QCoreApplication.processEvents()
            QThread.msleep(5)

    # ---- display -----------------------------------------------------------
    def _status(self, text: str) -> None:
        if self.label is not None:
            try:
                self.label.value = text
            except RuntimeError:  # the widget was closed while the job ran
                pass
        if self.viewer is not None:
            try:
                self.viewer.status = text
            except Exception:  # status is cosmetic; a closed viewer must not raise
                pass

    def _set_busy(self, busy: bool) -> None:
        for button in self.run_buttons:
            button.enabled = not busy
        if self.cancel_button is not None:
            self.cancel_button.enabled = busy
