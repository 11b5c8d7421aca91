"""``evaluate`` (IoU, Dice, ... against ground truth), ``wavelets`` (power per level) and ``bench``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError
from . import common
from . import objects as objects_cli

MODES = ("binary", "multiclass", "membrane")  # metrics.score_stack(mode=)


def register(sub) -> None:
    e = common.command(
        sub,
        "evaluate",
        run_evaluate,
        help="score a prediction against ground truth (IoU, Dice, ...)",
        description="Score predicted labels against ground-truth labels, per slice and overall. "
        "Probability maps are thresholded first.",
    )
    common.add_required(e, "--prediction", metavar="P", help="predicted labels or probabilities")
    common.add_required(e, "--truth", metavar="T", help="ground-truth labels")
    e.add_argument("--slices", metavar="A:B", default=None, help="score slices A..B-1 only")
    # --mode, as metrics.score_stack(mode=) and the Score widget's job; "kind" already names what a
    # stack holds (io.kind.content: mask, labels, probabilities, image). --kind stays accepted, unlisted.
    e.add_argument("--mode", choices=MODES, default=None,
                   help="how masks are read: binary (nonzero = object), multiclass (class ids) or membrane "
                   "(IoU/Dice plus Rand error and VI); default: binary")
    e.add_argument("--kind", choices=MODES, default=None, help=argparse.SUPPRESS)
    e.add_argument("--ignore-index", type=int, default=None, help="ground-truth value of unlabelled pixels")
    e.add_argument("--threshold", type=float, default=0.5, help="for probability maps (default: 0.5)")
    e.add_argument("--binarize", action="store_true", default=False, help="score every non-zero label as one class, also with --mode multiclass "
                   "(binary and membrane read 0/255 masks so already)")
    e.add_argument("--per-slice", action="store_true", default=False, help="also print every slice's scores")
    e.add_argument("--json", action="store_true", default=False, help="print JSON instead of a table")
    objects_cli.add_evaluate_option(e)

    w = common.command(
        sub,
        "wavelets",
        run_wavelets,
        help="wavelet power per level of a stack, and of reconstructions beside it",
        description="Normalised wavelet power per level (finest first, approximation last), averaged "
        "over slices; with --reconstruction NAME=PATH, each model's power and its ratio to the original, "
        "plus MSE/PSNR/SSIM.",
    )
    common.add_required(w, "--input", metavar="IMG", help="the original image or stack")
    w.add_argument("--reconstruction", metavar="NAME=PATH", action="append", default=None,
                   help="a reconstruction of the input (repeat for several models)")
    w.add_argument("--slices", metavar="A:B", default=None, help="use slices A..B-1 only")
    w.add_argument("--wavelet", default="haar", help="any discrete wavelet PyWavelets knows (default: haar)")
    w.add_argument("--levels", type=int, default=None, help="levels (default: every level the size allows)")
    w.add_argument("--plot", metavar="FILE", default=None, help="save the power-per-level plot (.png/.svg)")
    w.add_argument("--mosaic", metavar="FILE", default=None, help="save level-1 mosaics of the first slice side by side")
    w.add_argument("--json", action="store_true", default=False, help="print JSON instead of a table")

    b = common.command(
        sub,
        "bench",
        run_bench,
        help="measure prediction speed (megapixels per second) on this machine",
        description="Time tiled prediction of a synthetic image with a checkpoint or a freshly built "
        "model; prints MP/s and the device used.",
    )
    b.add_argument("--checkpoint", metavar="CKPT", default=None, help="a checkpoint (default: build --arch)")
    b.add_argument("--arch", default="unet", help="architecture when no checkpoint is given (default: unet)")
    b.add_argument("--base", type=int, default=16, help="base channels when building (default: 16)")
    b.add_argument("--size", type=int, default=1024, help="image side in pixels (default: 1024)")
    b.add_argument("--tile", type=int, default=None, help="tile side (default: inference's choice)")
    b.add_argument("--repeats", type=int, default=3, help="timed runs after one warm-up (default: 3)")
    b.add_argument("--json", action="store_true", default=False, help="print JSON")
    common.add_device(b)


def _slab(array, slices, what):
    """The selected slices of a 2D/3D array, as numpy (Z, Y, X)."""
    import numpy as np

    arr = array[None] if array.ndim == 2 else array
    if arr.ndim != 3:
        raise InputError(f"The {what} has shape {tuple(array.shape)}; give a 2D image or a 3D stack.")
    r = common.parse_range(slices, arr.shape[0], "--slices")
    if r is not None:
        arr = arr[r.start : r.stop]
    return np.asarray(arr), (0 if r is None else r.start)


def _pair(pred, truth, slices, name):
    """The prediction and ground-truth slabs to score, the first slice's index and a note (or None).

    With ``--slices A:B`` both are cut to A..B-1, unless the prediction already holds exactly those
    B-A slices (``predict`` run on them only) while the truth has more: then only the truth is cut.
    """
    import numpy as np

    p3 = pred[None] if pred.ndim == 2 else pred
    t3 = truth[None] if truth.ndim == 2 else truth
    if tuple(pred.shape) == tuple(truth.shape) or p3.ndim != 3 or t3.ndim != 3 or p3.shape[1:] != t3.shape[1:]:
        if tuple(pred.shape) != tuple(truth.shape):
            raise InputError(
                f"The prediction has shape {tuple(pred.shape)} but the ground truth {tuple(truth.shape)}; "
                "they must match pixel for pixel."
            )
        pred, first = _slab(pred, slices, "prediction")
        return pred, _slab(truth, slices, "ground truth")[0], first, None
    depth, full = p3.shape[0], t3.shape[0]
    r = common.parse_range(slices, full, "--slices")
    if r is None:
        raise InputError(
            f"The prediction has {depth} slice(s) but the ground truth {full}; if the prediction covers "
            f"only some of them, say which with --slices A:B (B-A = {depth}), else give matching stacks."
        )
    if depth != len(r):
        raise InputError(
            f"The prediction has {depth} slice(s), the ground truth {full} and --slices {slices} selects "
            f"{len(r)}; give a prediction of the whole stack or of exactly the selected slices."
        )
    if np.issubdtype(p3.dtype, np.floating) and depth > 1:
        sums = np.asarray(p3, np.float64).sum(axis=0)
        if np.allclose(sums, 1.0, atol=1e-3):
            raise InputError(
                f"The prediction's {depth} planes sum to 1 at every pixel, so they may be class "
                "probabilities of one slice rather than slices; evaluate the labels "
                "(predict --output labels) instead."
            )
    note = (f"The prediction holds {depth} slice(s), as many as --slices {slices} selects: scoring "
            f"{Path(str(name)).name} against ground-truth slices {r.start}-{r.stop - 1}.")
    return np.asarray(p3), np.asarray(t3[r.start : r.stop]), r.start, note


def _mode(args) -> str:
    """--mode, or the older spelling --kind (also as a config key); binary when neither is given."""
    mode, old = getattr(args, "mode", None), getattr(args, "kind", None)
    if mode and old and mode != old:
        raise InputError(f"--mode {mode} and --kind {old} disagree; give one of them (--kind is --mode's old name).")
    return mode or old or "binary"


def run_evaluate(args: argparse.Namespace) -> int:
    import numpy as np

    from ..metrics import format_score, score_stack

    pred, _ = common.read_array(args.prediction, "Prediction", lazy=False)
    truth, _ = common.read_array(args.truth, "Ground truth", lazy=False)
    if pred.ndim == truth.ndim + 1 and np.issubdtype(pred.dtype, np.floating):
        pred = np.argmax(np.asarray(pred), axis=0)  # class probabilities (C, ...) from predict
    mode = _mode(args)
    pred, truth, first, note = _pair(pred, truth, args.slices, args.prediction)
    if note and args.json:
        common.info(note)  # stdout stays valid JSON
    elif note:
        print(note)
    if np.issubdtype(pred.dtype, np.floating):
        pred = (pred >= args.threshold).astype(np.uint8) if mode != "multiclass" else np.rint(pred).astype(np.int64)
    if args.objects and mode == "multiclass":
        raise InputError("--objects scores binary masks or object labels; leave out --mode multiclass.")
    objects = (objects_cli.evaluate_objects(pred, truth, args.ignore_index, args.min_fraction)
               if args.objects else None)
    if args.binarize:
        keep = truth == args.ignore_index if args.ignore_index is not None else None
        pred = (pred != 0).astype(np.uint8)
        truth = (truth != 0).astype(np.uint8)
        if keep is not None:
            truth[keep] = args.ignore_index
    result = score_stack(pred, truth, mode=mode, ignore_index=args.ignore_index)
    for entry in result["per_slice"]:
        entry["index"] = int(entry["index"]) + first
    if args.json:  # an undefined score (empty truth, empty prediction) is null: valid JSON
        common.print_json(_nan_to_null({**(result if args.per_slice else {"overall": result["overall"]}),
                                         **({"objects": objects} if objects else {})}))
        return 0
    overall = result["overall"]
    if args.per_slice:
        cols = [c for c in ("index", "iou", "dice", "f1", "pixel_accuracy", "rand_error", "vi") if any(c in r for r in result["per_slice"])]
        common.print_table(result["per_slice"], cols)
        print()
    for key in ("iou", "dice", "mean_iou", "mean_dice", "f1", "precision", "recall", "pixel_accuracy", "rand_error", "vi"):
        value = overall.get(key)
        if isinstance(value, int | float):
            print(f"{key:>10}: {format_score(value)}")
    if objects:
        objects_cli.print_object_scores(objects)
    return 0


def _nan_to_null(obj):
    if isinstance(obj, dict):
        return {k: _nan_to_null(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_nan_to_null(v) for v in obj]
    return None if isinstance(obj, float) and obj != obj else obj


def run_wavelets(args: argparse.Namespace) -> int:
    import numpy as np

    from .. import wavelets

    image, _ = common.read_array(args.input, "Input", lazy=False)
    original, _ = _slab(image, args.slices, "input")
    recons = {}
    for item in args.reconstruction or []:
        name, sep, path = str(item).partition("=")
        if not sep or not name or not path:
            raise InputError(f"--reconstruction {item!r} must be NAME=PATH, e.g. unet=recon_unet.zarr.")
        arr, _ = common.read_array(path, f"Reconstruction {name!r}", lazy=False)
        if tuple(arr.shape) == tuple(image.shape):
            recons[name] = _slab(arr, args.slices, f"reconstruction {name!r}")[0]
        elif tuple(arr.shape) == tuple(original.shape):  # made from the same --slices already
            recons[name] = arr
        else:
            raise InputError(
                f"Reconstruction {name!r} has shape {tuple(arr.shape)} but the input {tuple(image.shape)}"
                + (f" (or {tuple(original.shape)} for --slices {args.slices})" if args.slices else "")
                + "; they must match."
            )
    if recons:
        table = wavelets.compare(original.astype(np.float32), {k: v.astype(np.float32) for k, v in recons.items()},
                                 args.wavelet, args.levels)
    else:
        rows = common.run_job(wavelets.stack_power_iter(original, args.wavelet, args.levels), args)
        levels = rows.shape[1] - 1
        table = wavelets.Comparison(
            wavelet=str(args.wavelet),
            levels=levels,
            labels=wavelets.level_labels(levels),
            n_images=rows.shape[0],
            power={"original": (rows.mean(axis=0), rows.std(axis=0))},
        )
    if args.plot:
        common.info(f"plot: {wavelets.plot_power(table, args.plot)}")
    if args.mosaic:
        images = {"original": original[0], **{k: v[0] for k, v in recons.items()}}
        common.info(f"mosaics: {wavelets.plot_mosaics(images, args.mosaic, args.wavelet)}")
    if args.json:
        common.print_json(table.to_dict())
    elif recons:
        print(wavelets.format_table(table), end="")
    else:
        mean, std = table.power["original"]
        rows = [{"level": lab, "power": float(m), "std": float(s)} for lab, m, s in zip(table.labels, mean, std)]
        common.print_table(rows, ["level", "power", "std"])
    return 0


def run_bench(args: argparse.Namespace) -> int:
    import time

    import numpy as np

    from ..devices import describe_device, resolve_device
    from ..inference import predict

    if args.size < 16 or args.repeats < 1:
        raise InputError("--size must be at least 16 pixels and --repeats at least 1.")
    if args.checkpoint:
        model, _ = common.load_checkpoint(args.checkpoint)
        name = str(args.checkpoint)
    else:
        from ..models import available, build

        if args.arch not in available():
            raise InputError(f"Unknown architecture {args.arch!r}; choose one of {', '.join(available())}.")
        model = build(args.arch, base=args.base)
        name = f"{args.arch} (base {args.base})"
    device = resolve_device(args.device)
    model.eval()
    image = np.random.default_rng(0).integers(0, 255, (args.size, args.size), dtype=np.uint8)
    options = {"tile": args.tile} if args.tile else {}
    predict(model, image, device=str(device), **options)  # warm-up: allocation, kernel choice
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        predict(model, image, device=str(device), **options)
        times.append(time.perf_counter() - t)
    mp = args.size * args.size / 1e6
    best, median = min(times), float(np.median(times))
    result = {
        "model": name,
        "device": describe_device(device),
        "image": [args.size, args.size],
        "seconds_median": median,
        "mp_per_s_median": mp / median,
        "mp_per_s_best": mp / best,
    }
    if args.json:
        common.print_json(result)
    else:
        print(f"{name} on {result['device']}: {mp / median:.2f} MP/s (median of {args.repeats}), "
              f"{mp / best:.2f} MP/s best, {args.size}x{args.size} image")
    return 0
