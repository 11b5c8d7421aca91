"""Progress events for long jobs, and a driver that runs them headless.

Long jobs (inference, training, wavelet sweeps) are generators that ``yield``
:class:`Progress` events and ``return`` their result. One mechanism serves three
faces: napari's ``thread_worker`` (cancel = ``worker.quit()``, which closes the
generator at its next ``yield``), the CLI (a terminal bar via :func:`drive`) and
plain scripts (``drive(gen)`` returns the result).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

Job = Generator["Progress", None, T]


@dataclass
class Progress:
    """One step of a long job.

    Parameters
    ----------
    stage : str
        What is running, e.g. ``"predict"``, ``"train"``, ``"validate"``.
    done, total : int
        Steps done and steps in all (``total`` may be ``None`` when unknown).
    message : str
        A short human-readable status line.
    payload : dict
        Optional data: a loss value, metrics, a preview array, a result chunk.
    """

    stage: str
    done: int
    total: int | None = None
    message: str = ""
    payload: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction(self) -> float | None:
        """Done / total, or None when the total is unknown."""
        if not self.total:
            return None
        return min(1.0, self.done / self.total)


class Events:
    """Iterate a job's events with a ``for`` loop; afterwards ``result`` holds what the job returned.

    ``result`` stays None when the loop was left early. Closing the job (in a ``finally``)
    stays the caller's business, as with the generator itself.
    """

    def __init__(self, job: Generator[Progress, None, T]) -> None:
        self.job = job
        self.result: T | None = None

    def __iter__(self):
        self.result = yield from self.job


def drive(
    job: Job[T],
    *,
    callback: Callable[[Progress], None] | None = None,
    bar: bool | None = None,
) -> T:
    """Run a job generator to the end and return its result.

    Parameters
    ----------
    job : generator
        A generator yielding :class:`Progress` and returning a result.
    callback : callable, optional
        Called with every event (e.g. to log losses).
    bar : bool, optional
        Show a tqdm bar on stderr; default: only when stderr is a terminal.
    """
    if bar is None:
        bar = sys.stderr.isatty()
    pbars: dict[str, Any] = {}
    run = Events(job)
    try:
        for event in run:
            if callback is not None:
                callback(event)
            if bar:
                _update_bar(pbars, event)
        return run.result
    finally:
        job.close()
        for pbar in pbars.values():
            pbar.close()


def _update_bar(pbars: dict[str, Any], event: Progress) -> None:
    from tqdm.auto import tqdm

    pbar = pbars.get(event.stage)
    if pbar is None:
        pbar = pbars[event.stage] = tqdm(total=event.total, desc=event.stage, leave=False)
    if event.total is not None and pbar.total != event.total:
        pbar.total = event.total
    pbar.n = event.done
    if event.message:
        pbar.set_postfix_str(event.message, refresh=False)
    pbar.refresh()
