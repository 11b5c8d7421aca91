"""``train`` and ``finetune``: build or load a model, train it on image/mask stacks or a curated store.

Both run unchanged under ``torchrun`` (DistributedDataParallel: each rank trains on
its own shard of slices; rank 0 alone writes the checkpoint and prints).
"""

from __future__ import annotations

import argparse

from ..errors import InputError
from . import common

TRAIN_PATHS = ("images", "masks", "out", "store", "checkpoint", "init_encoder")


def register(sub) -> None:
    p = common.command(
        sub,
        "train",
        run_train,
        help="train a new model on an image stack and its masks",
        description="Train a new segmentation or autoencoder model. Slices are samples; "
        "--val-slices are held out to choose the best checkpoint.",
    )
    _data_options(p, masks_required=False)
    p.add_argument("--arch", default=None, help="architecture: unet, atrous, fcn8s, fcn16s, fcn32s, linear, pca (fitted in closed form), ... (required)")
    p.add_argument("--task", choices=("segment", "autoencode"), default="segment", help="default: segment")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--base", type=int, default=None, help="base channels (width) of the model")
    size.add_argument("--budget", type=int, default=None, help="number of weights to match (picks the width)")
    p.add_argument("--classes", type=int, default=None,
                   help="classes incl. background (1 or 2 = binary: every nonzero mask value is the object); "
                   "default: read from the masks (0/1, 0/255, bool, label ids = binary)")
    p.add_argument("--preset", default=None, help="a named preset of the architecture (see the model zoo)")
    p.add_argument("--option", metavar="KEY=VALUE", action="append", default=None,
                   help="an architecture option, e.g. depth=3 or dilations=[1,2,4] (repeatable)")
    p.add_argument("--init-encoder", metavar="AE", default=None,
                   help="start the encoder from this autoencoder checkpoint (same --arch and width), "
                   "e.g. one trained with --task autoencode --option skips=false on the same stack")
    _loop_options(p, lr=1e-3)
    p.set_defaults(_required=[("arch", "--arch"), ("out", "--out")])

    f = common.command(
        sub,
        "finetune",
        run_finetune,
        help="fine-tune a checkpoint on corrected masks (stacks or a curated store)",
        description="Continue training a checkpoint on new or corrected data; the new checkpoint "
        "records its parent.",
    )
    common.add_required(f, "--checkpoint", metavar="CKPT", help="the parent checkpoint")
    _data_options(f, masks_required=False)
    f.add_argument("--store", metavar="DIR", default=None, help="train on a curated store instead of --images/--masks")
    _loop_options(f, lr=1e-4)
    f.set_defaults(_required=[("checkpoint", "--checkpoint"), ("out", "--out")])


def _data_options(p, *, masks_required: bool) -> None:
    p.add_argument("--images", metavar="IMG", default=None, help="image stack (TIFF, MRC, Zarr, HDF5, PNG folder)")
    p.add_argument("--masks", metavar="MASK", default=None,
                   help="masks of the same shape: 0 = background, nonzero = object (0/1, 0/255, bool, label ids)")
    p.add_argument("--sparse", action="store_true", default=False,
                   help="the masks are strokes (ilastik: 0 = not annotated, 1 = background, 2 = object ...)")
    p.add_argument("--smoothness", type=float, default=None, metavar="W",
                   help="weight of the edge-aware smoothness loss that lets unpainted pixels train "
                   "(default 0: it did not pay in benchmarks/sparse_start.py)")
    p.add_argument("--self-training", action=argparse.BooleanOptionalAction, default=None,
                   help="strokes: from half-way through the run also train on the unpainted pixels the net "
                   "is sure of, labelled by its own prediction (default: off; it did not pay beyond one run's spread "
                   "in benchmarks/sparse_start.py)")
    p.add_argument("--ignore-index", type=int, default=None, metavar="V",
                   help="full masks: the value of pixels nobody labelled (default: none)")
    p.add_argument("--key", default=None, help="dataset key inside HDF5/Zarr inputs")
    p.add_argument("--val-slices", metavar="A:B", default=None,
                   help="slices A..B-1 held out to choose the best checkpoint (default: the last eighth "
                   "of the slices, or a strip of a single slice)")
    p.add_argument("--out", metavar="CKPT", default=None, help="where to save the best checkpoint (.safetensors)")


def _loop_options(p, *, lr: float) -> None:
    p.add_argument("--epochs", type=int, default=None, help="default: 10, or no limit with --minutes")
    p.add_argument("--steps-per-epoch", type=int, default=None, help="batches per epoch (default: one pass)")
    p.add_argument("--minutes", type=float, default=None,
                   help="train for this many minutes (the learning rate schedule spans them), keeping the best checkpoint")
    p.add_argument("--batch-size", type=int, default=4, help="default: 4 (per process under torchrun)")
    p.add_argument("--crop", type=int, default=128, help="random crop side in pixels (default: 128)")
    p.add_argument("--lr", type=float, default=lr, help=f"learning rate (default: {lr:g})")
    p.add_argument("--loss", default=None, help="bce_dice, bce, dice, ce, focal, mse, l1 (default: by task)")
    p.add_argument("--optimizer", default="adam", help="adam, adamw, rmsprop, sgd (default: adam)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--no-augment", action="store_true", default=False, help="no augmentation")
    p.add_argument("--early-stopping", type=int, default=None, metavar="EPOCHS", help="stop after this many epochs without improvement")
    common.add_device(p)


def _datasets(args: argparse.Namespace, task: str):
    """Training and validation ``(image, mask)`` pairs from --images/--masks and --val-slices."""
    import numpy as np

    if args.images is None:
        raise common.UsageError(f"missing --images (see `{args._prog} --help`)")
    image, _ = common.read_array(args.images, "Image", key=args.key, lazy=False)
    mask = None
    if task == "segment":
        if args.masks is None:
            raise common.UsageError(f"segmentation needs --masks (see `{args._prog} --help`)")
        mask, _ = common.read_array(args.masks, "Mask", key=args.key, lazy=False)
        if tuple(mask.shape) != tuple(image.shape):
            raise InputError(
                f"The masks have shape {tuple(mask.shape)} but the images {tuple(image.shape)}; "
                "they must match pixel for pixel."
            )
    image = np.asarray(image)
    mask = None if mask is None else np.asarray(mask)
    if image.ndim == 2:
        image = image[None]
        mask = None if mask is None else mask[None]
    n = image.shape[0]
    val_range = common.parse_range(args.val_slices, n, "--val-slices")
    if val_range is None:
        return (image, mask), None
    train_idx = [i for i in range(n) if i not in val_range]
    if not train_idx:
        raise InputError(f"--val-slices {args.val_slices} holds out every slice; leave some to train on.")
    val_idx = list(val_range)

    def pick(idx):
        return image[idx], None if mask is None else mask[idx]

    return pick(train_idx), pick(val_idx)


def _read_masks(args, data, val, classes):
    """SliceDatasets of the training and validation pairs, masks read by ``training.masks``."""
    from ..training import SliceDataset

    if data[1] is None:
        return data, val
    rules = {"annotation": "sparse" if args.sparse else "full", "classes": classes,
             "ignore_index": args.ignore_index}
    train_ds = SliceDataset(data[0], data[1], name="training", **rules)
    val_ds = None if val is None else SliceDataset(val[0], val[1], name="validation", **rules)
    for note in train_ds.notes:
        common.info(note)
    return train_ds, val_ds


def _loop_kwargs(args: argparse.Namespace, task: str) -> dict:
    return dict(
        task=task,
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        minutes=args.minutes,
        batch_size=args.batch_size,
        crop=args.crop,
        lr=args.lr,
        loss=args.loss,  # None: the core decides by task
        optimizer=args.optimizer,
        device=args.device,
        seed=args.seed,
        augment=not args.no_augment,
        early_stopping=args.early_stopping,
        smoothness=getattr(args, "smoothness", None),
        self_training=getattr(args, "self_training", None),
    )


def run_train(args: argparse.Namespace) -> int:
    from ..models import available, build

    if args.arch not in available():
        raise InputError(f"Unknown architecture {args.arch!r}; choose one of {', '.join(available())}.")
    if args.arch == "pca" and args.task != "autoencode":
        raise InputError("--arch pca is an autoencoder: add --task autoencode.")
    data, val = _datasets(args, args.task)
    options = _model_options(args.option)
    if args.arch == "pca":
        return _fit_pca(args, data, val, options)
    if args.preset:
        options["preset"] = args.preset
    data, val = _read_masks(args, data, val, args.classes)
    classes = 1
    if args.task == "segment":  # the masks decide (or --classes): 2 classes = one sigmoid channel
        data.check()
        classes = 1 if data.classes <= 2 else data.classes
    model = build(
        args.arch,
        task=args.task,
        classes=classes,
        seed=args.seed,
        base=args.base,
        budget=args.budget,
        **options,
    )
    kwargs = _loop_kwargs(args, args.task)
    if args.init_encoder is not None:
        from ..training.pretrain import init_encoder

        info = init_encoder(model, args.init_encoder)
        if info["normalization"]:  # the encoder learned intensities normalised this way
            kwargs["normalization"] = info["normalization"]
        common.info(f"encoder initialised from {args.init_encoder} ({info['weights']:,} weights)")
    return _fit(args, model, data, val, kwargs, parent=None)


def _fit_pca(args, data, val, options: dict) -> int:
    """``--arch pca``: fitted in closed form (components = --base, or --option components=N)."""
    from ..training import fit_pca_iter

    if args.budget is not None:
        raise InputError("--arch pca is sized by its components: use --base N or --option components=N, not --budget.")
    unknown = set(options) - {"patch", "components", "max_patches"}
    if unknown:
        raise InputError(f"--arch pca takes the options patch, components and max_patches, not {', '.join(sorted(unknown))}.")
    if args.base is not None:
        options.setdefault("components", args.base)
    out = str(args.out)
    job = fit_pca_iter(data, val=val, checkpoint=out, seed=args.seed, **options)
    result = common.run_job(job, args, callback=_epoch_printer(args))
    _report(args, out, result.checkpoint, result)
    return 0


def _model_options(items) -> dict:
    """``["depth=3", "up=bilinear"]`` -> ``{"depth": 3, "up": "bilinear"}`` (values read as YAML)."""
    import yaml

    out = {}
    for item in items or []:
        if isinstance(item, dict):  # from a config file: a mapping is fine too
            out.update(item)
            continue
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise InputError(f"--option {item!r} must be KEY=VALUE, e.g. depth=3.")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise InputError(f"--option {item!r}: the value {value!r} cannot be read.") from None
    return out


def run_finetune(args: argparse.Namespace) -> int:
    model, meta = common.load_checkpoint(args.checkpoint)
    task = meta.get("task") or getattr(model, "task", "segment")
    if args.store is not None:
        if args.images is not None:
            raise common.UsageError("give either --store or --images/--masks, not both")
        from ..curation import Store
        from ..training import SliceDataset

        store = Store(common.existing(args.store, "Store"))
        rules = {"classes": int(getattr(model, "out_channels", 1)),
                 "annotation": "sparse" if args.sparse else "full"}
        data = SliceDataset.from_store(store, split="train", **rules)
        val = None
        if any(True for _ in store.samples(split="val")):
            val = SliceDataset.from_store(store, split="val", **rules)
    else:
        data, val = _datasets(args, task)
        if task == "segment":
            data, val = _read_masks(args, data, val, int(getattr(model, "out_channels", 1)))
    return _fit(args, model, data, val, _loop_kwargs(args, task), parent=str(args.checkpoint))


def _fit(args, model, data, val, kwargs: dict, *, parent: str | None) -> int:
    from .. import distributed

    env = distributed.ddp_env()
    main_rank = env is None or env.rank == 0
    out = str(args.out)
    callback = _epoch_printer(args) if main_rank else None
    if env is None:
        from ..training import train_iter

        val = "auto" if val is None else val  # hold out pixels to choose the checkpoint on
        job = train_iter(model, data, val=val, checkpoint=out, parent=parent, **kwargs)
        result = common.run_job(job, args, callback=callback)
    else:
        val = "auto" if val is None else val  # rank 0 holds out part of its shard
        job = distributed.ddp_train_iter(model, data, val=val, checkpoint=out, parent=parent, env=env, **kwargs)
        if not main_rank:
            args.no_progress = True
        result = common.run_job(job, args, callback=callback)
    if main_rank:
        best = result.checkpoint or out  # a TrainResult, from train_iter or ddp_train_iter
        _report(args, out, best, result)
    return 0


def _report(args, out: str, best, result) -> None:
    """Write the effective config beside ``out``; print the checkpoint and its best validation."""
    from ..config import write_effective

    cfg = write_effective(out, args._name, common.options_of(args), path_keys=TRAIN_PATHS)
    print(f"checkpoint: {best}")
    score = _best_score(result)
    if score:
        print(score)
    common.info(f"effective config: {cfg} (repeat with --config)")


def _epoch_printer(args):
    """Print one line per validation (epoch end) on stderr: readable in logs without a terminal."""

    def callback(event):
        val = (event.payload or {}).get("val")
        if not val:
            return
        epoch = event.payload.get("epoch")
        parts = [f"epoch {epoch}" if epoch is not None else event.stage]
        loss = event.payload.get("loss")
        if loss is not None:
            parts.append(f"loss {float(loss):.4f}")
        parts += [f"val {k} {v:.4f}" for k, v in _flat(val).items()]
        common.info("  ".join(parts))

    return callback


def _flat(val: dict) -> dict[str, float]:
    """``{"iou": {1: 0.8}, "dice": {1: 0.9}, "score": 0.8}`` -> ``{"iou": 0.8, "dice": 0.9}``."""
    out = {}
    for key, value in val.items():
        if key == "score":
            continue
        if isinstance(value, dict):
            for cls, v in value.items():
                out[key if len(value) == 1 else f"{key}[{cls}]"] = float(v)
        elif isinstance(value, int | float):
            out[key] = float(value)
    return out


def _best_score(result) -> str:
    """A line about the best validation epoch (the one the checkpoint holds)."""
    epoch = result.best_epoch
    entry = next((h for h in result.history if h.get("epoch") == epoch), None)
    if not entry or not entry.get("val"):
        return ""
    scores = ", ".join(f"{k} {v:.4f}" for k, v in _flat(entry["val"]).items())
    return f"best validation (epoch {epoch}): {scores}"
