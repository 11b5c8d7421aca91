"""``objects`` (instances from a mask or probabilities), ``measure`` (one row per object) and the
object scores of ``evaluate --objects``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError
from . import common

PATHS = ("input", "output", "labels", "image", "summary")


def register(sub) -> None:
    o = common.command(
        sub,
        "objects",
        run_objects,
        help="label objects (3D instances) in a mask or probability map",
        description="Turn a mask (0/1, 0/255, bool) or probabilities (class-first, as predict writes "
        "them) into numbered objects: 3D connected components, optionally split where objects touch, "
        "filtered by size (nm^3) and border; specks of fewer than 8 voxels (4 in 2D) and fragments under "
        "a tenth of the typical object are dropped. "
        "Volumes read lazily (larger than memory) are labelled "
        "block by block into Zarr with the same result.",
    )
    common.add_required(o, "--input", metavar="MASK_OR_PROBS", help="mask or probabilities (any readable format)")
    common.add_required(o, "--out", "--output", dest="output", metavar="LABELS", help="labels file (.tif, .tiff or .zarr)")
    o.add_argument("--voxel-size", metavar="Z,Y,X", default=None,
                   help="nm per voxel (default: from the input file; needed for --min-size)")
    o.add_argument("--min-size", metavar="NM3", type=float, default=None,
                   help="remove objects smaller than this volume in nm^3 (nm^2 for 2D images)")
    o.add_argument("--min-voxels", metavar="N", type=int, default=None,
                   help="remove specks of fewer voxels (default: 8 = 2x2x2 in 3D, 4 in 2D or per slice; "
                   "0 keeps every object)")
    o.add_argument("--min-fraction", metavar="F", type=float, default=None,
                   help="remove fragments: objects under F x the typical object (the volume-weighted median "
                   "size; default 0.1, chosen on real predictions; 0 keeps every object)")
    o.add_argument("--split", nargs="?", const="distance", choices=("distance", "probability"), default=None,
                   help="split touching objects by a watershed on the distance transform (default) or "
                   "the probability map")
    o.add_argument("--split-depth", type=float, default=None,
                   help="how deep a valley must be to split there: nm for distance (default 3 voxels), "
                   "probability for probability (default 0.1)")
    o.add_argument("--drop-border", action="store_true", default=False, help="remove objects touching the border")
    o.add_argument("--per-slice", action="store_true", default=False,
                   help="label each slice on its own (unaligned 2D sections)")
    o.add_argument("--threshold", type=float, default=0.5, help="probability threshold (default: 0.5)")
    o.add_argument("--seed-threshold", type=float, default=None,
                   help="hysteresis: keep only objects reaching this probability somewhere (default: off)")
    o.add_argument("--channel", type=int, default=None,
                   help="foreground class of multi-class probabilities (default: the only or the second)")

    m = common.command(
        sub,
        "measure",
        run_measure,
        help="measure every object in physical units (CSV) and summarise (JSON)",
        description="One row per object: volume_nm3, surface_nm2 (marching cubes), equivalent "
        "diameter, sphericity, extent in z, bounding box, centroid, intensity, touches_border. "
        "The summary holds the count, density per um^3, volume fraction and the mean and quartiles.",
    )
    common.add_required(m, "--labels", metavar="LABELS", help="object labels (from `objects`)")
    m.add_argument("--image", metavar="IMAGE", default=None, help="the grey-level image, for intensities")
    common.add_required(m, "--out", "--output", dest="output", metavar="CSV", help="the table, one row per object (.csv)")
    m.add_argument("--summary", metavar="JSON", default=None, help="also write the summary here (.json)")
    m.add_argument("--voxel-size", metavar="Z,Y,X", default=None, help="nm per voxel (default: from the labels file)")


def parse_voxel(text: str | None, meta_voxel, ndim: int, what: str):
    """The voxel size from --voxel-size or else the file; the flag wins, with a warning when they differ."""
    from ..objects import check_voxel_size, parse_voxel_size

    if text is None:
        return check_voxel_size(meta_voxel, ndim) if meta_voxel is not None and len(meta_voxel) == ndim else None
    given = parse_voxel_size(text, ndim, what=what)
    if meta_voxel is not None and len(meta_voxel) == ndim and tuple(meta_voxel) != given:
        common.warn(f"{what} stores a voxel size of {tuple(meta_voxel)} nm; using --voxel-size {given}.")
    return given


def run_objects(args: argparse.Namespace) -> int:
    import numpy as np

    from .. import objects
    from ..io import write_labels

    out = Path(args.output)
    if out.suffix.lower() not in (".tif", ".tiff", ".zarr"):
        raise InputError(f"--out must end in .tif, .tiff or .zarr, not {out.name!r}.")
    data, meta = common.read_array(args.input, "Input")
    scale = probability_scale(args.input, data)
    spatial = len(objects.foreground(data, channel=args.channel, probability_scale=scale,
                                     what=Path(args.input).name).shape)
    voxel = parse_voxel(args.voxel_size, meta.get("voxel_size"), spatial, "the input")
    options = dict(voxel_size=voxel, min_size=args.min_size, min_voxels=args.min_voxels, drop_border=args.drop_border,
                   per_slice=args.per_slice, channel=args.channel, threshold=args.threshold,
                   seed_threshold=args.seed_threshold, probability_scale=scale,
                   min_fraction=objects.FRAGMENT_FRACTION if args.min_fraction is None else args.min_fraction,
                   report={})
    if not isinstance(data, np.ndarray) and spatial == 3:
        if out.suffix.lower() != ".zarr":
            raise InputError(
                f"{Path(args.input).name} is larger than memory and is labelled block by block; "
                "write the labels to a .zarr output."
            )
        count = common.run_job(objects.label_blockwise_iter(data, out, split=args.split, **options), args)
    else:
        labels = common.run_job(objects.label_objects_iter(np.asarray(data), split=args.split,
                                                           split_depth=args.split_depth, **options), args)
        count = int(labels.max()) if labels.size else 0
        write_labels(out, labels, {"voxel_size": voxel})
    note = objects.fragments_note(options["report"], voxel)
    if note:
        common.info(f"note: {note}")
    from ..config import write_effective

    write_effective(out, args._name, common.options_of(args), path_keys=PATHS)
    print(f"{count} objects -> {out}" + ("" if voxel else " (no voxel size: give --voxel-size to `measure`)"))
    return 0


def probability_scale(path, data) -> float | None:
    """An integer Zarr whose ``segnets`` attributes say probabilities holds p x the dtype's
    maximum: read it as probabilities. (``predict --output probabilities`` writes float32, which
    is read as probabilities anyway.)"""
    import numpy as np

    if np.dtype(data.dtype).kind not in "iu" or Path(path).suffix.lower() != ".zarr":
        return None
    try:
        import zarr

        attrs = dict(zarr.open(str(path), mode="r").attrs)
    except Exception:  # not a plain array store: no such marker
        return None
    info = attrs.get("segnets") or {}
    if info.get("output", info.get("kind")) == "probabilities":  # "kind": stores written before 12
        return float(np.iinfo(data.dtype).max)
    return None


def run_measure(args: argparse.Namespace) -> int:
    import numpy as np

    from .. import objects
    from ..io import atomic_write_text

    if Path(args.output).suffix.lower() != ".csv":
        raise InputError(f"--out must be a .csv file, not {Path(args.output).name!r}.")
    labels, meta = common.read_array(args.labels, "Labels")
    image = None
    if args.image:
        image, _ = common.read_array(args.image, "Image")
    voxel = parse_voxel(args.voxel_size, meta.get("voxel_size"), labels.ndim, "the labels")
    if voxel is None:
        raise InputError(
            f"{Path(args.labels).name} stores no voxel size; give it with --voxel-size Z,Y,X in nm (e.g. 40,5,5)."
        )
    if isinstance(labels, np.ndarray):
        refuse_mask(labels, Path(args.labels).name)
    table = common.run_job(objects.measure_iter(labels, image, voxel_size=voxel), args)
    table.to_csv(args.output)
    summary = table.summary()
    if args.summary:
        atomic_write_text(args.summary, objects.table.summary_json(summary) + "\n")
    print(f"{len(table)} objects -> {args.output}")
    print_summary(summary)
    return 0


def refuse_mask(labels, name: str) -> None:
    """A mask given where objects are expected would be measured as one giant object: refuse it."""
    import numpy as np
    from scipy import ndimage as ndi

    values = np.unique(labels)
    values = values[values != 0]
    if len(values) == 1:
        _lab, pieces = ndi.label(labels != 0)
        if pieces > 1:
            raise InputError(
                f"{name} is a mask (one value, {pieces} separate pieces), not objects; "
                "number them first with `napari-segnets objects`."
            )


def print_summary(summary: dict) -> None:
    for key, value in summary.items():
        if isinstance(value, dict):
            if value.get("mean") is not None:
                print(f"{key:>24}: mean {value['mean']:.4g}, quartiles {value['q25']:.4g} / "
                      f"{value['median']:.4g} / {value['q75']:.4g}")
        else:
            print(f"{key:>24}: {value:.6g}" if isinstance(value, float) else f"{key:>24}: {value}")


def add_evaluate_option(parser) -> None:
    """``evaluate --objects``: also score objects."""
    parser.add_argument("--objects", action="store_true", default=False,
                        help="also score objects: F1 at IoU 0.5, AP 0.5:0.95, count and volume-fraction errors "
                        "(the prediction numbered as `objects` does, fragments dropped)")
    parser.add_argument("--min-fraction", metavar="F", type=float, default=None,
                        help="with --objects: drop predicted fragments under F x the typical object "
                        "(default 0.1, as `objects`; 0 keeps them)")


def evaluate_objects(pred, truth, ignore_index=None, min_fraction=None) -> dict:
    """Object scores of a prediction against ground truth. Masks are numbered as 3D objects first:
    the prediction as ``napari-segnets objects`` does by default (fragments under ``min_fraction``
    of the typical object dropped; default :data:`~napari_segnets.objects.FRAGMENT_FRACTION`), the
    truth whole (``ignore_index`` pixels count as background). Label images are scored as given."""
    import numpy as np

    from .. import objects

    fraction = objects.FRAGMENT_FRACTION if min_fraction is None else min_fraction

    def instances(arr, drop=None):
        """Objects, and whether ``arr`` was a mask (a label image is taken as given)."""
        arr = np.asarray(arr)
        if drop is not None:  # unlabelled ground truth counts as background for objects
            arr = np.where(arr == drop, 0, arr)
        values = np.unique(arr)
        mask = len(values[values != 0]) <= 1
        return (objects.label_objects(arr) if mask else arr), mask

    report: dict = {}
    every_object, mask = instances(pred)  # labelled once; the fragment filter is the last step of `objects`
    pred_objects = every_object
    if mask:
        keep = objects.fragment_filter(np.bincount(every_object.ravel()), None, fraction, report)
        pred_objects = objects.canonical(every_object, keep)
    truth_objects, _ = instances(truth, ignore_index)
    result = objects.score_objects(pred_objects, truth_objects)
    result.pop("matches", None)
    if report.get("fragments"):  # say what they were worth
        kept = objects.score_objects(every_object, truth_objects)
        result["note"] = (f"{objects.fragments_note(report, how='`objects --min-fraction 0`')} With them: "
                          f"{kept['n_pred']} objects, F1 {kept['f1']:.3f}, count error {kept['count_error']:+d}.")
    return result


OBJECT_KEYS = ("n_pred", "n_truth", "precision", "recall", "f1", "ap", "ap50", "ap75", "count_error",
               "volume_fraction_error", "matched_volume_error")


def print_object_scores(result: dict) -> None:
    print("objects (IoU >= 0.5):")
    for key in OBJECT_KEYS:
        value = result.get(key)
        print(f"{key:>22}: {value:.4f}" if isinstance(value, float) else f"{key:>22}: {value}")
    if result.get("note"):
        print(result["note"])
