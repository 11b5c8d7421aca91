"""Checking arguments and assembling everything a training run needs (before the first step)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CheckpointError, InputError
from .augment import make_augmenter
from .datasets import CropSampler, SliceDataset
from .losses import make_loss
from .masks import IGNORE
from .state import load_optimizer, sidecar_path

TASKS = ("segment", "autoencode")
OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd")
SCHEDULES = ("cosine", "none", "plateau")
# Default weight of the edge-aware smoothness term (losses.edge_smoothness) for sparse strokes.
# Off: in benchmarks/sparse_start.py (seed 0, 5 min) weight 1 gave IoU 0.669 against 0.658 without
# it (within one seed's noise) and weight 3 gave 0.615; the false objects it leaves are far from
# any stroke, where smoothing cannot help. ``smoothness=`` / ``--smoothness`` turn it on.
SPARSE_SMOOTHNESS = 0.0
# Self-training for sparse strokes (training.pseudo), opt-in (`self_training=True`, `--self-training`):
# from half-way through the run the unpainted pixels the net is sure of (probability >=
# SELF_TRAINING_CONFIDENCE of one class) are labelled with its own prediction, refreshed at each of
# SELF_TRAINING_AT. Off by default: in benchmarks/sparse_start.py it gained +0.054 / +0.021 IoU in paired
# 6000-step runs (seeds 0 / 1) but -0.035 / +0.006 in 10-minute CLI runs, within one run's spread;
# starting at 30% of the run lost 0.04-0.09, and background-only pseudo-labels collapsed recall to 0.3.
SPARSE_SELF_TRAINING = False
SELF_TRAINING_AT = (0.5, 0.6, 0.7, 0.8, 0.9)
SELF_TRAINING_CONFIDENCE = 0.9


@dataclass
class Run:
    model: Any
    device: Any
    task: str
    loss_name: str
    opt: Any
    loss_fn: Any
    sampler: CropSampler
    n_classes: int
    ignore_index: int
    train_pixels: int
    normalization: dict
    val_images: list | None = None
    val_masks: list | None = None
    amp: bool = False
    amp_dtype: Any = None
    channels_last: bool = False
    parent_info: dict | None = None
    class_names: list | None = None
    history: list = field(default_factory=list)
    best_score: float | None = None
    best_epoch: int | None = None
    lr_scale: float = 1.0
    bad_epochs: int = 0
    start_epoch: int = 0
    smoothness: float = 0.0
    # self-training (sparse strokes): the share of the run at which pseudo-labels are refreshed
    self_training_at: tuple = ()
    # what the masks were: "full" or "sparse" strokes (None: autoencoding, no masks), and for strokes the
    # painted share of the pixels (recorded in the checkpoint: checkpoints.strokes_note warns whoever
    # measures its objects)
    annotation: str | None = "full"
    painted: float | None = None


def as_dataset(
    data, what: str, *, annotation: str = "full", classes: int | None = None,
    ignore_index: int | None = None,
) -> SliceDataset:
    """Accept a SliceDataset, an ``(image, mask)`` tuple, a bare image (autoencoding) or a Store.

    Masks are read by :func:`napari_segnets.training.masks.to_targets` with the given rules.
    """
    if isinstance(data, SliceDataset):
        return data
    if data is None:
        raise InputError(
            f"No {what} data was given; pass a SliceDataset, an (image, mask) pair or a Store."
        )
    kw = {"annotation": annotation, "classes": classes, "ignore_index": ignore_index}
    if hasattr(data, "samples") and hasattr(data, "load"):
        return SliceDataset.from_store(
            data, split="train" if what == "training" else "val", annotation=annotation,
            classes=classes,
        )
    if isinstance(data, tuple) and len(data) == 2:
        return SliceDataset(data[0], data[1], name=what, **kw)
    return SliceDataset(data, None, name=what, **kw)


def default_loss(task: str) -> str:
    """The loss a task trains with unless told otherwise."""
    return "mse" if task == "autoencode" else "bce_dice"


def _choose(name, value, allowed):
    if value not in allowed:
        raise InputError(f"Unknown {name} {value!r}; choose one of {', '.join(allowed)}.")


def _load_checkpoint(path, what):
    from .. import checkpoints

    if not Path(path).exists():
        raise CheckpointError(f"The {what} checkpoint {path} does not exist; check the path.")
    return checkpoints.load(path)



def _load_into(model, path, role: str, mismatch: str):
    """Load a checkpoint; return its model (when ``model`` is None) or ``model`` with its weights."""
    loaded, meta = _load_checkpoint(path, role)
    if model is None:
        return loaded, meta
    try:
        model.load_state_dict(loaded.state_dict())
    except RuntimeError as exc:
        raise InputError(mismatch) from exc
    return model, meta


def _painted(targets: list) -> float:
    """The share of the pixels of ``targets`` that carry a label (strokes: the painted share)."""
    total = sum(t.size for t in targets)
    return float(sum(int(np.count_nonzero(t != IGNORE)) for t in targets) / total) if total else 0.0


def _make_optimizer(name, params, lr, weight_decay):
    import torch

    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay or 1e-2)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=weight_decay, momentum=0.9)
    return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)


def _bf16_dilated_crash(model, amp_dtype) -> bool:
    """True where CPU bf16 training in channels_last would crash torch 2.13's oneDNN.

    The backward pass of a dilated (>= 4) convolution whose channel count is not a multiple of 8
    segfaults under bf16 autocast in channels_last (seen with the atrous net at a weight budget,
    44 channels); the default memory layout is fine, so such models train in it.
    """
    import torch

    if amp_dtype != torch.bfloat16:
        return False
    return any(
        isinstance(m, torch.nn.Conv2d) and max(m.dilation) >= 2
        and (m.in_channels % 8 or m.out_channels % 8)
        for m in model.modules()
    )


def prepare_run(
    model,
    data,
    val,
    *,
    task,
    crop,
    batch_size,
    epochs,
    loss,
    optimizer,
    schedule,
    device,
    amp,
    ignore_index,
    annotation,
    resume,
    parent,
    augment,
    early_stopping,
    class_weights,
    foreground_crop,
    normalization,
    lr,
    weight_decay,
    minutes,
    denoise,
    channels_last=None,
    smoothness=None,
    self_training=None,
) -> Run:
    """Validate every argument, load parent/resume state and build the sampler and optimizer."""
    import torch

    from ..devices import autocast_dtype, resolve_device
    from ..io.normalize import normalization_spec

    if task is not None:
        _choose("task", task, TASKS)
    _choose("optimizer", optimizer, OPTIMIZERS)
    _choose("schedule", schedule, SCHEDULES)
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("crop", crop)):
        if not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be a positive whole number, got {value!r}.")
    if not lr > 0:
        raise InputError(f"The learning rate must be positive, got {lr!r}.")
    if minutes is not None and not minutes > 0:
        raise InputError(f"The time budget must be positive minutes, got {minutes!r}.")
    # strokes, said by the caller or by the dataset: decides the smoothness default and the validation split
    sparse = annotation == "sparse" or getattr(data, "annotation", None) == "sparse"
    if not 0 <= foreground_crop <= 1:
        raise InputError(f"foreground_crop is a probability in [0, 1], got {foreground_crop!r}.")
    if denoise < 0:
        raise InputError(f"denoise is a noise standard deviation >= 0, got {denoise!r}.")
    auto_val = isinstance(val, str) and val == "auto"
    if smoothness is None:
        smoothness = SPARSE_SMOOTHNESS if sparse else 0.0
    if not smoothness >= 0:
        raise InputError(f"smoothness is a loss weight >= 0, got {smoothness!r}.")
    if self_training is None:
        self_training = SPARSE_SELF_TRAINING and sparse
    if self_training and not sparse:
        raise InputError(
            "Self-training labels the pixels nobody painted, so it needs strokes: "
            "use it with --sparse (annotation='sparse') or turn it off."
        )
    if auto_val and sparse:
        val, auto_val = None, False  # strokes are too few to spare; the latest weights are kept
    if early_stopping is not None and (val is None or early_stopping < 1):
        raise InputError(
            "Early stopping needs validation data (val=...) and a patience of at least 1 epoch."
        )
    if schedule == "plateau" and val is None:
        raise InputError(
            "The 'plateau' schedule needs validation data (val=...); use 'cosine' or 'none'."
        )

    parent_meta, parent_info, resume_meta = {}, None, None
    if parent is not None:
        model, parent_meta = _load_into(
            model, parent, "parent",
            f"The parent checkpoint {parent} holds a different architecture than the model given; "
            "pass model=None to fine-tune the parent's own architecture.",
        )
        # The parent's weight hash (as checkpoints record it): it identifies the weights, not the file bytes.
        parent_info = {
            "path": str(Path(parent).resolve()),
            "content_hash": parent_meta.get("content_hash"),
        }
    if resume is not None:
        model, resume_meta = _load_into(
            model, resume, "resume", f"The checkpoint {resume} does not fit the model given; pass model=None."
        )
        parent_info = resume_meta.get("parent") or parent_info
        parent_meta = parent_meta or resume_meta
    if model is None:
        raise InputError(
            "No model was given; pass a model from napari_segnets.models.build, or parent=/resume=."
        )
    model_task = getattr(model, "task", task or "segment")
    task = model_task if task is None else task  # the one place the task default is decided
    if loss is None:
        loss = default_loss(task)
    if model_task != task:
        raise InputError(
            f"The model was built for task {model_task!r} but training asks for {task!r}; "
            "build the model with the same task."
        )
    multiple = int(getattr(model, "size_multiple", 1) or 1)
    if crop % multiple:
        raise InputError(
            f"The crop {crop} is not a multiple of {multiple}, which this model needs; "
            f"use e.g. {max(multiple, crop // multiple * multiple)}."
        )

    n_classes = int(getattr(model, "out_channels", 1))
    rules = {"annotation": annotation, "ignore_index": ignore_index,
             "classes": n_classes if task == "segment" else None}
    source = data
    data = as_dataset(data, "training", **rules)
    if auto_val:
        is_store = hasattr(source, "samples") and hasattr(source, "load")
        if is_store and any(True for _ in source.samples(split="val")):
            val = source  # the store's own validation samples
        else:
            data, val = data.holdout(crop)
    val = None if val is None else as_dataset(val, "validation", **rules)
    if task == "segment":
        for ds, what in ((data, "training"), (val, "validation")):
            if ds is not None and not ds.has_masks:
                raise InputError(
                    f"The {what} data has no masks; segmentation needs (image, mask) pairs."
                )
            if ds is data:
                ds.check(classes=n_classes)
            elif ds is not None and ds.classes > max(n_classes, 2):
                ds.check(classes=n_classes)
    else:
        data.check()
    if normalization is None:
        normalization = parent_meta.get("normalization") or normalization_spec()
    norm = {
        k: v
        for k, v in dict(normalization).items()
        if k not in ("vmin", "vmax") or normalization.get("mode") == "fixed"
    }

    dev = resolve_device(device)
    amp_dtype = autocast_dtype(dev, amp)  # the same decision as prediction's
    use_amp = amp_dtype is not None
    if channels_last is None:
        channels_last = dev.type == "cuda" or (
            dev.type == "cpu" and not _bf16_dilated_crash(model, amp_dtype)
        )
    model.to(dev)
    if channels_last:
        model.to(memory_format=torch.channels_last)

    images = data.normalized(norm)
    masks = data.labels() if task == "segment" else None
    sampler = CropSampler(
        images,
        masks,
        crop=crop,
        ignore_index=IGNORE,
        foreground_crop=foreground_crop if task == "segment" else 0.0,
        augmenter=make_augmenter(augment),
    )
    if class_weights is not None and task == "segment":
        expected = (1, 2) if n_classes == 1 else (n_classes,)
        if len(class_weights) not in expected:
            raise InputError(
                f"class_weights has {len(class_weights)} values but the model has "
                f"{max(n_classes, 2)} classes; give one weight per class."
            )
    loss_fn = make_loss(loss, task=task, ignore_index=IGNORE, class_weights=class_weights)
    opt = _make_optimizer(optimizer, model.parameters(), lr, weight_decay)

    run = Run(
        model=model,
        device=dev,
        task=task,
        loss_name=loss,
        opt=opt,
        loss_fn=loss_fn,
        sampler=sampler,
        n_classes=n_classes,
        ignore_index=IGNORE,
        train_pixels=sum(i.size for i in images),
        normalization=norm,
        amp=use_amp,
        amp_dtype=amp_dtype,
        channels_last=channels_last,
        parent_info=parent_info,
        class_names=parent_meta.get("class_names"),
        smoothness=float(smoothness) if task == "segment" else 0.0,
        self_training_at=SELF_TRAINING_AT if self_training and task == "segment" else (),
        annotation=("sparse" if sparse else "full") if task == "segment" else None,
        painted=_painted(masks) if sparse and task == "segment" else None,
    )
    if val is not None:
        run.val_images = val.normalized(norm)
        run.val_masks = val.labels() if task == "segment" else None
    if resume is not None:
        tr = resume_meta.get("training", {})
        extra = load_optimizer(sidecar_path(resume), opt, state_id=tr.get("state_id"), device=dev)
        run.history = list(resume_meta.get("history") or [])
        run.start_epoch = int(tr.get("epoch", len(run.history)))
        run.best_score, run.best_epoch = tr.get("best_score"), tr.get("best_epoch")
        run.lr_scale = float((extra or tr).get("lr_scale", 1.0))
        run.bad_epochs = int((extra or tr).get("bad_epochs", 0))
        if run.start_epoch >= epochs:
            raise InputError(
                f"The checkpoint {resume} already finished epoch {run.start_epoch}; "
                f"ask for more epochs than that (epochs={epochs})."
            )
    return run
