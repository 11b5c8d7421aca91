"""DistributedDataParallel training around the ordinary training loop, for ``torchrun``.

``napari-segnets train ...`` started by ``torchrun --nproc_per_node=N`` finds the
``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` variables (:func:`ddp_env`) and runs
:func:`ddp_train_iter` instead of :func:`napari_segnets.training.train_iter`:

- the process group uses NCCL on GPUs (one GPU per rank, ``cuda:LOCAL_RANK``) and gloo on CPUs;
- each rank trains on its own shard of slices (:func:`shard_indices`, padded like
  ``DistributedSampler`` so every rank runs the same number of steps); gradients are averaged
  by DDP, so the ranks hold identical weights after every step;
- rank 0 alone validates, decides (best checkpoint, early stopping) and writes checkpoints;
  forward passes without gradients (validation, previews) bypass DDP's collectives;
- the loop's stopping hook (``train_iter(sync=...)``) agrees, with one all-reduce after every
  step and every epoch, on the elapsed time (the slowest rank's: one clock for the time budget
  and the learning-rate schedule) and on stopping (time budget or rank 0's early stopping), so
  all ranks stop after the same step; rank 0's loop then puts its best weights back.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from ..errors import InputError
from ..progress import drive

_REASONS = (None, "time_budget", "early_stopping")  # codes 0, 1, 2 in the all-reduce


@dataclass
class DDPEnv:
    """Where this process sits in a ``torchrun`` job."""

    rank: int
    world_size: int
    local_rank: int
    backend: str  # "nccl" or "gloo"
    device: str  # "cuda:LOCAL_RANK" or "cpu"


def ddp_env() -> DDPEnv | None:
    """The ``torchrun`` environment, or ``None`` when this is a single process (world size 1).

    ``SEGNETS_DDP_BACKEND`` overrides the backend (e.g. ``gloo`` on GPUs for debugging).
    """
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return None
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    import torch

    cuda = torch.cuda.is_available()
    backend = os.environ.get("SEGNETS_DDP_BACKEND") or ("nccl" if cuda else "gloo")
    device = f"cuda:{local % torch.cuda.device_count()}" if cuda else "cpu"
    return DDPEnv(rank, world, local, backend, device)


def shard_indices(n: int, rank: int, world_size: int) -> list[int]:
    """Indices of rank ``rank``'s shard of ``n`` samples, ``DistributedSampler``-style.

    The index list is padded by wrapping around so every rank gets ``ceil(n / world_size)``
    samples (equal steps on every rank), then rank ``r`` takes every ``world_size``-th from ``r``.
    """
    if n < 1:
        raise InputError("There are no training slices to share between the processes.")
    per_rank = math.ceil(n / world_size)
    padded = [i % n for i in range(per_rank * world_size)]
    return padded[rank::world_size]


def unwrap(model):
    """The plain model inside a DDP wrapper (or the model itself)."""
    return getattr(model, "module", model)


def wrap(model, env: DDPEnv):
    """Move ``model`` to the rank's device and wrap it in DistributedDataParallel.

    The wrapper still answers ``arch``, ``config``, ``halo`` ... and ``state_dict()`` as the
    plain model does, so the training loop and :mod:`napari_segnets.checkpoints` see no
    difference; forward passes without gradients skip DDP (no collectives in validation).
    """
    import torch

    model.to(env.device)
    ids = [torch.device(env.device).index] if env.device.startswith("cuda") else None
    return _ddp_class()(model, device_ids=ids)


_DDP = None


def _ddp_class():
    global _DDP
    if _DDP is not None:
        return _DDP
    import torch
    from torch.nn.parallel import DistributedDataParallel

    class SegnetsDDP(DistributedDataParallel):
        """DDP that looks like the model it wraps."""

        def __getattr__(self, name):
            try:
                return super().__getattr__(name)
            except AttributeError:
                if name == "module":
                    raise
                return getattr(self.module, name)

        def forward(self, *args, **kwargs):
            if not torch.is_grad_enabled():  # evaluation: one rank, no gradient sync
                return self.module(*args, **kwargs)
            return super().forward(*args, **kwargs)

        def state_dict(self, *args, **kwargs):
            return self.module.state_dict(*args, **kwargs)

        def load_state_dict(self, *args, **kwargs):
            return self.module.load_state_dict(*args, **kwargs)

    _DDP = SegnetsDDP
    return _DDP


def _shard(data, env: DDPEnv):
    """This rank's shard: of an ``(image, mask)`` pair, a bare image, or a SliceDataset."""
    import numpy as np

    from ..training import SliceDataset

    if isinstance(data, SliceDataset):
        return data.subset(shard_indices(len(data), env.rank, env.world_size))
    image, mask = data if isinstance(data, tuple) else (data, None)
    image = np.asarray(image)
    mask = None if mask is None else np.asarray(mask)
    if image.ndim == 2:
        image, mask = image[None], None if mask is None else mask[None]
    idx = shard_indices(image.shape[0], env.rank, env.world_size)
    return (image[idx], None if mask is None else mask[idx])


def ddp_train_iter(
    model,
    data,
    *,
    val=None,
    env: DDPEnv | None = None,
    checkpoint=None,
    minutes: float | None = None,
    early_stopping: int | None = None,
    steps_per_epoch: int | None = None,
    batch_size: int = 4,
    crop: int = 128,
    seed: int = 0,
    device=None,
    **kwargs,
):
    """:func:`napari_segnets.training.train_iter` on every rank of a ``torchrun`` job.

    Parameters
    ----------
    model : torch.nn.Module
        Built identically on every rank (DDP also broadcasts rank 0's weights).
    data : (image, mask) pair, image, or SliceDataset
        The *whole* training set; each rank keeps its shard. Pairs are sharded by slice before
        normalisation, so each rank normalises its slices as one stack.
    val : optional
        Validation data; used by rank 0 only.
    env : DDPEnv, optional
        Default: :func:`ddp_env` (must be under ``torchrun``).
    checkpoint : path
        Written by rank 0 only.
    minutes, early_stopping
        Agreed between ranks (see the module notes).
    steps_per_epoch : int, optional
        Default: one pass over this rank's shard, equal on all ranks.
    device
        Ignored: each rank uses ``env.device``.
    **kwargs
        As for ``train_iter`` (not ``schedule="plateau"``, which would let ranks' rates differ).

    Returns (generator)
    -------
    TrainResult
        On rank 0 with the best checkpoint; on other ranks ``checkpoint`` is None.
    """
    import torch
    import torch.distributed as dist

    from ..training import train_iter

    env = env or ddp_env()
    if env is None:
        raise InputError("ddp_train_iter runs under torchrun (WORLD_SIZE > 1); call train_iter otherwise.")
    if kwargs.get("schedule") == "plateau":
        raise InputError("The 'plateau' schedule is not supported with several processes; use 'cosine'.")
    if early_stopping is not None and val is None:
        raise InputError("Early stopping needs validation data (--val-slices).")
    owns_group = not dist.is_initialized()
    if owns_group:
        if env.device.startswith("cuda"):
            torch.cuda.set_device(torch.device(env.device))
        dist.init_process_group(env.backend, rank=env.rank, world_size=env.world_size)
    main_rank = env.rank == 0
    shard = _shard(data, env)
    if steps_per_epoch is None:
        n_local = len(shard) if not isinstance(shard, tuple) else shard[0].shape[0]
        steps_per_epoch = max(1, math.ceil(n_local / batch_size))
    ddp_model = wrap(model, env)
    finished = False
    try:
        result = yield from train_iter(
            ddp_model,
            shard,
            val=val if main_rank else None,
            checkpoint=checkpoint if main_rank else None,
            minutes=minutes,
            early_stopping=early_stopping if main_rank else None,
            steps_per_epoch=steps_per_epoch,
            batch_size=batch_size,
            crop=crop,
            seed=seed + env.rank,  # different crops and augmentations per rank
            device=env.device,
            sync=lambda elapsed, reason: agree(elapsed, reason, env),
            **kwargs,
        )
        result.model = model  # the plain model: the wrapper goes with the group
        finished = True
    finally:
        # Nothing that holds the process group (the DDP wrapper's reducer) may outlive it: a gloo
        # object torn down at interpreter exit aborted a rank once ("terminate called without an
        # active exception", SIGABRT) after a run that had finished.
        # Validation's inference copy of the wrapper (inference.prepared's cache) holds a reducer too.
        import gc

        from ..inference.prepared import clear_prepared

        del ddp_model
        clear_prepared()
        gc.collect()  # a module's hooks can hold it in a reference cycle
        if owns_group and dist.is_initialized():
            if finished:  # every rank is past its last collective before any rank tears the group down
                dist.barrier()
            dist.destroy_process_group()
    if not main_rank:
        result.checkpoint = None
    return result


def agree(elapsed: float, reason: str | None, env: DDPEnv) -> tuple[float, str | None]:
    """The loop's stopping hook under DDP: the largest elapsed time and the strongest wish to
    stop over all ranks, in one all-reduce of two numbers."""
    import torch
    import torch.distributed as dist

    device = env.device if env.backend == "nccl" else "cpu"
    t = torch.tensor([float(elapsed), float(_REASONS.index(reason))], dtype=torch.float64,
                     device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t[0]), _REASONS[int(t[1])]


def ddp_train(model, data, *, callback=None, bar=None, **kwargs):
    """Plain twin of :func:`ddp_train_iter`."""
    return drive(ddp_train_iter(model, data, **kwargs), callback=callback, bar=bar)
