"""The README's training command, exactly as written, on the raw EPFL/Lucchi files: IoU and Dice.

The command is read from README.md (the first ``napari-segnets train --images ... --masks ...``
line of the command-line section); only its file paths and its ``--minutes`` value are replaced:
slices 0-23 of ``training_slices000-029.tif`` and of its 0/255 ground truth (written to a
temporary folder byte for byte) are the training files, so the model picks its checkpoint on
slices it holds out of those 24 (the default split) and never sees slices 24-29, which are then
predicted with the README's default ``predict`` and scored with ``evaluate``.

    python benchmarks/default_recipe.py                      # 5, 15 and 30 minutes (the real run)
    python benchmarks/default_recipe.py --minutes 0.2        # a smoke run
    python benchmarks/default_recipe.py --dataset drosophila --minutes 5   # another sample (slices 0-13 -> 14-19)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
# --dataset -> (training slices, scored slices); the files are the project's public datasets
# (napari_segnets.io.public: lucchi = EPFL; drosophila = Gerhard et al. 2013, Drosophila larval VNC,
# ssTEM 4.6 x 4.6 x 50 nm: another sample and microscope)
SPLITS = {"lucchi": (slice(0, 24), slice(24, 30)), "drosophila": (slice(0, 14), slice(14, 20))}


def readme_command(readme: Path = REPO / "README.md") -> list[str]:
    """The README's first training command on images and masks, as argv (continuations joined)."""
    text = readme.read_text(encoding="utf-8").replace("\\\n", " ")
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("napari-segnets train ") and "--masks" in line:
            return shlex.split(line)[1:]
    raise SystemExit("README.md has no `napari-segnets train --images ... --masks ...` command")


def substitute(argv: list[str], **values) -> list[str]:
    """``argv`` with the values of the given options (``images=...``) replaced."""
    out = list(argv)
    for key, value in values.items():
        flag = "--" + key.replace("_", "-")
        if flag not in out:
            raise SystemExit(f"the README command has no {flag}")
        out[out.index(flag) + 1] = str(value)
    return out


def _machine() -> str:
    import torch

    from napari_segnets.devices import autocast_dtype, cpu_has_bf16

    load = os.getloadavg()
    precision = autocast_dtype(torch.device("cpu"), None) or "float32"
    return (f"{platform.node()}, {os.cpu_count()} CPUs, native bf16 {cpu_has_bf16()} (default "
            f"precision {precision}), torch {torch.__version__}, load average {load[0]:.2f} "
            f"{load[1]:.2f} {load[2]:.2f}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")


def run(minutes: float, seed: int, work: Path, files: dict, keep: Path | None = None) -> dict:
    from napari_segnets import checkpoints
    from napari_segnets._cli import main

    out = work / f"recipe-{minutes:g}min.safetensors"
    argv = substitute(readme_command(), images=files["train_img"], masks=files["train_mask"],
                      minutes=minutes, out=out)
    if seed:
        argv += ["--seed", str(seed)]
    print("$ napari-segnets " + " ".join(shlex.quote(a) for a in argv), flush=True)
    t0 = time.perf_counter()
    if main(argv + ["--no-progress"]) != 0:
        raise SystemExit("training failed")
    seconds = time.perf_counter() - t0
    if keep is not None:  # the checkpoint outlives the temporary folder (objects/review benchmarks)
        import shutil

        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy2(out, keep / out.name)
    pred = work / f"pred-{minutes:g}.tif"
    if main(["predict", "--checkpoint", str(out), "--input", str(files["test_img"]),
             "--out", str(pred), "--no-progress"]) != 0:
        raise SystemExit("predict failed")
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        main(["evaluate", "--prediction", str(pred), "--truth", str(files["test_mask"]), "--json"])
    overall = json.loads(buf.getvalue())["overall"]
    _, meta = checkpoints.load(out.with_name(out.stem + ".last.safetensors"))
    tr = meta["training"]
    return {"minutes": minutes, "iou": overall["iou"], "dice": overall["dice"],
            "steps": tr["steps"], "epochs": tr["epoch"], "best_epoch": tr["best_epoch"],
            "seconds": seconds}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", default="5,15,30", help="budgets, comma-separated (default 5,15,30)")
    p.add_argument("--seed", type=int, default=0, help="added as --seed when not 0 (default 0)")
    p.add_argument("--dataset", choices=sorted(SPLITS), default="lucchi",
                   help="lucchi: EPFL slices 0-23 -> 24-29 (default); drosophila: Gerhard 2013 slices 0-13 -> 14-19")
    p.add_argument("--data", type=Path, default=None,
                   help="the data root or the dataset's folder (default: $SEGNETS_DATA, then ../shared/data)")
    p.add_argument("--keep", type=Path, default=None, help="copy each trained checkpoint into this folder")
    args = p.parse_args(argv)

    import tifffile

    from napari_segnets.io.public import DATASETS, find_dataset

    train, test = SPLITS[args.dataset]
    folder, spec = find_dataset(args.dataset, args.data), DATASETS[args.dataset]
    image = tifffile.imread(folder / spec["image"])  # the files as the lab keeps them, byte for byte
    mask = tifffile.imread(folder / spec["labels"])
    assert set(np.unique(mask)) <= {0, 255}, "expected the raw 0/255 masks"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        files = {"train_img": work / "train.tif", "train_mask": work / "train_masks.tif",
                 "test_img": work / "test.tif", "test_mask": work / "test_masks.tif"}
        for key, arr, part in (("train_img", image, train), ("train_mask", mask, train),
                               ("test_img", image, test), ("test_mask", mask, test)):
            tifffile.imwrite(files[key], arr[part], photometric="minisblack")
        for minutes in [float(m) for m in args.minutes.split(",")]:
            rows.append(run(minutes, args.seed, work, files, args.keep))
    print(f"\n# default recipe (README command), {args.dataset} slices {train.start}-{train.stop - 1} -> "
          f"{test.start}-{test.stop - 1}, seed {args.seed}")
    print(f"# {_machine()}")
    print("| minutes | IoU | Dice | steps | epochs (best) | wall s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['minutes']:g} | {r['iou']:.3f} | {r['dice']:.3f} | {r['steps']} | "
              f"{r['epochs']} ({r['best_epoch']}) | {r['seconds']:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
