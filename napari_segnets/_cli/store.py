"""``curate`` (add/list/check/remove samples of the curated training set) and ``export``."""

from __future__ import annotations

import argparse

from ..errors import InputError
from . import common


def register(sub) -> None:
    c = sub.add_parser(
        "curate",
        help="the curated training set: add corrected slices, list, check integrity",
        description="Manage the curated training-set store (a folder of TIFFs plus a manifest).",
    )
    actions = c.add_subparsers(dest="_action", metavar="ACTION", parser_class=common.Parser)
    c.set_defaults(_run=None)

    a = common.command(actions, "add", run_add, help="add a corrected slice (or region) with its mask",
                       prog_name="curate add")
    common.add_required(a, "--store", metavar="DIR", help="the store folder (created when missing)")
    common.add_required(a, "--image", metavar="IMG", help="the image or stack the slice comes from")
    common.add_required(a, "--mask", metavar="MASK", help="the corrected mask: same stack shape, or the slice/region alone")
    a.add_argument("--slice", type=int, default=0, help="slice index in the stack (default: 0)")
    a.add_argument("--region", metavar="Y0,X0,Y1,X1", default=None, help="a region of the slice instead of all of it")
    a.add_argument("--split", choices=("train", "val"), default="train", help="default: train")
    a.add_argument("--source", default=None, help="name recorded as the source (default: the image path)")
    a.add_argument("--checkpoint", metavar="CKPT", default=None, help="the checkpoint whose prediction was corrected")
    a.add_argument("--changed-pixels", type=int, default=None, help="how many pixels the person changed")
    a.add_argument("--ignore-index", type=int, default=None,
                   help="mask value of unchecked pixels (default: none; every pixel is labelled)")
    a.add_argument("--note", default="", help="free text")

    ls = common.command(actions, "list", run_list, help="list the live samples", prog_name="curate list")
    common.add_required(ls, "--store", metavar="DIR", help="the store folder")
    ls.add_argument("--split", choices=("train", "val"), default=None, help="only this split")
    ls.add_argument("--json", action="store_true", default=False, help="print JSON records and counts")

    ck = common.command(actions, "check", run_check, help="verify every file against the manifest hashes",
                        prog_name="curate check")
    common.add_required(ck, "--store", metavar="DIR", help="the store folder")
    ck.add_argument("--json", action="store_true", default=False, help="print the full report as JSON")

    rm = common.command(actions, "remove", run_remove, help="remove a sample (a recorded tombstone; files stay)",
                        prog_name="curate remove")
    common.add_required(rm, "--store", metavar="DIR", help="the store folder")
    common.add_required(rm, "--id", metavar="ID", help="the sample id (see `curate list`)")
    rm.add_argument("--reason", default="", help="why (recorded)")

    x = common.command(sub, "export", run_export, help="export a checkpoint to TorchScript, ONNX or the BioImage Model Zoo",
                       description="Export a checkpoint for use outside the plugin; the exported model "
                       "gives the same output.")
    common.add_required(x, "--checkpoint", metavar="CKPT", help="the checkpoint")
    common.add_required(x, "--out", metavar="FILE", help="output file (.pt for TorchScript, .onnx for ONNX, .zip for a zoo package)")
    x.add_argument("--format", choices=("torchscript", "onnx", "bioimageio"), default=None, help="default: from the suffix of --out")
    x.add_argument("--tile", type=int, default=256, help="example tile side for ONNX tracing (default: 256)")
    z = x.add_argument_group("bioimageio (BioImage Model Zoo package)")
    z.add_argument("--license", default=None, help="SPDX licence of the weights, e.g. CC-BY-4.0 or MIT (required)")
    z.add_argument("--author", action="append", default=None, help="an author's name (repeatable)")
    z.add_argument("--name", default=None, help="model name (default: the checkpoint's file name)")
    z.add_argument("--description", default=None, help="one-sentence description")
    z.add_argument("--test-image", metavar="IMG", default=None, help="image for the test tensors and cover (default: synthetic EM)")
    z.add_argument("--data-name", default=None, help="the training data's name")
    z.add_argument("--data-citation", default=None, help="how to cite the training data")
    z.add_argument("--data-url", default=None, help="the training data's URL or DOI")
    z.add_argument("--weights", default="pytorch_state_dict,torchscript,onnx",
                   help="weight formats, comma-separated (default: pytorch_state_dict,torchscript,onnx)")


def _store(path: str, *, create: bool):
    from ..curation import Store

    if not create:
        common.existing(path, "Store")
    return Store(path, create=create)


def _region(text):
    if text is None:
        return None
    try:
        values = [int(v) for v in str(text).split(",")]
    except ValueError:
        values = []
    if len(values) != 4:
        raise InputError(f"--region {text!r} must be four integers Y0,X0,Y1,X1.")
    return values


def run_add(args: argparse.Namespace) -> int:
    import numpy as np

    image, _ = common.read_array(args.image, "Image", lazy=True)
    mask, _ = common.read_array(args.mask, "Mask", lazy=True)
    if image.ndim == 3:
        if not 0 <= args.slice < image.shape[0]:
            raise InputError(f"--slice {args.slice} is outside the stack of {image.shape[0]} slices.")
        plane = np.asarray(image[args.slice])
    elif image.ndim == 2:
        if args.slice != 0:
            raise InputError(f"--slice {args.slice} given but {args.image} is a single 2D image; use 0.")
        plane = np.asarray(image)
    else:
        raise InputError(f"The image has shape {tuple(image.shape)}; give a 2D image or a 3D stack.")
    region = _region(args.region)
    if region is not None:
        y0, x0, y1, x1 = region
        if not (0 <= y0 < y1 <= plane.shape[0] and 0 <= x0 < x1 <= plane.shape[1]):
            raise InputError(f"--region {args.region} does not fit the slice of shape {plane.shape}.")
        part = plane[y0:y1, x0:x1]
    else:
        part = plane
    if tuple(mask.shape) == tuple(image.shape):  # the whole stack's mask: take the same slice/region
        m = np.asarray(mask[args.slice] if image.ndim == 3 else mask)
        m = m[region[0] : region[2], region[1] : region[3]] if region else m
    else:
        m = np.asarray(mask[0] if mask.ndim == 3 and mask.shape[0] == 1 else mask)
    if m.shape != part.shape:
        raise InputError(
            f"The mask has shape {tuple(mask.shape)}, which fits neither the stack {tuple(image.shape)} nor "
            f"the slice/region {part.shape}; give a mask of one of those shapes."
        )
    store = _store(args.store, create=True)
    record = store.add(
        part,
        m,
        source=args.source or str(common.existing(args.image, "Image").resolve()),
        index=args.slice,
        region=region,
        checkpoint=args.checkpoint,
        changed_pixels=args.changed_pixels,
        split=args.split,
        note=args.note,
        ignore_index=args.ignore_index,
    )
    print(f"added sample {record['id']} (version {record.get('version')}, {record['split']}) to {store.root}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    store = _store(args.store, create=False)
    records = store.samples(split=args.split)
    counts = store.counts()
    if args.json:
        common.print_json({"samples": records, "counts": counts})
        return 0
    rows = [
        {
            "id": r["id"],
            "version": r.get("version"),
            "split": r["split"],
            "source": r["source"],
            "index": r["index"],
            "region": ",".join(map(str, r["region"])) if r.get("region") else "",
            "changed": r.get("changed_pixels"),
            "time": r.get("time", ""),
        }
        for r in records
    ]
    if rows:
        common.print_table(rows, list(rows[0]))
    print(f"{counts['live']} live sample(s): {counts['train']} train, {counts['val']} val; "
          f"{counts['versions']} version(s), {counts['removed']} removed")
    return 0


def run_check(args: argparse.Namespace) -> int:
    store = _store(args.store, create=False)
    report = store.verify()
    if args.json:
        common.print_json(report)
    else:
        print(f"{store.root}: {report.get('records', 0)} record(s), {report.get('files_checked', 0)} file(s) checked")
        for problem in report.get("problems", []):
            print(f"  problem: {problem}")
    if not report.get("ok"):
        common.info(f"{store.root}: the store has problems (listed above)")
        return 1
    if not args.json:
        print("ok")
    return 0


def run_remove(args: argparse.Namespace) -> int:
    store = _store(args.store, create=False)
    store.remove(args.id, reason=args.reason)
    print(f"removed sample {args.id} (a tombstone is recorded; its files are kept)")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .. import checkpoints

    out = Path(args.out)
    suffixes = {".onnx": "onnx", ".pt": "torchscript", ".ts": "torchscript", ".zip": "bioimageio"}
    fmt = args.format or suffixes.get(out.suffix.lower())
    if fmt is None:
        raise InputError(f"Cannot tell the format from {out.name}; use a .pt, .onnx or .zip suffix, or --format.")
    if fmt == "bioimageio":
        return _export_bioimageio(args, out)
    model, _ = common.load_checkpoint(args.checkpoint)
    model.eval()
    if fmt == "onnx":
        path = checkpoints.export_onnx(model, out, tile=args.tile)
    else:
        path = checkpoints.export_torchscript(model, out)
    print(f"exported {args.checkpoint} as {fmt}: {path or out}")
    return 0


def _export_bioimageio(args: argparse.Namespace, out) -> int:
    from ..bioimageio import export_package

    if not args.license:
        raise InputError("Give the licence of the weights with --license (an SPDX id such as CC-BY-4.0 or MIT).")
    test_image = None
    if args.test_image:
        test_image, _ = common.read_array(args.test_image, "Test image")
    path = export_package(
        common.existing(args.checkpoint, "Checkpoint"), out, license=args.license, authors=args.author,
        name=args.name, description=args.description, test_image=test_image, data_name=args.data_name,
        data_citation=args.data_citation, data_url=args.data_url,
        weights=tuple(w.strip() for w in args.weights.split(",") if w.strip()),
    )  # fmt: skip
    print(f"exported {args.checkpoint} as a BioImage Model Zoo package: {path}")
    return 0
