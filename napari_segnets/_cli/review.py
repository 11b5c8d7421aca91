"""``review``: rank a stack's objects, most likely wrong first (the review queue as CSV)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError
from . import common

PATHS = ("checkpoint", "input", "output", "labels_out", "autoencoder", "reference")


def register(sub) -> None:
    r = common.command(
        sub,
        "review",
        run,
        help="rank the predicted objects of a stack, most likely wrong first (CSV)",
        description="Predict the stack several ways (flips and a quarter turn of each slice; --views can "
        "add the xz and yz planes), number the objects of the mean prediction, and score each object by "
        "how much the views disagree on it, the uncertainty on its boundary, how it flickers between "
        "slices and how far its size and shape are from the others, weighed by what is at stake (about "
        "how many voxels a fix would change). The CSV lists rank, id, score, "
        "centroid (z, y, x), bounding box, the signals and the measurements; ids refer to the labels "
        "written with --labels-out.",
    )
    common.add_required(r, "--checkpoint", metavar="CKPT", help="segmentation checkpoint (.safetensors)")
    common.add_required(r, "--input", metavar="STACK", help="image or stack (any readable format)")
    common.add_required(r, "--out", "--output", dest="output", metavar="CSV", help="the queue, one row per object (.csv)")
    r.add_argument("--labels-out", metavar="LABELS", default=None,
                   help="write the objects the queue refers to (.tif, .tiff or .zarr)")
    r.add_argument("--voxel-size", metavar="Z,Y,X", default=None, help="nm per voxel (default: from the file)")
    r.add_argument("--views", default=None,
                   help="comma-separated views to compare: xy, flip_y, flip_x, rot90, xz, yz "
                   "(default: xy,flip_y,flip_x,rot90; xz,yz cost ~10x on thin stacks, for near-isotropic voxels only)")
    r.add_argument("--min-size", metavar="NM3", type=float, default=None,
                   help="drop objects smaller than this volume in nm^3 (nm^2 for 2D images)")
    r.add_argument("--min-voxels", metavar="N", type=int, default=None,
                   help="drop specks of fewer voxels (default: 8 = 2x2x2 in 3D, 4 in 2D; 0 keeps every object)")
    r.add_argument("--min-fraction", metavar="F", type=float, default=None,
                   help="drop fragments: objects under F x the typical object, as `objects` does with 0.1 (default 0: "
                   "the review shows every object, so its count intervals hold the small true ones too)")
    r.add_argument("--split", nargs="?", const="distance", choices=("distance", "probability"), default=None,
                   help="split touching objects (see `objects --split`)")
    r.add_argument("--threshold", type=float, default=0.5, help="probability threshold (default: 0.5)")
    r.add_argument("--decisions", metavar="JSONL", default=None,
                   help="a decision log (the Objects widget's <store>-review.jsonl): rank by a score fitted on "
                   "all its decisions (from 5 fixed/deleted and 5 accepted), and print the count and volume "
                   "fraction with 95%% intervals from those made on this queue's objects (same checkpoint, "
                   "input and options)")
    r.add_argument("--autoencoder", metavar="CKPT", default=None,
                   help="an autoencoder trained on the training slices (train --task autoencode): adds the "
                   "novelty column (its reconstruction error per wavelet level near each object against the "
                   "same on --reference); not part of the score. Needs --reference")
    r.add_argument("--reference", metavar="STACK", default=None,
                   help="the training slices novelty is measured against (any readable format)")
    r.add_argument("--tile", type=int, default=None, help="tile size in pixels (default: automatic)")
    common.add_device(r)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from .. import review
    from ..config import write_effective
    from ..io import write_labels
    from .objects import parse_voxel

    out = Path(args.output)
    if out.suffix.lower() != ".csv":
        raise InputError(f"--out must be a .csv file, not {out.name!r}.")
    if args.labels_out and Path(args.labels_out).suffix.lower() not in (".tif", ".tiff", ".zarr"):
        raise InputError(f"--labels-out must end in .tif, .tiff or .zarr, not {Path(args.labels_out).name!r}.")
    model, info = common.load_checkpoint(args.checkpoint, device="cpu")
    if getattr(model, "task", "segment") != "segment":
        raise InputError(f"{Path(args.checkpoint).name} is an autoencoder; review needs a segmentation model.")
    if (args.autoencoder is None) != (args.reference is None):
        raise InputError("--autoencoder and --reference go together: give the autoencoder and the training "
                         "slices it was trained on, or neither.")
    ae, ae_info, reference = None, {}, None
    if args.autoencoder:
        ae, ae_info = common.load_checkpoint(args.autoencoder, device="cpu")
        if getattr(ae, "task", None) != "autoencode":
            raise InputError(f"{Path(args.autoencoder).name} segments; --autoencoder needs a model trained "
                             "with --task autoencode.")
        reference = np.asarray(common.read_array(args.reference, "Reference")[0])
    image, meta = common.read_array(args.input, "Input")
    image = np.asarray(image)
    voxel = parse_voxel(args.voxel_size, meta.get("voxel_size"), image.ndim, "the input")
    views = None if not args.views else [v.strip() for v in args.views.split(",") if v.strip()]
    result = common.run_job(
        review.review_iter(model, image, voxel_size=voxel, views=views, normalization=info.get("normalization"),
                           threshold=args.threshold, min_size=args.min_size, min_voxels=args.min_voxels,
                           split=args.split, min_fraction=args.min_fraction,
                           device=args.device, tile=args.tile, autoencoder=ae, reference=reference,
                           autoencoder_normalization=ae_info.get("normalization")),
        args,
    )
    for note in result.notes:
        common.warn(note)
    estimate = None
    if args.decisions:
        table, estimate = _use_decisions(result.table, result.labels,
                                         common.existing(args.decisions, "Decisions"))
        result.table = table
    result.table.to_csv(out)
    if args.labels_out:
        write_labels(args.labels_out, result.labels, {"voxel_size": voxel})
    write_effective(out, args._name, common.options_of(args), path_keys=PATHS)
    print(f"{len(result.table)} objects ranked ({', '.join(result.views)}) -> {out}"
          + (f"; labels -> {args.labels_out}" if args.labels_out else ""))
    top = result.table.rows()[:5]
    if top:
        common.print_table(top, ["rank", "id", "score", "centroid_z_vox", "centroid_y_vox", "centroid_x_vox"],
                           floats=".3f")
    if estimate is not None:
        print(estimate["text"])
    return 0


def _use_decisions(table, labels, path):
    """Rank ``table`` by a rule fitted on the log, and the error bars of this queue's decisions.

    One log holds the decisions of several queues (the widget names each by
    :func:`~napari_segnets.review.queue_fingerprint` of its labels); those recorded without a
    queue id are taken to be this queue's, as before queue ids existed.
    """
    from .. import review

    log = review.DecisionLog(path)
    records = log.records()
    latest = log.latest(review.queue_fingerprint(labels)) or log.latest("")
    unknown = sorted(set(latest) - set(table.ids.tolist()))
    if unknown:
        raise InputError(
            f"{path.name} has decisions on objects {unknown[:5]} that this queue does not have; use the "
            "decisions made on this checkpoint's queue (ids change when the model or options change)."
        )
    fitted = review.fit_score_from_records(records)  # the widget's rule: every queue's decisions teach it
    if fitted is None and latest:  # decisions recorded without their queue row: fit on this queue's table
        fitted = review.fit_score(table, {i: r["decision"] != "accept" for i, r in latest.items()})
    decided = sum(1 for r in records if r.get("kind") == "decision")
    if fitted is None:
        common.warn(f"{decided} decisions: too few fixed/deleted or accepted objects to fit the score; "
                    "keeping the default rule.")
    else:
        common.info(fitted.describe())
        table = review.ranked(table, fitted.score)
    if decided and not latest:
        common.warn(f"none of the decisions in {path.name} were made on this queue's objects (another "
                    "checkpoint, input or options): no error bars.")
        return table, None
    return table, review.error_bars(table, review.decisions_for_error_bars(latest))
