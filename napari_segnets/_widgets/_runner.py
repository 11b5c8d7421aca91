"""Run core job generators off the GUI thread and report to the user.

One place turns the core's long jobs (generators yielding
:class:`napari_segnets.progress.Progress`) into napari's world: a
``thread_worker`` thread, a napari ``progress`` bar per stage, the viewer's
status line, Cancel wired to ``worker.quit()``, and errors shown as
notifications with the sentence the core wrote (never a traceback dialog).
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable, Generator
from typing import Any

from napari.qt.threading import GeneratorWorker, create_worker
from napari.utils import progress as napari_progress
from napari.utils.notifications import show_error, show_info, show_warning

from ..errors import SegnetsError

log = logging.getLogger(__name__)

__all__ = ["JobRunner", "notify_error", "notify_info", "notify_warning", "report_exception", "warm_up"]

# What a first training or prediction run imports. Imported in a job's worker
# thread instead, this is ~2 s of module execution (torch, and torch._dynamo,
# which torch's optimizers import on first use) competing with the GUI thread for
# the GIL: measured event-loop stalls of 0.4-0.6 s at the start of the first run.
WARM_MODULES = (
    "torch",
    "torch._dynamo",
    "safetensors.torch",
    "napari_segnets.models.unet",
    "napari_segnets.models.atrous",
    "napari_segnets.models.fcn",
    "napari_segnets.models.pca",
    "napari_segnets.checkpoints",
    "napari_segnets.metrics",
    "napari_segnets.inference",
    "napari_segnets.training.loop",
    "napari_segnets.training.setup",
    "napari_segnets.training.augment",
    "napari_segnets.training.losses",
    "napari_segnets.training.finetune",
)
_warm: dict[str, threading.Thread | None] = {"thread": None}
_warm_lock = threading.Lock()


def _import_all(names, collect: bool = True) -> None:
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # a missing optional piece shows up, with its message, when a job needs it
            log.debug("napari-segnets warm-up: %s not imported (%s)", name, exc)
    if collect:
        # The imports add a few hundred thousand long-lived objects, enough to make
        # the garbage collector's next automatic pass a full one: ~240 ms holding
        # the GIL, measured landing in the first second of the first training run.
        # Collect now, while the user is still choosing layers, instead.
        import gc

        gc.collect()


def warm_up(modules=WARM_MODULES) -> threading.Thread:
    """Import the torch stack in a background thread, once per process; returns that thread.

    The widgets call this when they are created, so the imports happen while the
    user is still choosing layers, not during the first job. Python's per-module
    import locks make a job that starts early simply wait for the module it needs.
    Not a daemon thread: interpreter shutdown waits for it rather than killing an
    import halfway.
    """
    with _warm_lock:
        thread = _warm["thread"]
        if thread is None:
            thread = threading.Thread(target=_import_all, args=(tuple(modules),),
                                      name="napari-segnets-warm-up", daemon=False)
            _warm["thread"] = thread
            thread.start()
    return thread


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


def _leave_a_core_for_the_gui():
    """Run torch on all cores but one in this (worker) thread; returns a restore function.

    On a 2-core machine torch's intra-op threads otherwise spin on both cores and
    the GUI thread waits for a time slice: measured stalls of seconds (see
    benchmarks/gui_stall.py). OpenMP thread counts are per calling thread, so
    this leaves scripts and other threads alone.
    """
    import os

    import torch

    before = torch.get_num_threads()
    wanted = max(1, min(before, (os.cpu_count() or 1) - 1))
    if wanted == before:
        return lambda: None
    torch.set_num_threads(wanted)
    return lambda: torch.set_num_threads(before)


def _passthrough(job_factory: Callable[[], Generator], reserve_core: bool) -> Generator:
    # Build the job inside the worker thread: argument checks that a core
    # function does up front (file loading, shape checks) stay off the GUI thread.
    restore = _leave_a_core_for_the_gui() if reserve_core else None
    job = None
    try:
        job = job_factory()
        result = yield from job
    finally:
        if job is not None:
            job.close()
        if restore is not None:
            restore()
    return result


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
    """

    def __init__(self, viewer=None, *, label=None, run_buttons=(), cancel_button=None) -> None:
        self.viewer = viewer
        self.label = label
        self.run_buttons = list(run_buttons)
        self.cancel_button = cancel_button
        self.worker: GeneratorWorker | None = None
        self.cancelled = False
        self._bars: dict[str, Any] = {}
        warm_up()
        if cancel_button is not None:
            cancel_button.enabled = False
            cancel_button.changed.connect(self.cancel)

    @property
    def running(self) -> bool:
        """Whether a job is in flight."""
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
        (not called after a cancel or an error), ``on_finish`` is always called.
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
        self._set_busy(True)
        self._status(f"{title}: starting")

        outcome = {"status": None}

        def _yielded(event):
            if outcome["status"] is not None:
                return  # a late event after the result: keep the final status
            try:
                self._show_event(title, event)
                if on_event is not None:
                    on_event(event)
            except Exception as exc:  # a display bug must not kill the job silently
                report_exception(exc)

        def _returned(result):
            outcome["status"] = f"{title}: done"
            try:
                if on_done is not None:
                    message = on_done(result)
                    if isinstance(message, str):
                        outcome["status"] = message
            except Exception as exc:
                outcome["status"] = report_exception(exc, self.label)

        def _errored(exc):
            outcome["status"] = report_exception(exc, self.label)

        def _finished():
            self._close_bars()
            self.worker = None
            self._set_busy(False)
            if self.cancelled:
                outcome["status"] = f"{title}: cancelled"
            if outcome["status"] is not None:
                self._status(outcome["status"])
            if on_finish is not None:
                on_finish()

        worker.yielded.connect(_yielded)
        worker.returned.connect(_returned)
        worker.errored.connect(_errored)
        worker.finished.connect(_finished)
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
    def _show_event(self, title: str, event) -> None:
        stage = getattr(event, "stage", None)
        if stage is None:
            return
        bar = self._bars.get(stage)
        total = event.total if event.total else 0
        if bar is None:
            bar = self._bars[stage] = napari_progress(total=total, desc=f"{title}: {stage}")
        elif total and bar.total != total:
            bar.total = total
        bar.n = int(event.done)
        bar.refresh()
        message = event.message or (
            f"{stage} {event.done}/{event.total}" if event.total else f"{stage} {event.done}"
        )
        self._status(f"{title}: {message}")

    def _close_bars(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()

    def _status(self, text: str) -> None:
        if self.label is not None:
            self.label.value = text
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
