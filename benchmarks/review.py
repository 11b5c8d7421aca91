"""Review benchmark: does the queue find the wrong objects, and do the error bars hold? EPFL/Lucchi, drosophila.

A U-Net-16 trained on slices 0-11 (or ``--checkpoint``) segments slices 12-29; the queue
(:func:`napari_segnets.review.review`) ranks the objects; a simulated reviewer who knows the ground
truth fixes each object it is shown (the object is replaced by the truth objects it overlaps most;
deleted when there is none). Per seed (a model trained with that seed, and seeded random picks):

- orthoplane: foreground IoU of xy-only, xy/xz/yz orthoplane, flips+turn, and all views, and time;
- (a) precision of the queue's top 20% at finding wrong objects (best IoU with the truth < 0.5,
  false objects, merges of two truth objects) against the base rate, and against smallest-first;
- (b) foreground IoU and object F1 after reviewing k objects from the queue vs k at random;
- (c) coverage of the 95% intervals for count and volume fraction over repeated reviews that follow
  the queue with a random audit every ``--audit-every`` picks, against the truth and against the
  numbers after every predicted object is reviewed (the truth less the objects no prediction touches).

Other data (``--data drosophila``: Gerhard et al. 2013, ssTEM 4.6 x 4.6 x 50 nm, mitochondria; slices
0-7 train, 8-19 are reviewed, with the views of ``--views``; orthoplane makes no sense at 50 nm
sections). ``--train-data lucchi --data drosophila`` trains the model (and the novelty autoencoder, whose
reference slices are then the training data's) on one sample and reviews another: the cross-sample case
the novelty signal is for. ``--train-slices`` and ``--review-slices`` (``A:B``) change the split.

``--dump DIR`` writes per seed what (c) and (a') need (the queue's numeric columns and shape, the
simulated reviewer's wrong / count_after / voxels_after per object, the truth count and volume
fraction) to ``DIR/review-seedN.npz``; ``--from-dump DIR`` reruns only (c) and (a') from those files
in seconds, so the interval method can be checked without predicting anything.

Novelty (``--novelty-minutes M``, 0 = off): per seed an autoencoder (the README's: U-Net-16 without
skips, ``--task autoencode``, seeded) is trained for M minutes on the unlabelled slices 0-11 and the
``novelty`` signal (:mod:`napari_segnets.review.novelty`) is computed for the reviewed slices with
slices 0-11 as the reference. It never changes the queue or the other tables; (a) and (a') add, in
the same run and seed, the top 20% by novelty alone and by the default score with novelty as one
more rank (weight 1), and the fitted rule with novelty among its signals.

    PYTHONPATH=. python benchmarks/review.py --seeds 0 1 2 --minutes 5            # the real run
    PYTHONPATH=. python benchmarks/review.py --seeds 0 --minutes 0.3 --crop 256 --repeats 3 --ks 5 10 \
        --novelty-minutes 0.1  # smoke
    PYTHONPATH=. python benchmarks/review.py --seeds 0 1 2 --novelty-minutes 0 --review-n 10 --ks 5 10 15 \
        --checkpoint 'WORK/lucchi-0-11-seed{seed}.safetensors' --dump DUMPS       # models reused, dumps kept
    PYTHONPATH=. python benchmarks/review.py --from-dump DUMPS --review-n 10       # (c) and (a') only
    PYTHONPATH=. python benchmarks/review.py --data drosophila --views xy flip_y flip_x rot90 --review-n 20
    PYTHONPATH=. python benchmarks/review.py --train-data lucchi --data drosophila --views xy flip_y flip_x rot90
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from _training_common import load, machine, table  # noqa: E402

# per dataset: the slices a model trains on and the slices it reviews when both are that dataset
SPLITS = {"lucchi": ("0:12", "12:30"), "drosophila": ("0:8", "8:20")}


def parse_slices(text: str, depth: int) -> slice:
    """``"A:B"`` -> slice(A, B) within a stack of ``depth`` slices (refused when empty or outside)."""
    try:
        a, b = (int(v) for v in text.split(":"))
    except ValueError:
        raise SystemExit(f"slices {text!r}: write them as A:B, e.g. 0:12") from None
    if not 0 <= a < b <= depth:
        raise SystemExit(f"slices {text!r}: the stack has slices 0-{depth - 1}; give A:B with 0 <= A < B <= {depth}")
    return slice(a, b)


def span(s: slice) -> str:
    """slice(0, 12) -> "0-11" (for titles and file names)."""
    return f"{s.start}-{s.stop - 1}"


def train_model(image, labels, args, seed: int, out: Path, train: slice):
    import torch

    from napari_segnets import checkpoints
    from napari_segnets.models import build
    from napari_segnets.progress import drive
    from napari_segnets.training import SliceDataset, train_iter

    torch.manual_seed(seed)
    model = build("unet", base=args.base)
    drive(train_iter(model, SliceDataset(image[train], labels[train]), epochs=10_000, steps_per_epoch=50,
                     minutes=args.minutes, batch_size=2, crop=min(256, image.shape[-1]), lr=2e-3,
                     loss="bce_dice", schedule="cosine", device="cpu", seed=seed, foreground_crop=0.5,
                     channels_last=True, checkpoint=out))
    return checkpoints.load(out)


def train_autoencoder(image, args, seed: int, out: Path, train: slice):
    """The README's autoencoder (U-Net without skips, ``train --task autoencode``) on the unlabelled training slices."""
    from napari_segnets import checkpoints
    from napari_segnets.models import build
    from napari_segnets.progress import drive
    from napari_segnets.training import SliceDataset, train_iter

    ae = build("unet", task="autoencode", base=args.base, skips=False, seed=seed)
    drive(train_iter(ae, SliceDataset(image[train], None, name="unlabelled training slices"), task="autoencode",
                     epochs=10_000, steps_per_epoch=50, minutes=args.novelty_minutes, device="cpu", seed=seed,
                     foreground_crop=0.0, channels_last=True, checkpoint=out))
    return checkpoints.load(out)


def novelty_inputs(ae, meta, img, reference) -> dict:
    """``review_views_iter(novelty=...)``: the autoencoder's reconstructions of the stack and the reference."""
    from napari_segnets.inference import predict

    norm = meta.get("normalization")
    ae.eval()
    return {"reconstruction": predict(ae, img, output="reconstruction", normalization=norm, device="cpu"),
            "reference": reference,
            "reference_reconstruction": predict(ae, reference, output="reconstruction", normalization=norm,
                                                device="cpu"),
            "normalization": norm}


def without_novelty(q):
    """The queue table without the novelty columns (what the fitted rule sees when novelty is off)."""
    from napari_segnets.objects import ObjectTable

    return ObjectTable({k: v for k, v in q.columns.items() if not k.startswith("novelty")},
                       voxel_size=q.voxel_size, shape=q.shape)


def top_precision(wrong, score, m) -> float:
    """Share of wrong objects among the ``m`` highest ``score`` (ties by row order, as the queue's)."""
    return float(wrong[np.argsort(-np.asarray(score, float), kind="stable")[:m]].mean())


def truth_outcomes(pred, truth):
    """Per predicted object: wrong (bool), count_after, voxels_after, and its owned truth ids."""
    from napari_segnets.objects.scoring import overlaps

    pairs, iou, psize, tsize = overlaps(pred, truth)
    best = {p: 0.0 for p in psize}
    owner, owner_inter = {}, {}
    inter = iou * 0
    for k, (p, t) in enumerate(pairs.tolist()):
        inter[k] = iou[k] * (psize[p] + tsize[t]) / (1 + iou[k])
        best[p] = max(best[p], float(iou[k]))
        if inter[k] > owner_inter.get(t, 0):
            owner[t], owner_inter[t] = p, inter[k]
    covered = {}
    for k, (p, t) in enumerate(pairs.tolist()):
        if inter[k] >= 0.5 * tsize[t]:
            covered[p] = covered.get(p, 0) + 1
    owned = {p: [t for t, o in owner.items() if o == p] for p in psize}
    out = {}
    for p in psize:
        wrong = best[p] < 0.5 or covered.get(p, 0) >= 2
        out[p] = {"wrong": wrong, "count_after": len(owned[p]),
                  "voxels_after": int(sum(tsize[t] for t in owned[p])), "owned": owned[p]}
    return out


def corrected(pred, truth, outcomes, ids):
    """The labels after the reviewer fixed the objects ``ids`` from the truth."""
    lab = pred.astype(np.int64).copy()
    fix = np.isin(lab, list(ids))
    lab[fix] = 0
    top = int(lab.max()) + 1
    for p in ids:
        for t in outcomes[p]["owned"]:
            lab[truth == t] = top
            top += 1
    return lab


def scores(lab, truth) -> tuple[float, float]:
    from napari_segnets.objects import score_objects

    a, b = lab > 0, truth > 0
    iou = float((a & b).sum() / max((a | b).sum(), 1))
    return iou, float(score_objects(lab.astype(np.uint32), truth)["f1"])


def orthoplane_rows(model, image, truth_fg, norm, seed, names):
    from napari_segnets.inference.orthoplane import PLANES, predict_views

    rows, views, secs = [], {}, {}
    for v in names:
        t0 = time.perf_counter()
        views[v] = predict_views(model, image, (v,), normalization=norm, device="cpu")[v]
        secs[v] = time.perf_counter() - t0
        print(f"  view {v}: {secs[v]:.1f} s", flush=True)
    combos = {"xy": ("xy",), "orthoplane xy+xz+yz": PLANES, "flips+turn (TTA)": ("xy", "flip_y", "flip_x", "rot90"),
              f"all {len(views)} views": tuple(views)}
    seen = []
    for name, members in combos.items():
        if not set(members) <= set(views) or set(members) in seen:
            continue
        seen.append(set(members))
        p = np.mean([views[v] for v in members], axis=0)
        a = p >= 0.5
        iou = float((a & truth_fg).sum() / max((a | truth_fg).sum(), 1))
        rows.append({"seed": seed, "prediction": name, "IoU": iou, "seconds": sum(secs[v] for v in members),
                     "x time of xy": sum(secs[v] for v in members) / secs["xy"]})
    return rows, views, secs


def write_dump(path: Path, q, out, truth_count: int, truth_vf: float, seed: int) -> None:
    """What part (c) and (a') need, per seed: the queue's numeric columns, shape, the reviewer's outcomes, truth."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = q["id"].tolist()
    cols = {f"col_{k}": np.asarray(v) for k, v in q.columns.items() if np.asarray(v).dtype.kind in "biuf"}
    np.savez(path, **cols, shape=np.asarray(q.shape, np.int64),
             voxel_size=np.asarray(q.voxel_size if q.voxel_size else (), float),
             wrong=np.array([out[i]["wrong"] for i in ids], bool),
             count_after=np.array([out[i]["count_after"] for i in ids], np.int64),
             voxels_after=np.array([out[i]["voxels_after"] for i in ids], np.int64),
             truth_count=truth_count, truth_vf=truth_vf, seed=seed)
    print(f"seed {seed}: dump {path}", flush=True)


def read_dump(path: Path):
    """``write_dump``'s file -> (queue table, outcomes by id, truth count, truth volume fraction, seed)."""
    from napari_segnets.objects import ObjectTable

    d = np.load(path)
    q = ObjectTable({k[4:]: d[k] for k in d.files if k.startswith("col_")},
                    voxel_size=tuple(d["voxel_size"]) or None, shape=tuple(int(s) for s in d["shape"]))
    out = {int(i): {"wrong": bool(w), "count_after": int(c), "voxels_after": int(v)}
           for i, w, c, v in zip(q["id"], d["wrong"], d["count_after"], d["voxels_after"])}
    return q, out, int(d["truth_count"]), float(d["truth_vf"]), int(d["seed"])


def coverage(q, out, truth_count: int, truth_vf: float, seed: int, args) -> tuple[list, list]:
    """Part (c), the interval coverage over repeated reviews, and (a'), the rule fitted on each review."""
    from napari_segnets.review import (
        DEFAULT_WEIGHTS,
        audit_due,
        default_score,
        error_bars,
        fit_score,
        next_object,
    )

    novelty = "novelty" in q.columns
    q_plain = without_novelty(q)
    with_novelty = {**DEFAULT_WEIGHTS, "novelty": 1.0}
    ids = q["id"].tolist()
    n = len(ids)
    wrong = np.array([out[i]["wrong"] for i in ids], bool)
    full_count = sum(o["count_after"] for o in out.values())
    full_vf = sum(o["voxels_after"] for o in out.values()) / float(np.prod(q.shape))
    targets = {"count": truth_count, "count (all predicted reviewed)": full_count}
    vf_targets = {"volume fraction": truth_vf, "volume fraction (all predicted reviewed)": full_vf}
    hits = dict.fromkeys([*targets, *vf_targets], 0)
    enough, last, cover, refit, widths = 0, None, [], [], []
    for r in range(args.repeats):
        done, audits = [], []
        for _ in range(min(args.review_n, n)):
            audit = audit_due(len(done), args.audit_every)
            done.append(next_object(q, done, audit_every=args.audit_every, seed=1000 * seed + r))
            if audit:
                audits.append(done[-1])  # recorded as an audit, as the Objects widget records it
        eb = error_bars(q, {i: out[i] for i in done}, seed=r, n_boot=1000,
                        audited=None if args.positional_head else audits)
        fitted = fit_score(q_plain, {i: out[i]["wrong"] for i in done})
        rest = np.array([i not in set(done) for i in ids])
        if fitted is not None and rest.sum() >= 5:
            m = max(1, int(round(0.2 * rest.sum())))
            w_rest = wrong[rest]
            by_fit = np.argsort(-fitted.score(q_plain)[rest], kind="stable")[:m]
            refit.append({"seed": seed, "review": r, "reviewed": len(done), "left": int(rest.sum()),
                          "base rate left": float(w_rest.mean()),
                          "default top 20% of left": float(w_rest[:m].mean()),
                          "fitted top 20% of left": float(w_rest[by_fit].mean())})
            if novelty:
                fitted_n = fit_score(q, {i: out[i]["wrong"] for i in done})  # novelty among its signals
                refit[-1].update({
                    "default+novelty top 20% of left": top_precision(w_rest, default_score(q, with_novelty)[rest], m),
                    "fitted+novelty top 20% of left": top_precision(w_rest, fitted_n.score(q)[rest], m)})
        if not eb["enough"]:
            continue
        enough += 1
        for k, v in targets.items():
            hits[k] += eb["count_low"] <= v <= eb["count_high"]
        for k, v in vf_targets.items():
            hits[k] += eb["volume_fraction_low"] <= v <= eb["volume_fraction_high"]
        widths.append((eb["count_high"] - eb["count_low"], 100 * (eb["volume_fraction_high"] -
                                                                  eb["volume_fraction_low"])))
        last = eb
    cover.append({"seed": seed, "reviews": args.repeats, "with estimate": enough,
                  **{f"coverage {k}": v / enough if enough else float("nan") for k, v in hits.items()},
                  "median width count": float(np.median([w[0] for w in widths])) if widths else float("nan"),
                  "median width VF %": float(np.median([w[1] for w in widths])) if widths else float("nan"),
                  "truth count": truth_count, "all reviewed count": full_count, "truth VF %": 100 * truth_vf,
                  "all reviewed VF %": 100 * full_vf, "example": last["text"] if enough else "too few reviewed"})
    return cover, refit


def print_coverage(cover, refit, args, novelty: bool) -> None:
    print(f"\n## (c) Coverage of the 95% intervals ({args.review_n} objects per review, an audit every "
          f"{args.audit_every})\n")
    print(table(cover, ["seed", "reviews", "with estimate", "coverage count", "coverage count (all predicted "
                        "reviewed)", "coverage volume fraction", "coverage volume fraction (all predicted "
                        "reviewed)", "median width count", "median width VF %", "truth count",
                        "all reviewed count", "truth VF %", "all reviewed VF %", "example"]))
    print("\n## (a') The score fitted on each repeated review's decisions, on the objects not yet reviewed\n")
    nov_r = ["default+novelty top 20% of left", "fitted+novelty top 20% of left"] if novelty else []
    print(table(refit, ["seed", "review", "reviewed", "left", "base rate left", "default top 20% of left",
                        "fitted top 20% of left", *nov_r]) if refit else "(too few wrong or right objects to fit)")


def from_dump(folder: Path, args, argv) -> None:
    """(c) and (a') from ``--dump``'s files: the interval method checked without predicting anything."""
    wanted = None if args.seed is None and args.seeds is None else set([args.seed] if args.seed is not None
                                                                      else args.seeds)
    files = sorted(folder.glob("review-seed*.npz"))
    if not files:
        raise SystemExit(f"no review-seed*.npz in {folder}: make them with --dump {folder}")
    cover, refit, novelty = [], [], False
    for path in files:
        q, out, truth_count, truth_vf, seed = read_dump(path)
        if wanted is not None and seed not in wanted:
            continue
        novelty |= "novelty" in q.columns
        c_rows, r_rows = coverage(q, out, truth_count, truth_vf, seed, args)
        cover += c_rows
        refit += r_rows
    print(f"from the dumps in {folder}")
    print_coverage(cover, refit, args, novelty)
    print(f"\ncommand: {' '.join(sys.argv if argv is None else argv)}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="lucchi", choices=sorted(SPLITS), help="the stack reviewed")
    ap.add_argument("--train-data", default=None, choices=sorted(SPLITS),
                    help="the stack the model and autoencoder train on (default: --data)")
    ap.add_argument("--train-slices", default=None, metavar="A:B",
                    help="training slices (default: lucchi 0:12, drosophila 0:8; all when --train-data differs)")
    ap.add_argument("--review-slices", default=None, metavar="A:B",
                    help="reviewed slices (default: lucchi 12:30, drosophila 8:20)")
    ap.add_argument("--checkpoint", default=None,
                    help="a model trained on the training slices (else one is trained); '{seed}' in it is "
                         "replaced by each seed (reuse a run's lucchi-0-11-seed{seed}.safetensors)")
    ap.add_argument("--minutes", type=float, default=5.0, help="training budget per seed")
    ap.add_argument("--base", type=int, default=16, help="U-Net width when training")
    ap.add_argument("--views", nargs="+", default=None,
                    help="views for the queue (default: all six: xy xz yz flip_y flip_x rot90)")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0 1 2")
    ap.add_argument("--seed", type=int, default=None, help="one seed (same as --seeds N)")
    ap.add_argument("--crop", type=int, default=0, help="use only the central CROPxCROP of each slice (smoke)")
    ap.add_argument("--ks", type=int, nargs="+", default=[10, 25, 50])
    ap.add_argument("--random-draws", type=int, default=5, help="random reviews averaged per k")
    ap.add_argument("--repeats", type=int, default=20, help="repeated reviews for the interval coverage")
    ap.add_argument("--review-n", type=int, default=40, help="objects reviewed in each repeated review")
    ap.add_argument("--audit-every", type=int, default=3)
    ap.add_argument("--positional-head", action="store_true",
                    help="(c): error bars without knowing which picks were audits (logs written before "
                    "audits were recorded), for comparison")
    ap.add_argument("--min-size", type=float, default=1e6, help="nm^3, for predicted and truth objects")
    ap.add_argument("--novelty-minutes", type=float, default=2.0,
                    help="train an autoencoder on the training slices for this long per seed and measure the novelty "
                    "signal in (a) and (a'); 0 = off")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--workdir", default="/tmp/segnets-review-bench")
    ap.add_argument("--dump", default=None, metavar="DIR",
                    help="write per seed what (c) and (a') need (queue table, the reviewer's outcomes, truth "
                         "count and volume fraction) to DIR/review-seedN.npz")
    ap.add_argument("--from-dump", default=None, metavar="DIR",
                    help="run only (c) and (a') from DIR's dumps (seconds, no model; --repeats, --review-n, "
                         "--audit-every apply; --seeds picks the dumps, all when not given)")
    args = ap.parse_args(argv)
    seeds = [args.seed] if args.seed is not None else args.seeds or [0, 1, 2]
    if args.from_dump:
        from_dump(Path(args.from_dump), args, argv)
        return

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from napari_segnets import checkpoints, objects
    from napari_segnets.progress import drive
    from napari_segnets.review import (
        DEFAULT_WEIGHTS,
        default_score,
        novelty_signals,
        review_views_iter,
    )

    print("machine:", machine(), flush=True)
    from napari_segnets.io.public import DATASETS

    train_name = args.train_data or args.data
    image, labels = load(args.data)
    voxel = tuple(float(v) for v in DATASETS[args.data]["voxel_size"])
    t_image, t_labels = (image, labels) if train_name == args.data else load(train_name)

    def crop(a):
        if not args.crop:
            return a
        cy, cx = (a.shape[1] - args.crop) // 2, (a.shape[2] - args.crop) // 2
        return np.ascontiguousarray(a[:, cy:cy + args.crop, cx:cx + args.crop])

    image, labels, t_image, t_labels = crop(image), crop(labels), crop(t_image), crop(t_labels)
    review_sl = parse_slices(args.review_slices or SPLITS[args.data][1], len(image))
    train_sl = parse_slices(args.train_slices or (SPLITS[train_name][0] if train_name == args.data
                                                  else f"0:{len(t_image)}"), len(t_image))
    if train_name == args.data and train_sl.start < review_sl.stop and review_sl.start < train_sl.stop:
        raise SystemExit(f"training slices {span(train_sl)} and reviewed slices {span(review_sl)} overlap")
    tag = f"{train_name}-{span(train_sl)}"
    print(f"model: {tag} (voxel {voxel} nm reviewed); reviewed: {args.data} slices {span(review_sl)}", flush=True)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    img, lab = image[review_sl], labels[review_sl]
    truth = objects.label_objects(lab, voxel_size=voxel, min_size=args.min_size)
    ortho, prec, gain, cover, refit = [], [], [], [], []
    for seed in seeds:
        t0 = time.perf_counter()
        if args.checkpoint:
            model, meta = checkpoints.load(args.checkpoint.replace("{seed}", str(seed)))
        else:
            model, meta = train_model(t_image, t_labels, args, seed, work / f"{tag}-seed{seed}.safetensors", train_sl)
        model.eval()
        print(f"seed {seed}: model ready in {time.perf_counter() - t0:.0f} s", flush=True)
        names = tuple(args.views or ("xy", "xz", "yz", "flip_y", "flip_x", "rot90"))
        rows, views, secs = orthoplane_rows(model, img, lab > 0, meta.get("normalization"), seed, names)
        ortho += rows
        novelty, t_novelty = None, 0.0
        if args.novelty_minutes > 0:
            t0 = time.perf_counter()
            ae, ae_meta = train_autoencoder(t_image, args, seed, work / f"{tag}-ae-seed{seed}.safetensors", train_sl)
            print(f"seed {seed}: autoencoder ready in {time.perf_counter() - t0:.0f} s", flush=True)
            t0 = time.perf_counter()
            novelty = novelty_inputs(ae, ae_meta, img, t_image[train_sl])
            t_novelty = time.perf_counter() - t0
        t0 = time.perf_counter()
        rv = drive(review_views_iter(views, img, voxel_size=voxel, min_size=args.min_size))
        t_review = time.perf_counter() - t0 + sum(secs.values())
        q, pred = rv.table, rv.labels
        if novelty is not None:  # the columns review_views_iter(novelty=...) adds; the queue stays as it is
            t0 = time.perf_counter()
            for name, values in novelty_signals(pred, img, **novelty).items():
                q.set(name, np.array([values.get(i, np.nan) for i in q.ids.tolist()], float))
            t_novelty += time.perf_counter() - t0
        out = truth_outcomes(pred, truth)
        ids = q["id"].tolist()
        wrong = np.array([out[i]["wrong"] for i in ids])
        n = len(ids)
        top = max(1, int(round(0.2 * n)))
        base = float(wrong.mean()) if n else float("nan")
        small = np.argsort(np.asarray(q["voxels"]), kind="stable")[:top]
        p_queue = float(wrong[:top].mean()) if n else float("nan")
        prec.append({"seed": seed, "objects": n, "truth objects": int(truth.max()), "wrong": int(wrong.sum()),
                     "base rate": base, "top 20% precision": p_queue, "x base rate": p_queue / base if base else
                     float("nan"), "best possible x": min(1.0, wrong.sum() / top) / base if base else float("nan"),
                     "smallest 20% precision": float(wrong[small].mean()) if n else float("nan"),
                     "review (s)": t_review})
        with_novelty = {**DEFAULT_WEIGHTS, "novelty": 1.0}
        if novelty is not None and n:
            prec[-1].update({"novelty alone top 20%": top_precision(wrong, q["novelty"], top),
                             "default+novelty top 20%": top_precision(wrong, default_score(q, with_novelty), top),
                             "novelty (s)": t_novelty})
        rng = np.random.default_rng(seed)
        iou0, f10 = scores(pred, truth)
        for k in args.ks:
            k = min(k, n)
            qi, qf = scores(corrected(pred, truth, out, ids[:k]), truth)
            rnd = [scores(corrected(pred, truth, out, rng.choice(ids, k, replace=False).tolist()), truth)
                   for _ in range(args.random_draws)]
            gain.append({"seed": seed, "k": k, "IoU none": iou0, "IoU queue": qi,
                         "IoU random": float(np.mean([r[0] for r in rnd])), "F1 none": f10, "F1 queue": qf,
                         "F1 random": float(np.mean([r[1] for r in rnd])),
                         "queue ahead": bool(qi >= np.mean([r[0] for r in rnd]) and qf >= np.mean([r[1] for r in rnd]))})
        truth_count, truth_vf = int(truth.max()), float((truth > 0).mean())
        if args.dump:
            write_dump(Path(args.dump) / f"review-seed{seed}.npz", q, out, truth_count, truth_vf, seed)
        c_rows, r_rows = coverage(q, out, truth_count, truth_vf, seed, args)
        cover += c_rows
        refit += r_rows
        print(f"seed {seed}: done", flush=True)

    print(f"\n## Views, {args.data} slices {span(review_sl)}, model {tag} (foreground IoU, threshold 0.5)\n")
    print(table(ortho, ["seed", "prediction", "IoU", "seconds", "x time of xy"]))
    print("\n## (a) Top 20% of the queue: share of wrong objects (goal >= 2.5x the base rate; "
          "best possible x: a top 20% of wrong objects only)\n")
    nov_a = ["novelty alone top 20%", "default+novelty top 20%", "novelty (s)"] if args.novelty_minutes > 0 else []
    print(table(prec, ["seed", "objects", "truth objects", "wrong", "base rate", "top 20% precision",
                       "x base rate", "best possible x", "smallest 20% precision", "review (s)", *nov_a]))
    print("\n## (b) After reviewing k objects: queue vs random (mean of "
          f"{args.random_draws} draws)\n")
    print(table(gain, ["seed", "k", "IoU none", "IoU queue", "IoU random", "F1 none", "F1 queue", "F1 random",
                       "queue ahead"]))
    print_coverage(cover, refit, args, args.novelty_minutes > 0)
    print(f"\ncommand: {' '.join(sys.argv)}\nmachine: {machine()}")


if __name__ == "__main__":
    main()
