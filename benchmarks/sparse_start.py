"""Start from a few strokes: a U-Net trained on simulated strokes beside ilastik's random forest.

Strokes are simulated from the EPFL/Lucchi ground truth on 6 training slices (0, 4, ..., 20):
3-pixel-wide pieces of the skeletons of the eroded mitochondria (label 2) and of the eroded
background (label 1), about 1% of those slices' pixels, in ilastik's convention (0 = not
annotated). Scored on the held-out slices 24-29 (foreground IoU and Dice over all their pixels):

- ``forest``: scikit-image ``multiscale_basic_features`` + a scikit-learn random forest on the
  stroke pixels (ilastik's pixel classifier);
- ``unet``: the U-Net (base 16) trained on the strokes for each ``--minutes`` budget (a fresh run
  per budget: the learning-rate schedule spans the budget);
- ``unet + AE encoder``: the same, its encoder first copied from a skip-less U-Net autoencoder
  trained for ``--pretrain-minutes`` on the whole unlabelled stack (slices 0-29, no labels).

    PYTHONPATH=. python benchmarks/sparse_start.py --threads 2              # the real run (~40 min)
    PYTHONPATH=. python benchmarks/sparse_start.py --rounds 2 --minutes 10 --pretrain-minutes 0 --no-forest
        # the issue's loop: train, look at the prediction, paint corrections where it is wrong, fine-tune
    PYTHONPATH=. python benchmarks/sparse_start.py --minutes 0.1 --pretrain-minutes 0.1 \
        --trees 10 --score-slices 24:25                                     # smoke
"""

from __future__ import annotations

import argparse
import inspect
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from _training_common import load, machine, probabilities, set_threads, table  # noqa: E402

from napari_segnets.sample_data import simulate_strokes  # noqa: E402

# False: the net is trained through the library (annotation="sparse" once the loop has it, the
# ignore mechanism before). True, once `train --sparse` is in main: the command line exactly as
# the README shows it (autoencoder included).
USE_CLI = True

TRAIN_SLICES = (0, 4, 8, 12, 16, 20)
COLUMNS = ["method", "budget (min)", "painted", "steps", "IoU", "Dice", "precision", "recall"]
NORMALIZATION = {"mode": "percentile", "low": 1.0, "high": 99.8}


def _scores(prob: np.ndarray, truth: np.ndarray) -> dict:
    from napari_segnets import metrics

    pred = (prob >= 0.5).astype(np.uint8)
    hit = float((pred.astype(bool) & (truth > 0)).sum())
    return {"IoU": float(metrics.iou(pred, truth)), "Dice": float(metrics.dice(pred, truth)),
            "precision": hit / max(float(pred.sum()), 1.0), "recall": hit / max(float((truth > 0).sum()), 1.0)}


def forest(
    image, strokes, test_img, *, trees: int, seed: int, threads: int
) -> tuple[np.ndarray, float]:
    """ilastik's pixel classifier: foreground probabilities of ``test_img`` and the seconds taken."""
    from functools import partial

    from skimage.feature import multiscale_basic_features
    from sklearn.ensemble import RandomForestClassifier

    t0 = time.perf_counter()
    feats = partial(multiscale_basic_features, sigma_min=0.7, sigma_max=16, num_sigma=6)
    x, y = [], []
    for img, s in zip(image, strokes):
        f = feats(img.astype(np.float32) / 255)
        x.append(f[s > 0])
        y.append(s[s > 0] == 2)
    rf = RandomForestClassifier(n_estimators=trees, n_jobs=threads or None, random_state=seed)
    rf.fit(np.concatenate(x), np.concatenate(y))
    prob = np.stack([
        rf.predict_proba(feats(img.astype(np.float32) / 255).reshape(-1, len(rf.feature_importances_)))[:, 1]
        .reshape(img.shape) for img in test_img
    ])  # fmt: skip
    return prob.astype(np.float32), time.perf_counter() - t0


def _cli(argv: list, threads: int) -> None:
    """Run ``napari-segnets`` in a subprocess (``--threads`` as OMP_NUM_THREADS)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads)) if threads else None
    cmd = [sys.executable, "-m", "napari_segnets", *(str(a) for a in argv), "--no-progress"]
    subprocess.run(cmd, check=True, env=env)


def pretrain(
    image, minutes: float, seed: int, out: Path, threads: int, base=16, crop=None, denoise=0.0,
    smoothness=None, loss=None, self_training=None,
) -> dict:
    """Train the skip-less U-Net autoencoder on the unlabelled stack; keep it at ``out``."""
    from napari_segnets import checkpoints
    from napari_segnets.models import build
    from napari_segnets.training.pretrain import pretrain_encoder

    if USE_CLI:  # as the README shows it
        import tifffile

        tifffile.imwrite(out.with_suffix(".tif"), image)
        _cli(["train", "--images", out.with_suffix(".tif"), "--task", "autoencode", "--arch", "unet",
              "--base", base, "--option", "skips=false", "--minutes", f"{minutes:g}", "--seed", seed,
              "--out", out, *(["--crop", crop] if crop else [])], threads)  # fmt: skip
        history = checkpoints.read_metadata(out).get("history") or [{}]
        return {"steps": history[-1].get("steps"), "seconds": 60 * minutes}
    return pretrain_encoder(
        build("unet", base=base), image, minutes=minutes, checkpoint=out, seed=seed, device="cpu",
        channels_last=True, normalization=NORMALIZATION, **({"crop": crop} if crop else {}),
        denoise=denoise,
    )  # fmt: skip


def train_library(
    image,
    strokes,
    minutes: float | None,
    seed: int,
    encoder: Path | None,
    steps=None,
    base=16,
    crop=None,
    smoothness=None,
    loss=None,
    self_training=None,
):
    """The net on the strokes through the library (the loop's defaults, no validation split).

    ``steps``: train exactly this many steps instead of ``minutes`` (equal work, any load).
    """
    import torch

    from napari_segnets.models import build
    from napari_segnets.training import SliceDataset, train, train_iter
    from napari_segnets.training.pretrain import init_encoder

    torch.manual_seed(seed)
    model = build("unet", base=base)
    if encoder is not None:
        init_encoder(model, encoder)
    if "annotation" in inspect.signature(train_iter).parameters:  # sparse mode is in the loop
        data, sparse = (image, strokes), {"annotation": "sparse"}
    else:  # before it: target = stroke - 1, unpainted = the ignore value
        target = np.where(strokes > 0, strokes.astype(np.int64) - 1, 255)
        data, sparse = SliceDataset(image, target, ignore_index=255), {}
    result = train(
        model, data, epochs=1 if steps else 100_000, steps_per_epoch=steps or 50, minutes=minutes,
        device="cpu", seed=seed, channels_last=True, normalization=NORMALIZATION, **sparse,
        **({"crop": crop} if crop else {}), smoothness=smoothness, loss=loss,
        **({"self_training": self_training} if self_training is not None else {}),
    )  # fmt: skip
    return result.model, result.steps


def _library_mode() -> str:
    from napari_segnets.training import train_iter

    if "annotation" in inspect.signature(train_iter).parameters:
        return "library, annotation='sparse'"
    return "library, ignore mechanism"


def train_cli(
    image,
    strokes,
    minutes: float,
    seed: int,
    encoder: Path | None,
    threads: int,
    base=16,
    crop=None,
    smoothness=None,
    loss=None,
    rounds=1,
    truth=None,
    correction=0.005,
    self_training=None,
):
    """``napari-segnets train --sparse`` as the README shows it, on TIFF files.

    ``rounds`` > 1: the issue's loop. After each round (``minutes / rounds`` each) the simulated
    user looks at the prediction of the stroke slices, paints about ``correction`` of their
    pixels more where it is wrong (:func:`~napari_segnets.sample_data.simulate_corrections`, from
    ``truth``), and fine-tunes the last round's model on all strokes (``finetune --sparse``).
    Returns the model, the steps of all rounds and the painted share at the end.
    """
    import tifffile

    from napari_segnets import checkpoints
    from napari_segnets.sample_data import simulate_corrections

    per = minutes / rounds
    opts = [*(["--crop", crop] if crop else []), *(["--loss", loss] if loss else []), *(["--smoothness", smoothness] if smoothness is not None else []),
            *([] if self_training is None else ["--self-training" if self_training else "--no-self-training"])]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tifffile.imwrite(tmp / "slices.tif", image)
        tifffile.imwrite(tmp / "strokes0.tif", strokes)
        argv = ["train", "--images", tmp / "slices.tif", "--masks", tmp / "strokes0.tif", "--sparse",
                "--arch", "unet", "--base", base, "--minutes", f"{per:g}", "--seed", seed,
                "--out", tmp / "net0.safetensors", *opts]  # fmt: skip
        if encoder is not None:
            argv += ["--init-encoder", encoder]
        _cli(argv, threads)
        steps = 0
        for r in range(1, rounds + 1):
            model, meta = checkpoints.load(tmp / f"net{r - 1}.safetensors")
            steps += (meta.get("training") or {}).get("steps") or 0
            if r == rounds:
                break
            pred = probabilities(model, image, NORMALIZATION, engine="slice") >= 0.5
            strokes = simulate_corrections(pred, truth, strokes, fraction=correction, seed=seed + r)
            tifffile.imwrite(tmp / f"strokes{r}.tif", strokes)
            _cli(["finetune", "--checkpoint", tmp / f"net{r - 1}.safetensors", "--images", tmp / "slices.tif",
                  "--masks", tmp / f"strokes{r}.tif", "--sparse", "--minutes", f"{per:g}", "--lr", "1e-3",
                  "--seed", seed, "--out", tmp / f"net{r}.safetensors", *opts], threads)  # fmt: skip
    return model, steps, float((strokes > 0).mean())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", default="5,10", help="net training budgets, comma-separated")
    ap.add_argument(
        "--pretrain-minutes",
        type=float,
        default=5.0,
        help="autoencoder budget for the pre-trained runs (0: skip them)",
    )
    ap.add_argument(
        "--pretrain-denoise",
        type=float,
        default=0.0,
        help="noise std added to the autoencoder's input (a denoising autoencoder)",
    )
    ap.add_argument(
        "--fraction", type=float, default=0.01, help="painted share of each stroke slice"
    )
    ap.add_argument(
        "--steps", type=int, default=None,
        help="train the nets for this many steps instead of --minutes, through the library "
        "(equal work under any load: for paired comparisons)",
    )  # fmt: skip
    ap.add_argument("--base", type=int, default=16, help="U-Net width (default 16, as the README)")
    ap.add_argument("--crop", type=int, default=None, help="training crop (default: the loop's)")
    ap.add_argument("--loss", default=None, help="`train --loss` (default: the CLI's)")
    ap.add_argument("--smoothness", type=float, default=None,
                    help="`train --smoothness` (default: the CLI's own default for --sparse)")
    ap.add_argument("--self-training", choices=("on", "off"), default=None,
                    help="`train --self-training` / `--no-self-training` (default: the CLI's own default for --sparse)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="rounds of train, look, paint corrections (about --correction of the pixels), "
                    "fine-tune; the budget is shared between them")
    ap.add_argument("--correction", type=float, default=0.005, help="painted share added per round")
    ap.add_argument("--keep", default=None, help="folder to keep each net's probabilities of the scored slices in")
    ap.add_argument("--no-forest", action="store_true", help="leave the random forest out")
    ap.add_argument("--dense", action="store_true",
                    help="paint every pixel of the stroke slices from the truth (the ceiling of the strokes: "
                    "the same slices fully annotated, the same path); no forest")
    ap.add_argument("--trees", type=int, default=100, help="random-forest trees (ilastik: 100)")
    ap.add_argument("--score-slices", default="24:30", help="held-out slices A:B to score on")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch/forest threads (0: default)")
    args = ap.parse_args(argv)
    set_threads(args)
    budgets = [float(m) for m in args.minutes.split(",")]
    net = {"base": args.base, "crop": args.crop, "smoothness": args.smoothness}
    if args.loss:
        net["loss"] = args.loss
    if args.self_training:
        net["self_training"] = args.self_training == "on"
    if USE_CLI and args.pretrain_denoise:
        ap.error("--pretrain-denoise is library-only (the CLI has no such flag)")
    a, b = (int(v) for v in args.score_slices.split(":"))

    print("machine:", machine())
    image, labels = load("lucchi")
    train_img, truth_train = image[list(TRAIN_SLICES)], labels[list(TRAIN_SLICES)]
    test_img, test_truth = image[a:b], labels[a:b]
    strokes = simulate_strokes(truth_train, fraction=args.fraction, seed=args.seed)
    if args.dense:  # every pixel painted: 1 = background, 2 = mitochondrion
        strokes = (truth_train > 0).astype(np.uint8) + 1
        args.no_forest = True
    painted = strokes > 0
    wrong = int((painted & ((strokes == 2) != (truth_train > 0))).sum())
    print(
        f"strokes on slices {list(TRAIN_SLICES)}: {painted.mean():.2%} of their pixels painted, "
        f"{(strokes == 2).sum() / painted.sum():.0%} of them on mitochondria, {wrong} disagree with the truth"
    )

    rows = []
    if not args.no_forest:
        prob, seconds = forest(
            train_img, strokes, test_img, trees=args.trees, seed=args.seed, threads=args.threads
        )
        rows.append({"method": f"random forest ({args.trees} trees, multiscale features)",
                     "budget (min)": f"{seconds / 60:.1f} (fit+predict)", **_scores(prob, test_truth)})  # fmt: skip
        print(table(rows[-1:], ["method", "budget (min)", "IoU", "Dice"]), flush=True)
    if args.steps:
        budgets = [None]

    encoders: list[tuple[str, Path | None]] = [("unet (random init)", None)]
    with tempfile.TemporaryDirectory() as tmp:
        if args.pretrain_minutes > 0:
            ae_path = Path(tmp) / "autoencoder.safetensors"
            info = pretrain(
                image,
                args.pretrain_minutes,
                args.seed,
                ae_path,
                args.threads,
                **net,
                denoise=args.pretrain_denoise,
            )
            print(
                f"autoencoder: U-Net-{args.base} without skips, denoise {args.pretrain_denoise:g}, "
                f"{info['steps']} steps in "
                f"{info['seconds'] / 60:.1f} min on slices 0-{image.shape[0] - 1} (no labels"
                f"{'; the CLI holds out its default validation slices' if USE_CLI else ''})", flush=True,
            )  # fmt: skip
            encoders.append((f"unet + AE encoder ({args.pretrain_minutes:g} min AE)", ae_path))
        for name, encoder in encoders:
            for minutes in budgets:
                painted_end = painted.mean()
                if USE_CLI and not args.steps:
                    model, steps, painted_end = train_cli(
                        train_img, strokes, minutes, args.seed, encoder, args.threads, **net,
                        rounds=args.rounds, truth=truth_train, correction=args.correction,
                    )
                else:
                    model, steps = train_library(
                        train_img, strokes, minutes, args.seed, encoder, steps=args.steps, **net
                    )
                prob = probabilities(model, test_img, NORMALIZATION, engine="slice")
                if args.keep:
                    import tifffile

                    Path(args.keep).mkdir(parents=True, exist_ok=True)
                    tag = f"{'ae' if encoder else 'random'}-{minutes:g}min-seed{args.seed}"
                    tifffile.imwrite(Path(args.keep) / f"prob-{tag}.tif", prob.astype(np.float32))
                budget = f"{args.steps} steps" if args.steps else f"{minutes:g}"
                if args.rounds > 1:
                    name_r = f"{name}, {args.rounds} rounds"
                else:
                    name_r = name
                if args.dense:
                    name_r += f", every pixel of the {len(TRAIN_SLICES)} slices painted"
                rows.append({"method": name_r, "budget (min)": budget, "steps": steps,
                             "painted": f"{painted_end:.2%}",
                             **_scores(prob, test_truth)})  # fmt: skip
                print(
                    table(rows[-1:], COLUMNS), flush=True
                )

    print(
        f"\nstrokes: {painted.mean():.2%} of slices {list(TRAIN_SLICES)} (seed {args.seed}); scored on "
        f"slices {a}-{b - 1} (pooled pixels, threshold 0.5); net: U-Net base {args.base}, crop {args.crop or 'default'}, "
        f"CPU, {'`train --sparse` CLI' if USE_CLI else _library_mode()}"
    )
    print(table(rows, COLUMNS))
    print("after:", machine())


if __name__ == "__main__":
    main()
