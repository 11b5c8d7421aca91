"""``predict`` and ``autoencode``: run a checkpoint over a stack, chunk by chunk, resumably.

Both go through :func:`napari_segnets.distributed.predict_volume_iter`: in this process,
on a LocalCluster (``--workers N``) or on a running Dask cluster (``--scheduler ADDR``).
"""

from __future__ import annotations

import argparse

from ..errors import InputError
from . import common

PATHS = ("checkpoint", "input", "out")


def register(sub) -> None:
    for name, outputs, help_text in (
        ("predict", ("labels", "probabilities"), "segment a stack with a checkpoint"),
        ("autoencode", ("reconstruction",), "reconstruct a stack with an autoencoder checkpoint"),
    ):
        p = common.command(
            sub,
            name,
            run,
            help=help_text,
            description=f"{help_text[0].upper()}{help_text[1:]}. Reads any format napari-segnets reads; "
            "writes Zarr (or TIFF for small outputs). Killed runs resume where they stopped when "
            "started again with the same options.",
        )
        common.add_required(p, "--checkpoint", metavar="CKPT", help="a checkpoint (.safetensors)")
        common.add_required(p, "--input", metavar="IN", help="image or stack (TIFF, MRC, Zarr, HDF5, PNG folder)")
        common.add_required(p, "--out", metavar="OUT", help="where the result goes: .zarr (or .tif/.tiff)")
        p.add_argument("--key", default=None, help="dataset key inside HDF5/Zarr inputs")
        p.add_argument("--slices", metavar="A:B", default=None, help="only slices A..B-1 (the output holds those)")
        if len(outputs) > 1:
            p.add_argument("--output", type=_what(outputs), metavar="{" + ",".join(outputs) + "}",
                           default=None, help="what to compute (default: labels)")
            p.add_argument("--threshold", type=float, default=0.5, help="for binary labels (default: 0.5)")
        else:
            p.set_defaults(output=outputs[0])
        p.add_argument("--workers", type=int, default=None, help="run on a local Dask cluster with N worker processes")
        p.add_argument("--scheduler", metavar="ADDR", default=None, help="run on a Dask cluster (e.g. tcp://host:8786)")
        p.add_argument("--torch-threads", type=int, default=None, help="torch threads per worker (default: cores / workers)")
        p.add_argument("--chunks", metavar="Z,Y,X", default=None, help="chunk shape (default: 1,2048,2048)")
        p.add_argument("--halo", type=int, default=None, help="context pixels around each chunk (default: the model's)")
        p.add_argument("--tile", type=int, default=None, help="tile side for the model (default: inference's choice)")
        p.add_argument("--overlap", type=float, default=None, help="tile overlap (default: inference's)")
        p.add_argument("--batch-size", type=int, default=None, help="tiles per batch")
        p.add_argument("--blend", choices=("gaussian", "linear", "none"), default=None, help="tile blending")
        p.add_argument("--tta", action="store_true", default=False, help="test-time augmentation (flips)")
        p.add_argument("--overwrite", action="store_true", default=False, help="replace an output made with other options")
        common.add_device(p)


def _what(outputs):
    """``--output`` says what to compute; a path there is the old spelling of ``--out``."""

    def parse(text: str) -> str:
        if text in outputs:
            return text
        hint = " (the path goes in --out)" if any(c in text for c in "./\\") else ""
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(outputs)}{hint}")

    return parse


def _chunks(text) -> tuple[int, int, int] | None:
    if text is None:
        return None
    if isinstance(text, list | tuple):
        parts = list(text)
    else:
        parts = str(text).replace("x", ",").split(",")
    try:
        values = tuple(int(v) for v in parts)
    except ValueError:
        raise InputError(f"--chunks {text!r} is not three sizes; write Z,Y,X, e.g. 1,1024,1024.") from None
    if len(values) != 3 or min(values) < 1:
        raise InputError(f"--chunks {text!r} is not three positive sizes; write Z,Y,X, e.g. 1,1024,1024.")
    return values


def _slices(args) -> tuple[int, int] | None:
    """--slices A:B checked against the input's slice count (read lazily: metadata only)."""
    if args.slices is None:
        return None
    image, _ = common.read_array(args.input, "Input", key=args.key, lazy=True)
    if image.ndim != 3:
        raise InputError(f"--slices was given but {args.input} is a 2D image, not a stack.")
    r = common.parse_range(args.slices, image.shape[0], "--slices")
    return (r.start, r.stop)


def run(args: argparse.Namespace) -> int:
    from ..config import write_effective
    from ..distributed import predict_volume_iter

    if args.workers is not None and args.workers < 1:
        raise InputError(f"--workers must be 1 or more, got {args.workers}.")
    if args.workers is not None and args.scheduler is not None:
        raise common.UsageError("give --workers or --scheduler, not both")
    options = {
        "tile": args.tile,
        "overlap": args.overlap,
        "batch_size": args.batch_size,
        "blend": args.blend,
        "tta": args.tta or None,
    }
    if args.output in (None, "labels"):
        options["threshold"] = args.threshold
    job = predict_volume_iter(
        args.checkpoint,
        args.input,
        args.out,
        key=args.key,
        output=args.output,
        chunks=_chunks(args.chunks),
        halo=args.halo,
        workers=args.workers,
        scheduler=args.scheduler,
        device=args.device,
        torch_threads=args.torch_threads,
        slices=_slices(args),
        overwrite=args.overwrite,
        **options,
    )
    result = common.run_job(job, args)
    cfg = write_effective(args.out, args._name, common.options_of(args), path_keys=PATHS)
    note = f", {result.chunks_skipped} resumed" if result.chunks_skipped else ""
    print(
        f"{result.path}: {result.output} {tuple(result.shape)} "
        f"{result.dtype}; {result.chunks_computed}/{result.chunks_total} chunks computed{note} "
        f"in {result.seconds:.1f} s"
    )
    common.info(f"effective config: {cfg} (repeat with --config)")
    _strokes_note(args.checkpoint)
    return 0


def _strokes_note(checkpoint) -> None:
    """Say so when the model learnt from strokes (its boundaries were never shown to it)."""
    from .. import checkpoints
    from ..errors import CheckpointError

    try:
        meta = checkpoints.read_metadata(checkpoint)
    except (CheckpointError, OSError, ValueError):  # e.g. TorchScript: no training record to read
        return
    note = checkpoints.strokes_note(meta)
    if note:
        common.info(f"note: {note}")
