"""The job protocol helpers: drive() and Events."""

from __future__ import annotations

from napari_segnets.progress import Events, Progress, drive


def _job(n, closed):
    try:
        for i in range(n):
            yield Progress("work", i + 1, n)
        return f"done {n}"
    finally:
        closed.append(True)


def test_events_gives_the_return_value_after_the_loop():
    closed = []
    run = Events(_job(3, closed))
    assert [e.done for e in run] == [1, 2, 3]
    assert run.result == "done 3" and closed == [True]


def test_events_left_early_has_no_result_and_the_caller_closes_the_job():
    closed = []
    job = _job(5, closed)
    run = Events(job)
    for event in run:
        if event.done == 2:
            break
    assert run.result is None
    job.close()
    assert closed == [True]


def test_drive_returns_the_result_and_feeds_the_callback():
    closed, seen = [], []
    assert drive(_job(4, closed), callback=seen.append, bar=False) == "done 4"
    assert [e.done for e in seen] == [1, 2, 3, 4] and closed == [True]
