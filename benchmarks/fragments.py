"""Fragments: what dropping objects under a share of the typical object does to counts and object F1.

Short trainings predict many small pieces beside the real objects (on dark structures no mask
covered, or broken off a boundary), so counts come out two to eight times too high. ``napari-segnets
objects``, the Objects widget, ``review`` and ``evaluate --objects`` drop objects under
``FRAGMENT_FRACTION`` (0.1) of the typical object (the volume-weighted median size). This prints,
for each model and held-out slices, through the command line as the README shows it (``predict``,
then ``evaluate --objects --min-fraction F``):

- n_pred, object F1 at IoU 0.5 and the count error for F = 0 (every object), 0.05, 0.1, 0.2;
- how many true objects the same rule would drop from the ground truth (pieces cut by the stack's
  edges: the rule's cost).

A case is ``DATASET:CHECKPOINT:A:B`` (slices A..B-1 of the dataset are predicted and scored; they
must be held out of the model's training). Without ``--case`` a model per dataset is trained here
with the README's command (``default_recipe.py``'s split: EPFL 0-23 -> 24-29, Drosophila 0-13 ->
14-19) for ``--minutes``.

    python benchmarks/fragments.py --minutes 5                 # trains two models (~12 min)
    python benchmarks/fragments.py --case lucchi:mito.safetensors:24:30 --case drosophila:d.safetensors:14:20
    python benchmarks/fragments.py --minutes 0.1 --datasets lucchi   # a smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from default_recipe import SPLITS, _machine, readme_command, substitute  # noqa: E402

FRACTIONS = (0.0, 0.05, 0.1, 0.2)


def _cli_json(argv: list[str]) -> dict:
    from napari_segnets._cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        if main(argv) != 0:
            raise SystemExit(f"failed: napari-segnets {' '.join(argv)}")
    return json.loads(buf.getvalue())


def _train(dataset: str, minutes: float, seed: int, work: Path, image, mask) -> Path:
    import tifffile

    from napari_segnets._cli import main

    train, _ = SPLITS[dataset]
    tifffile.imwrite(work / f"{dataset}-train.tif", image[train], photometric="minisblack")
    masks = (mask[train] > 0).astype(np.uint8) * 255  # 0/255, as labs keep them
    tifffile.imwrite(work / f"{dataset}-train-masks.tif", masks, photometric="minisblack")
    out = work / f"{dataset}-{minutes:g}min-seed{seed}.safetensors"
    argv = substitute(readme_command(), images=work / f"{dataset}-train.tif",
                      masks=work / f"{dataset}-train-masks.tif", minutes=minutes, out=out)
    argv += ["--seed", str(seed), "--no-progress"]
    print("$ napari-segnets " + " ".join(str(a) for a in argv), flush=True)
    if main(argv) != 0:
        raise SystemExit("training failed")
    return out


def case_rows(name: str, checkpoint: Path, image, mask, a: int, b: int, work: Path) -> list[dict]:
    import tifffile

    from napari_segnets import objects
    from napari_segnets._cli import main

    test_img, test_mask = work / "test.tif", work / "test-masks.tif"
    tifffile.imwrite(test_img, image[a:b], photometric="minisblack")
    tifffile.imwrite(test_mask, (mask[a:b] > 0).astype(np.uint8) * 255, photometric="minisblack")
    pred = work / "pred.tif"
    if main(["predict", "--checkpoint", str(checkpoint), "--input", str(test_img), "--out", str(pred),
             "--no-progress"]) != 0:
        raise SystemExit("predict failed")
    truth_sizes = np.bincount(objects.label_objects(mask[a:b] > 0).ravel())[1:]
    rows = []
    for fraction in FRACTIONS:
        res = _cli_json(["evaluate", "--prediction", str(pred), "--truth", str(test_mask), "--objects",
                         "--min-fraction", f"{fraction:g}", "--json"])
        obj = res["objects"]
        lost = int(np.count_nonzero(truth_sizes < objects.fragment_cut(truth_sizes, fraction)))
        rows.append({"case": name, "F": fraction, "n_pred": obj["n_pred"], "n_truth": obj["n_truth"],
                     "F1": obj["f1"], "count error": obj["count_error"], "true objects dropped": lost,
                     "pixel IoU": res["overall"]["iou"]})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", action="append", default=[], metavar="DATASET:CKPT:A:B",
                   help="a trained model and the held-out slices A..B-1 it is scored on (repeatable)")
    p.add_argument("--minutes", type=float, default=5.0, help="training time per dataset without --case")
    p.add_argument("--datasets", nargs="+", default=sorted(SPLITS), choices=sorted(SPLITS),
                   help="datasets to train on without --case (default: all)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    from napari_segnets.io.public import load_public

    print(f"before: {_machine()}", flush=True)
    cases = []
    for text in args.case:
        dataset, _, rest = text.partition(":")
        parts = rest.rsplit(":", 2)
        if dataset not in SPLITS or len(parts) != 3 or not all(v.isdigit() for v in parts[1:]):
            p.error(f"--case {text!r}: give DATASET:CHECKPOINT:A:B with DATASET one of {', '.join(SPLITS)}")
        cases.append((dataset, Path(parts[0]), int(parts[1]), int(parts[2])))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = {}
        if not cases:
            for dataset in args.datasets:
                data[dataset] = load_public(dataset)[:2]
                _, test = SPLITS[dataset]
                ckpt = _train(dataset, args.minutes, args.seed, work, *data[dataset])
                cases.append((dataset, ckpt, test.start, test.stop))
        for i, (dataset, ckpt, a, b) in enumerate(cases):
            if dataset not in data:
                data[dataset] = load_public(dataset)[:2]
            image, mask = data[dataset]
            name = f"{dataset} {ckpt.stem} {a}-{b - 1}"
            (work / str(i)).mkdir()
            rows += case_rows(name, ckpt, np.asarray(image), np.asarray(mask), a, b, work / str(i))
            print(f"done: {name}", flush=True)
    cols = list(rows[0])
    print("\n# fragments: objects under F x the typical object dropped (evaluate --objects --min-fraction F)")
    print(f"# after: {_machine()}")
    print("| " + " | ".join(cols) + " |\n| " + " | ".join("---" for _ in cols) + " |")
    for r in rows:
        print("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) and k != "F" else f"{v:g}" if k == "F"
                                else str(v) for k, v in r.items()) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
