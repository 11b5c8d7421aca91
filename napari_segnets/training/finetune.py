"""Fine-tuning: continue training a saved model on new (e.g. corrected) slices, recording the parent."""

from __future__ import annotations

from ..progress import Job, drive
from .loop import TrainResult, train_iter


def finetune_iter(parent, data, *, lr: float = 1e-4, epochs: int = 5, **kwargs) -> Job[TrainResult]:
    """Fine-tune the model saved in checkpoint ``parent`` on ``data``.

    The parent's architecture, weights, task and normalisation are reused; the new checkpoint's
    metadata records the parent's path and content hash. Other keywords as in
    :func:`~napari_segnets.training.train_iter` (a lower default learning rate here).
    """
    from .. import checkpoints
    from ..errors import CheckpointError

    try:
        model, meta = checkpoints.load(parent)
    except FileNotFoundError as exc:
        raise CheckpointError(
            f"The parent checkpoint {parent} does not exist; check the path."
        ) from exc
    kwargs.pop("model", None)
    kwargs.setdefault("task", meta.get("task") or getattr(model, "task", "segment"))
    return (yield from train_iter(model, data, parent=parent, lr=lr, epochs=epochs, **kwargs))


def finetune(parent, data, *, callback=None, bar=None, **kwargs) -> TrainResult:
    """Plain twin of :func:`finetune_iter`: run to the end and return the :class:`TrainResult`."""
    return drive(finetune_iter(parent, data, **kwargs), callback=callback, bar=bar)
