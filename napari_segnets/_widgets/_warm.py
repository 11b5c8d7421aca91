"""Make the first job start fast and keep the viewer responsive while jobs run.

The torch stack is imported in a background thread when a widget is created, and
a worker thread running torch leaves one core to the GUI thread.
"""

from __future__ import annotations

import importlib
import logging
import threading

log = logging.getLogger(__name__)

__all__ = ["WARM_MODULES", "warm_up"]

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
