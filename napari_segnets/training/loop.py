"""The training loop: a generator of progress events that keeps the best checkpoint.

Cancel = the consumer closes the generator: checkpoints are only ever written atomically
at the end of an epoch, so closing at any ``yield`` leaves the last good checkpoint intact.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..progress import Job, Progress, drive
from . import setup
from .losses import edge_smoothness
from .pseudo import pseudo_labels_iter
from .setup import SELF_TRAINING_CONFIDENCE
from .state import last_path, save_training_state
from .validate import NO_LIMIT as _NO_LIMIT
from .validate import better as _better
from .validate import epoch_message as _epoch_message
from .validate import validate_run as _validate


@dataclass
class TrainResult:
    """What a training run produced.

    Attributes
    ----------
    checkpoint : Path or None
        The best checkpoint (the latest one when there was no validation data).
    best_score, best_epoch
        Validation score (foreground IoU; -MSE for autoencoders) and its epoch.
    history : list of dict
        One entry per epoch: ``epoch``, ``steps``, ``loss``, ``lr``, ``seconds``, ``val``.
    stopped : str
        ``"epochs"``, ``"early_stopping"`` or ``"time_budget"``.
    model
        The model in memory, holding the best weights.
    """

    checkpoint: Path | None
    best_score: float | None
    best_epoch: int | None
    history: list[dict] = field(default_factory=list)
    stopped: str = "epochs"
    steps: int = 0
    seconds: float = 0.0
    model: Any = None


def train_iter(
    model,
    data,
    *,
    val="auto",
    task: str | None = None,
    epochs: int | None = None,
    steps_per_epoch: int | None = None,
    minutes: float | None = None,
    batch_size: int = 4,
    crop: int = 128,
    lr: float = 1e-3,
    loss: str | None = None,
    optimizer: str = "adam",
    schedule: str = "cosine",
    device: str = "auto",
    amp: bool | None = None,
    seed: int = 0,
    ignore_index: int | None = None,
    annotation: str = "full",
    checkpoint=None,
    resume=None,
    parent=None,
    augment=True,
    early_stopping: int | None = None,
    class_weights=None,
    foreground_crop: float = 0.5,
    denoise: float = 0.0,
    normalization: dict | None = None,
    weight_decay: float = 0.0,
    class_names: list[str] | None = None,
    channels_last: bool | None = None,
    smoothness: float | None = None,
    self_training: bool | None = None,
    clock=None,
    sync=None,
) -> Job[TrainResult]:
    """Train ``model`` on ``data``, yielding :class:`~napari_segnets.progress.Progress` events.

    Parameters
    ----------
    model : torch.nn.Module or None
        A model from :func:`napari_segnets.models.build`; ``None`` to take it from ``parent``
        or ``resume``.
    data, val : SliceDataset, (image, mask) tuple, or curation Store
        Training slices and held-out validation slices. ``val="auto"`` (the default) holds out
        the last eighth of the slices (a strip of the image when there is one slice), so the
        kept checkpoint is chosen on pixels it did not train on; ``val=None``: no validation
        (the latest weights are kept; also what sparse strokes get under "auto").
    task : {"segment", "autoencode"}, optional
        Default: the model's own task (``model.task``); when given, it must match.
    epochs, steps_per_epoch : int
        ``steps_per_epoch`` defaults to about one pass over the training pixels. ``epochs``
        defaults to 10, or to no limit when ``minutes`` is given.
    minutes : float, optional
        Time budget: train for this many minutes (a last validation follows) and keep the best;
        the learning-rate schedule spans the budget. Progress events then count seconds.
    batch_size, crop : int
        Crops per step and their side (a multiple of ``model.size_multiple``).
    lr, optimizer, schedule, weight_decay
        ``optimizer`` in adam/adamw/rmsprop/sgd (momentum 0.9); ``schedule`` in cosine/none/plateau
        (cosine anneals over the steps or the time budget, whichever ends first).
    loss : str, optional
        One of :data:`napari_segnets.training.losses.LOSSES`; default by task: ``"bce_dice"``
        (segmentation; cross-entropy + Dice for several classes) or ``"mse"`` (autoencoders).
    device, amp, channels_last
        ``amp`` (GPU only) and ``channels_last`` default to on for CUDA; ``channels_last=True``
        also helps on CPUs (about 1.3x faster U-Net training on the project's 2-core box).
    seed : int
        Fixed seed: identical weights on the CPU for the same inputs.
    ignore_index : int, optional
        Full masks: the mask value of pixels nobody labelled (none unless given); they carry
        no loss and no gradient.
    annotation : {"full", "sparse"}
        ``"full"``: masks label every pixel, 0 = background (0/1, 0/255, bool, label ids ...
        are all read right: :func:`~napari_segnets.training.masks.to_targets`). ``"sparse"``:
        strokes in ilastik's convention (0 = not annotated, 1 = background, 2 = first class).
    checkpoint : path, optional
        Where to keep the best checkpoint; ``<name>.last.safetensors`` keeps the latest epoch,
        and ``.optim.safetensors`` sidecars the optimizer state for resume.
    resume : path, optional
        Continue from a checkpoint written by this loop (weights, optimizer state, epoch, history).
    parent : path, optional
        Fine-tune from this checkpoint: its weights are loaded, its normalisation is reused and
        its path and content hash are recorded as ``parent``.
    augment : bool or dict
        Flips, 90-degree rotations, elastic, brightness/contrast, noise (see ``augment.Augmenter``).
    early_stopping : int, optional
        Patience in epochs without a better validation score.
    class_weights : sequence of float, optional
        Per-class loss weights (binary: ``(background, foreground)``).
    foreground_crop : float
        Probability that a crop is centred on foreground (rare classes).
    denoise : float
        Autoencoders: std of Gaussian noise added to the input (target stays clean).
    smoothness : float, optional
        Weight of an edge-aware smoothness term that lets unpainted pixels train
        (:func:`~napari_segnets.training.losses.edge_smoothness`); default
        :data:`~napari_segnets.training.setup.SPARSE_SMOOTHNESS` (0, measured) for sparse strokes,
        0 for full masks.
    self_training : bool, optional
        Sparse strokes: from half-way through the run, also train on the unpainted pixels the
        net is sure of, labelled by its own prediction and re-made at 50, 60, 70, 80 and 90% of
        the run (:mod:`~napari_segnets.training.pseudo`). Default
        :data:`~napari_segnets.training.setup.SPARSE_SELF_TRAINING` (off: no gain beyond one
        run's spread in ``benchmarks/sparse_start.py``); full masks have nothing to label.
    normalization : dict, optional
        Intensity normalisation spec; default: the parent's, else percentile 1-99.8.
    clock : callable, optional
        Seconds as a float (default ``time.perf_counter``): the time budget's clock (tests
        inject a fake one).
    sync : callable, optional
        The stopping hook: ``sync(elapsed_s, reason) -> (elapsed_s, reason)`` is called after
        every step and every epoch with this process's elapsed time and its wish to stop
        (``None``, ``"time_budget"`` or ``"early_stopping"``) and answers what all processes
        agree on (DDP: one all-reduce, :mod:`napari_segnets.distributed.ddp`). Default: itself.
    """
    import torch

    if getattr(model, "arch", None) == "pca" and getattr(model, "task", "") == "autoencode":
        # PCA is an architecture the loop fits in closed form (its components are the weights)
        from .pca_fit import fit_pca_iter

        cfg = dict(getattr(model, "config", {}) or {})
        return (yield from fit_pca_iter(
            data, val=val, patch=int(cfg.get("patch", 8)), components=int(cfg.get("components", 16)),
            normalization=normalization, checkpoint=checkpoint, seed=seed, parent=parent,
        ))
    clock = clock or time.perf_counter
    t0 = clock()
    schedule = "none" if schedule is None else schedule
    if epochs is None:
        epochs = 10 if minutes is None else _NO_LIMIT
    run = setup.prepare_run(
        model,
        data,
        val,
        task=task,
        crop=crop,
        batch_size=batch_size,
        epochs=epochs,
        loss=loss,
        optimizer=optimizer,
        schedule=schedule,
        device=device,
        amp=amp,
        ignore_index=ignore_index,
        annotation=annotation,
        resume=resume,
        parent=parent,
        augment=augment,
        early_stopping=early_stopping,
        class_weights=class_weights,
        foreground_crop=foreground_crop,
        normalization=normalization,
        lr=lr,
        weight_decay=weight_decay,
        minutes=minutes,
        denoise=denoise,
        channels_last=channels_last,
        smoothness=smoothness,
        self_training=self_training,
    )
    model, task, loss = run.model, run.task, run.loss_name
    if steps_per_epoch is None:
        steps_per_epoch = max(1, math.ceil(run.train_pixels / (batch_size * crop * crop)))
    if steps_per_epoch < 1:
        raise InputError(f"steps_per_epoch must be at least 1, got {steps_per_epoch}.")
    total_steps = None if epochs == _NO_LIMIT else epochs * steps_per_epoch
    checkpoint = Path(checkpoint) if checkpoint is not None else None

    history = list(run.history)
    best_score, best_epoch = run.best_score, run.best_epoch
    best_state = None
    lr_scale, bad_epochs = run.lr_scale, run.bad_epochs
    start_epoch = run.start_epoch
    step = start_epoch * steps_per_epoch
    stopped = "epochs"
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    budget = None if minutes is None else float(minutes) * 60.0
    scaler = torch.amp.GradScaler("cuda") if run.amp and run.amp_dtype == torch.float16 else None
    meta_base = {
        "task": task,
        "class_names": class_names or run.class_names,
        "normalization": run.normalization,
        "parent": run.parent_info,
    }

    sync = sync or (lambda elapsed, reason: (elapsed, reason))
    agreed = {"elapsed": 0.0}  # seconds as all processes agree (one clock for the schedule)

    def progress(s: int) -> float:
        """The share of the run done: steps of the step limit or seconds of the budget."""
        frac = 0.0 if total_steps is None else s / max(total_steps, 1)
        if budget:
            frac = max(frac, agreed["elapsed"] / budget)
        return frac

    strokes = run.sampler.masks  # the painted targets; pseudo-labels are re-made from these
    refresh_at = list(run.self_training_at)
    pseudo_rounds = 0

    def lr_at(s: int) -> float:
        frac = progress(s)
        base = lr * lr_scale
        if schedule == "cosine":
            return base * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))
        return base

    try:
        epoch = start_epoch
        while epoch < epochs and stopped == "epochs":
            model.train()
            # Seeds per epoch: a resumed run draws the same crops (and dropout) as an uninterrupted one.
            torch.manual_seed(seed * 100_003 + epoch)
            rng = np.random.default_rng([seed, epoch])
            t_epoch, losses = clock(), []
            for _ in range(steps_per_epoch):
                if refresh_at and progress(step) >= refresh_at[0]:
                    refresh_at = [t for t in refresh_at if t > progress(step)]  # one refresh for all passed
                    masks = yield from pseudo_labels_iter(
                        model, run.sampler.images, strokes, confidence=SELF_TRAINING_CONFIDENCE,
                        device=run.device,
                    )  # fmt: skip
                    run.sampler = run.sampler.with_masks(masks)
                    pseudo_rounds += 1
                    model.train()
                current_lr = lr_at(step)
                for g in run.opt.param_groups:
                    g["lr"] = current_lr
                xb, yb = run.sampler.batch(rng, batch_size)
                loss_value = _step(run, xb, yb, rng, denoise, scaler)
                losses.append(loss_value)
                step += 1
                elapsed = clock() - t0
                wish = "time_budget" if budget is not None and elapsed >= budget else None
                agreed["elapsed"], reason = sync(elapsed, wish)
                yield _train_event(step, total_steps, agreed["elapsed"], budget,
                                   start_epoch * steps_per_epoch, epoch + 1, epochs, loss_value,
                                   current_lr)
                if reason is not None:
                    stopped = reason
                    break
            entry = {
                "epoch": epoch + 1,
                "steps": step,
                "loss": float(np.mean(losses)),
                "lr": current_lr,
                "seconds": round(clock() - t_epoch, 3),
                "val": None,
            }
            preview = None
            if run.val_images is not None:
                entry["val"], preview = _validate(run, task)
                current = entry["val"]["score"]
                improved = _better(current, best_score)
            else:  # without validation the latest weights are the best known
                current, improved = None, True
            history.append(entry)
            if improved:
                best_score, best_epoch = current, epoch + 1
                bad_epochs = 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                bad_epochs += 1
                if schedule == "plateau" and bad_epochs % 2 == 0:
                    lr_scale *= 0.5  # halve the rate after two epochs without progress
            extra = {
                "epoch": epoch + 1,
                "steps": step,
                "stopped": stopped,
                "minutes": minutes,
                "lr_scale": lr_scale,
                "bad_epochs": bad_epochs,
                "best_score": best_score,
                "best_epoch": best_epoch,
                "seed": seed,
                "pseudo_label_rounds": pseudo_rounds,
                **({} if run.annotation is None else {"annotation": run.annotation}),
                **({} if run.painted is None else {"painted": round(run.painted, 6)}),
            }
            meta = dict(
                meta_base,
                history=history,
                training=dict(
                    extra,
                    loss=loss,
                    optimizer=optimizer,
                    schedule=schedule,
                    lr=lr,
                    crop=crop,
                    batch_size=batch_size,
                ),
            )
            if checkpoint is not None:
                save_training_state(last_path(checkpoint), model, meta, run.opt, extra)
                if improved:
                    save_training_state(checkpoint, model, meta, run.opt, extra)
            yield Progress(
                "epoch",
                epoch + 1,
                None if epochs == _NO_LIMIT else epochs,
                _epoch_message(entry, epochs),
                {
                    "epoch": epoch + 1,
                    "loss": entry["loss"],
                    "lr": current_lr,
                    "val": entry["val"],
                    "preview": preview,
                    "best_score": best_score,
                    "improved": improved,
                },
            )
            epoch += 1
            wish = "early_stopping" if early_stopping and bad_epochs >= early_stopping else None
            _, reason = sync(agreed["elapsed"], wish)
            if reason is not None and stopped == "epochs":
                stopped = reason
    finally:
        torch.use_deterministic_algorithms(deterministic)
    if best_state is not None and run.val_images is not None:
        model.load_state_dict(best_state)
    return TrainResult(
        checkpoint=checkpoint if checkpoint is not None and checkpoint.exists() else None,
        best_score=best_score,
        best_epoch=best_epoch,
        history=history,
        stopped=stopped,
        steps=step,
        seconds=clock() - t0,
        model=model,
    )


def _train_event(step, total_steps, elapsed, budget, first_step, epoch, epochs, loss, lr):
    """A step's progress: in steps, or in seconds under a time budget; with an ETA in seconds."""
    done_steps = step - first_step
    if budget is not None:
        eta = max(budget - elapsed, 0.0)
        if total_steps is not None:
            eta = min(eta, (total_steps - step) * elapsed / max(done_steps, 1))
        done, total = int(min(elapsed, budget)), int(math.ceil(budget))
    else:
        eta = (total_steps - step) * elapsed / max(done_steps, 1)
        done, total = step, total_steps
    of = "" if epochs == _NO_LIMIT else f"/{epochs}"
    return Progress(
        "train",
        done,
        total,
        f"epoch {epoch}{of} loss {loss:.4f} (about {_duration(eta)} left)",
        {"loss": loss, "epoch": epoch, "lr": lr, "step": step, "eta_s": eta, "elapsed_s": elapsed},
    )


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def _step(run, xb, yb, rng, denoise, scaler) -> float:
    import torch

    dev = run.device
    x = torch.from_numpy(xb).to(dev)
    if run.task == "autoencode":
        target = x
        if denoise:
            x = x + torch.from_numpy(rng.normal(0.0, denoise, xb.shape).astype(np.float32)).to(dev)
    else:
        target = torch.from_numpy(yb).to(dev)
    if run.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    run.opt.zero_grad(set_to_none=True)
    with torch.autocast(device_type=dev.type, dtype=run.amp_dtype, enabled=run.amp):
        out = run.model(x)
    logits = out.float()
    value = run.loss_fn(logits, target)
    if run.smoothness:
        value = value + run.smoothness * edge_smoothness(logits, x)
    if not torch.isfinite(value):
        raise InputError(
            "The training loss became NaN or infinite; lower the learning rate or check the image for NaNs."
        )
    if scaler is not None:
        scaler.scale(value).backward()
        scaler.step(run.opt)
        scaler.update()
    else:
        value.backward()
        run.opt.step()
    return float(value.detach())


def train(model, data, *, callback=None, bar=None, **kwargs) -> TrainResult:
    """Plain twin of :func:`train_iter`: run to the end and return the :class:`TrainResult`."""
    return drive(train_iter(model, data, **kwargs), callback=callback, bar=bar)
