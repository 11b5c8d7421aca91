"""Chunk-wise, resumable prediction of large volumes, in this process or on ``dask.distributed``.

The output is cut into chunks (a few slices by a few thousand pixels). Each chunk is
predicted from its region of the input grown by a *halo* of context on every side
(at least the model's receptive-field radius), then the halo is cropped off and the
core is written into the output Zarr store, whose chunks are exactly these chunks: no
two tasks ever write the same Zarr chunk, so workers need no locks. Intensity
normalisation is fitted once on the whole volume (a bounded sample) and passed to every
chunk as a fixed mapping, so a chunk's result never depends on which chunk it is.

Completed chunks are recorded by the driver (one writer) in ``segnets-progress.json``
inside the store, rewritten atomically at most once a second and whenever the run
stops. A chunk is recorded only after its data is written, so a killed run loses at most
the chunks in flight; the next run with the same settings skips the recorded ones.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError, SegnetsError
from ..progress import Progress, drive
from ._chunks import chunk_grid, plan_chunks, run_chunk

PROGRESS_FILE = "segnets-progress.json"
_FLUSH_SECONDS = 1.0

__all__ = ["VolumeResult", "predict_volume", "predict_volume_iter"]


@dataclass
class VolumeResult:
    """What a volume prediction produced."""

    path: Path
    output: str  # what was computed: labels, probabilities or reconstruction
    shape: tuple
    dtype: str
    chunks_total: int
    chunks_skipped: int  # already written by an earlier (interrupted) run
    chunks_computed: int
    seconds: float
    workers: int  # 0 = in this process


def predict_volume(*args, **kwargs) -> VolumeResult:
    """Plain twin of :func:`predict_volume_iter` (``bar`` shows a tqdm bar)."""
    bar = kwargs.pop("bar", None)
    return drive(predict_volume_iter(*args, **kwargs), bar=bar)


def predict_volume_iter(
    checkpoint: str | os.PathLike,
    input: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    key: str | None = None,
    output: str | None = None,
    chunks: tuple[int, int, int] | None = None,
    halo: int | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    device: str = "auto",
    torch_threads: int | None = None,
    slices: tuple[int, int] | None = None,
    overwrite: bool = False,
    **predict_options: Any,
) -> Generator[Progress, None, VolumeResult]:
    """Predict a volume chunk by chunk into a Zarr store (or a TIFF for small outputs).

    Parameters
    ----------
    checkpoint : path-like
        A checkpoint saved by :func:`napari_segnets.checkpoints.save` (workers load it).
    input : path-like
        Anything :func:`napari_segnets.io.read` reads; opened lazily, read region by region.
    out_path : path-like
        Where it goes: ``*.zarr`` (any other suffix but ``.tif``/``.tiff`` is refused) or a TIFF;
        a TIFF is assembled from a ``<out_path>.partial.zarr`` store at the end.
    output : {"labels", "probabilities", "reconstruction"}, optional
        What to compute, as in :func:`napari_segnets.inference.predict`. Default: labels for
        segmentation, reconstruction for autoencoders.
    chunks : (z, y, x), optional
        Chunk shape (default: 1 slice by up to 2048 x 2048 pixels); y and x are rounded
        to the model's size multiple.
    halo : int, optional
        Context pixels read around each chunk (default: the model's ``halo``).
    workers : int, optional
        Run on a new ``dask.distributed.LocalCluster`` with this many single-threaded
        worker processes. ``None`` with no ``scheduler``: run in this process.
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``); its workers must see
        the same paths.
    device : str
        Per worker; ``auto`` gives each worker its own GPU where there are several.
    torch_threads : int, optional
        Threads per worker (default for a LocalCluster: the CPU cores split between workers).
    slices : (start, stop), optional
        Predict only these slices of a stack (the output holds ``stop - start`` slices).
    overwrite : bool
        Replace an existing output that was made with other settings (otherwise refused).
    **predict_options
        Passed to :func:`napari_segnets.inference.predict`: ``tile``, ``overlap``,
        ``batch_size``, ``blend``, ``tta``, ``threshold``, ``amp``.
    """
    from .. import checkpoints
    from ..io import read

    t0 = time.perf_counter()
    ckpt = _existing(checkpoint, "Checkpoint")
    src = _existing(input, "Input")
    out = Path(out_path).expanduser()
    as_tiff = out.suffix.lower() in (".tif", ".tiff")
    if not as_tiff and out.suffix.lower() != ".zarr":
        raise InputError(f"Output {out.name} must end in .zarr (or .tif/.tiff for small outputs).")
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}.")
    if workers is not None and scheduler is not None:
        raise InputError("Give either a number of local workers or a scheduler address, not both.")
    if as_tiff and out.exists() and not overwrite:
        raise InputError(f"Output {out} already exists; choose another path or pass --overwrite.")

    model, meta = checkpoints.load(ckpt, device="cpu")
    image, _ = read(src, key=key, lazy=True)
    plan = plan_chunks(
        model,
        meta,
        image,
        checkpoint=ckpt,
        input=src,
        key=key,
        output=output,
        chunks=chunks,
        halo=halo,
        device=device,
        predict_options=predict_options,
        slices=slices,
    )
    n_workers = workers if workers is not None else 0
    if workers is not None and torch_threads is None:
        torch_threads = max(1, (os.cpu_count() or 1) // workers)
    plan["torch_threads"] = torch_threads

    store = out.with_name(out.name + ".partial.zarr") if as_tiff else out
    boxes = chunk_grid(plan["shape3"], plan["chunks3"])
    journal = _Journal.open_or_create(store, plan, overwrite=overwrite)
    plan["store"] = str(store.resolve())
    todo = [i for i in range(len(boxes)) if i not in journal.done]
    skipped = len(boxes) - len(todo)
    total = len(boxes)
    where = f"{n_workers} worker(s)" if workers else (scheduler or "this process")
    yield Progress("predict", skipped, total, f"{skipped} chunk(s) already done; running on {where}")

    computed = 0
    runner = _execute(plan, boxes, todo, model, workers=workers, scheduler=scheduler)
    try:
        for index in runner:
            journal.mark(index)
            computed += 1
            yield Progress("predict", skipped + computed, total, f"chunk {index + 1}/{total}")
    finally:
        runner.close()
        journal.flush(force=True)

    journal.finish(_provenance(plan, meta))
    if as_tiff:
        _zarr_to_tiff(store, out)
    return VolumeResult(
        path=out,
        output=plan["output"],
        shape=tuple(plan["out_shape"]),
        dtype=plan["dtype"],
        chunks_total=total,
        chunks_skipped=skipped,
        chunks_computed=computed,
        seconds=time.perf_counter() - t0,
        workers=n_workers,
    )


def _existing(path, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"{what} {p} does not exist; check the path.")
    return p.resolve()


def _execute(plan, boxes, todo, model, *, workers, scheduler):
    """Yield chunk indices as they complete (in this process, or on a Dask cluster)."""
    if workers is None and scheduler is None:
        for i in todo:
            run_chunk(plan, boxes[i], i, model=model)
            yield i
        return
    if not todo:
        return
    import logging

    from distributed import Client, LocalCluster, as_completed

    cluster = client = None
    futures = []
    try:
        if scheduler is not None:
            try:
                client = Client(scheduler, timeout="10s")
            except (OSError, TimeoutError) as exc:
                raise InputError(
                    f"Could not reach the Dask scheduler at {scheduler} ({exc}); check the address "
                    "and that `dask scheduler` is running."
                ) from exc
        else:
            saved_env = dict(os.environ)
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.ERROR,
            )
            # Dask writes its worker settings (OMP_NUM_THREADS=1, ...) into this process's
            # environment too; put ours back so later subprocesses are not changed by it.
            os.environ.clear()
            os.environ.update(saved_env)
            client = Client(cluster)
        futures = client.map(run_chunk, [plan] * len(todo), [boxes[i] for i in todo], todo, pure=False)
        for fut in as_completed(futures):
            try:
                yield fut.result()
            except SegnetsError:
                raise
            except Exception as exc:  # a worker died (KilledWorker), lost connection, ...
                raise SegnetsError(
                    f"A Dask worker failed on a chunk ({type(exc).__name__}: {exc}); finished chunks are "
                    "kept, run the same command again to resume."
                ) from exc
    finally:
        if client is not None:
            for fut in futures:
                fut.cancel()
            client.close()
        if cluster is not None:
            cluster.close()


def _provenance(plan: dict, meta: dict) -> dict:
    return {
        "checkpoint": plan["checkpoint"],
        "checkpoint_hash": meta.get("content_hash"),
        "input": plan["input"],
        "key": plan["key"],
        "output": plan["output"],
        "axes": plan["axes"],
        "normalization": plan["normalization"],
        "halo": plan["halo"],
        "chunks": plan["chunks3"],
        "predict_options": plan["predict_options"],
    }


class _Journal:
    """The done-list of a store: written by the driver only, atomically, throttled."""

    def __init__(self, store: Path, fingerprint: dict, done: set[int], complete: bool = False):
        self.store = store
        self.fingerprint = fingerprint
        self.done = done
        self.complete = complete
        self._dirty = False
        self._last = time.monotonic()

    @classmethod
    def open_or_create(cls, store: Path, plan: dict, *, overwrite: bool) -> _Journal:
        from ..io.atomic import atomic_path

        fingerprint = json.loads(json.dumps(plan["fingerprint"]))  # normalise tuples to lists
        record = store / PROGRESS_FILE
        if store.exists() and not overwrite:
            if not record.is_file():
                raise InputError(
                    f"Output {store} exists and was not written by `napari-segnets predict`; choose "
                    "another path or pass --overwrite."
                )
            saved = json.loads(record.read_text(encoding="utf-8"))
            if saved.get("fingerprint") != fingerprint:
                raise InputError(
                    f"Output {store} holds a prediction made with other settings (checkpoint, input, "
                    "chunks or options); choose another path or pass --overwrite."
                )
            return cls(store, fingerprint, set(saved.get("done", [])), bool(saved.get("complete")))
        import zarr

        # Create the empty store beside the target and rename it into place, so a crash here
        # never leaves a store without its progress record.
        with atomic_path(store) as tmp:
            zarr.open_array(
                store=str(tmp),
                mode="w",
                shape=tuple(plan["out_shape"]),
                chunks=tuple(plan["out_chunks"]),
                dtype=plan["dtype"],
                fill_value=0,
            )
            body = {"fingerprint": fingerprint, "done": [], "complete": False}
            (tmp / PROGRESS_FILE).write_text(json.dumps(body), encoding="utf-8")
        return cls(store, fingerprint, set())

    def mark(self, index: int) -> None:
        self.done.add(int(index))
        self._dirty = True
        self.flush()

    def flush(self, *, force: bool = False) -> None:
        from ..io.atomic import atomic_write_text

        if not self._dirty and not force:
            return
        if not force and time.monotonic() - self._last < _FLUSH_SECONDS:
            return
        body = {"fingerprint": self.fingerprint, "done": sorted(self.done), "complete": self.complete}
        atomic_write_text(self.store / PROGRESS_FILE, json.dumps(body))
        self._dirty = False
        self._last = time.monotonic()

    def finish(self, provenance: dict) -> None:
        import zarr

        if self.complete:  # a finished output run again: nothing to rewrite
            return

        arr = zarr.open_array(store=str(self.store), mode="r+")
        arr.attrs["segnets"] = json.loads(json.dumps(provenance))
        self.complete = True
        self.flush(force=True)


def _zarr_to_tiff(store: Path, out: Path) -> None:
    import numpy as np
    import tifffile
    import zarr

    from ..io.atomic import atomic_path

    data = np.asarray(zarr.open_array(store=str(store), mode="r")[...])
    with atomic_path(out) as tmp:
        tifffile.imwrite(tmp, data, compression="zlib", photometric="minisblack")
    shutil.rmtree(store, ignore_errors=True)

