"""The GPU path, proven on one lent CUDA machine: tests, predict throughput, 5 minutes of training.

Three parts, each in its own subprocess with its own time limit, so a crash, a hang or a CUDA
error in one part loses nothing of the others:

1. ``tests``: the ``gpu``-marked tests (tiled == untiled on CUDA, bf16/fp16 vs fp32, out-of-memory
   back-off under a real allocator cap, cancel mid-run, loading/training on CUDA).
2. ``throughput``: :func:`napari_segnets.inference.predict` on U-Net-16 at bf16 from host memory
   (a 2048 x 2048 slice and a 16 x 2048 x 2048 stack, uint8 in numpy) against the bare forward
   pass over the same windows (input already on the GPU, nothing else timed) and against MONAI's
   ``sliding_window_inference`` with the same model, windows, batch and Gaussian blending.
3. ``train``: the default recipe (``napari-segnets train --arch unet`` with its defaults, 5 minutes)
   on EPFL/Lucchi slices 0-19 (16-19 for its validation), scored on the held-out slices 20-29.

Everything goes to ``OUT/gpu_check.md`` (tables with the device name) and ``OUT/gpu_check.json``;
each part's log to ``OUT/gpu_check_<part>.log``.

    benchmarks/gpu_check.sh pack          # here: Lucchi into .gpu_data/, MONAI's wheel into .whl/
    benchmarks/gpu_check.sh               # there (carry .gpu_data and .whl): installs, then runs this
    PYTHONPATH=. python benchmarks/gpu_check.py --cpu-smoke --out /tmp/gpu_smoke   # a CPU dry run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("tests", "throughput", "train")
# Seconds per part on the GPU (training adds its minutes); typical: ~45 + ~45 + 5 min + ~40 s.
LIMITS = {"tests": 100, "throughput": 90, "train": 80}


# ---------------------------------------------------------------- shared helpers
def machine() -> dict:
    info = {"host": platform.node(), "python": platform.python_version(), "cpus": os.cpu_count()}
    try:
        info["load_avg"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            info["device"] = f"{p.name}, {p.total_memory / 2**30:.0f} GiB, cc {p.major}.{p.minor}"
            info["cuda"] = torch.version.cuda
        else:
            info["device"] = f"CPU ({platform.processor() or platform.machine()}), no CUDA"
    except Exception as exc:  # torch broken: say so rather than die
        info["device"] = f"torch unavailable: {exc}"
    return info


def table(rows: list[dict], cols: list[str]) -> str:
    def fmt(v):
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    cells = [[fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = lambda vals: "| " + " | ".join(v.ljust(w) for v, w in zip(vals, widths)) + " |"  # noqa: E731
    out = [line(cols), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    return "\n".join(out + [line(r) for r in cells])


def find_data(arg: str | None) -> Path | None:
    """A folder holding ``lucchi.npz`` (from ``gpu_check.sh pack``) or the EPFL TIFF folder."""
    candidates = [arg, os.environ.get("SEGNETS_DATA"), ROOT / ".gpu_data", ROOT.parent / "shared" / "data"]
    for c in candidates:
        if c and ((Path(c) / "lucchi.npz").is_file() or (Path(c) / "epfl_lucchi_mitochondria").is_dir()):
            return Path(c)
    return None


def load_lucchi(root: Path):
    """(image uint8 (30, 768, 1024), mask uint8 0/255)."""
    import numpy as np

    if (root / "lucchi.npz").is_file():
        with np.load(root / "lucchi.npz") as f:
            return f["image"], f["labels"]
    import tifffile

    folder = root / "epfl_lucchi_mitochondria"
    return (
        tifffile.imread(folder / "training_slices000-029.tif"),
        tifffile.imread(folder / "training_groundtruth_slices000-029.tif"),
    )


def pack(dest: Path) -> None:
    """Write ``dest/lucchi.npz`` (20 MB compressed) from ../shared/data for carrying to the GPU."""
    import numpy as np

    src = find_data(None)
    if src is None or not (src / "epfl_lucchi_mitochondria").is_dir():
        sys.exit("EPFL/Lucchi not found beside the checkout (../shared/data) nor in $SEGNETS_DATA.")
    image, labels = load_lucchi(src)
    dest.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(dest / "lucchi.npz", image=image, labels=labels)
    print(f"wrote {dest / 'lucchi.npz'} ({(dest / 'lucchi.npz').stat().st_size / 1e6:.1f} MB)")


def device_name(cpu: bool) -> str:
    return "cpu" if cpu else "cuda"


def sync(dev) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


# ---------------------------------------------------------------- part 1: tests
def part_tests(args) -> dict:
    files = sorted(
        str(p.relative_to(ROOT))
        for p in (ROOT / "tests").glob("test_*.py")
        if "mark.gpu" in p.read_text(encoding="utf-8", errors="replace")
    )
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rA", "-p", "no:cacheprovider", *files]
    if args.cpu_smoke:  # no CUDA here: the tests skip; show that they are collected and run
        cmd.append("--co")
    print("$", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    print(proc.stdout[-20000:], proc.stderr[-5000:], flush=True)
    outcome = {"passed": 0, "failed": 0, "skipped": 0, "error": 0}
    rows = []
    for line in proc.stdout.splitlines():
        for key in ("PASSED", "FAILED", "SKIPPED", "ERROR"):
            if line.startswith(key + " "):
                outcome[key.lower() if key != "ERROR" else "error"] += 1
                rows.append({"outcome": key, "test": line[len(key) + 1 :][:110]})
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-300:]
    return {"returncode": proc.returncode, "files": files, "summary": summary, "rows": rows,
            "seconds": round(time.perf_counter() - t0, 1), **outcome}  # fmt: skip


# ---------------------------------------------------------------- part 2: throughput
def _timed(fn, dev, repeats):
    """Best wall time of ``repeats`` runs after one warm-up."""
    fn()
    sync(dev)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(dev)
        best = min(best, time.perf_counter() - t0)
    return best


def part_throughput(args) -> dict:
    import numpy as np
    import torch

    from napari_segnets.models import build

    dev = torch.device(device_name(args.cpu_smoke))
    torch.manual_seed(args.seed)
    model = build("unet", base=16).eval()
    side, depth = (256, 2) if args.cpu_smoke else (2048, 16)
    rng = np.random.default_rng(args.seed)
    repeats = 1 if args.cpu_smoke else 3
    rows = []
    for shape in [(side, side), (depth, side, side)]:
        image = rng.integers(0, 256, size=shape, dtype=np.uint8)  # host memory, as read from disk
        rows.append(_throughput_case(model, image, dev, repeats))
        print(rows[-1], flush=True)
    return {"rows": rows, "model": "U-Net base 16 (random weights), bf16 autocast, channels_last"}


def _throughput_case(model, image, dev, repeats) -> dict:
    import torch

    from napari_segnets.inference import make_plan
    from napari_segnets.inference.engine import prepared_model
    from napari_segnets.progress import drive

    seen = {}
    pixels = image.size
    t_pred = _timed(lambda: drive(_noting(model, image, dev, seen)), dev, repeats)
    tile, windows = seen["tile"], seen["windows"]
    batch = 4 if dev.type == "cuda" else 1  # predict's default batch
    plan = make_plan(image.shape[-2:], tile=tile, halo=model.halo, multiple=model.size_multiple,
                     blend="gaussian")  # fmt: skip
    row = {
        "input": "x".join(map(str, image.shape)), "window": f"{tile[0]}x{tile[1]}",
        "windows": windows, "batch": batch, "predict MP/s": pixels / t_pred / 1e6,
    }  # fmt: skip
    # Bare forward: as many batches of windows of the same size, already on the device.
    with prepared_model(model, dev) as net:
        x = torch.randn((batch, 1, *tile), device=dev).contiguous(memory_format=torch.channels_last)
        steps = -(-windows // batch)

        def bare():
            with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16):
                for _ in range(steps):
                    torch.sigmoid(net(x).float())

        t_bare = _timed(bare, dev, repeats)
        row.update({"bare forward MP/s": pixels / t_bare / 1e6, "predict / bare": t_bare / t_pred})
        try:
            t_monai = _monai(net, image, plan, batch, dev, repeats)
            row.update({"MONAI MP/s": pixels / t_monai / 1e6, "predict / MONAI": t_monai / t_pred})
        except Exception as exc:
            row["MONAI"] = f"failed: {type(exc).__name__}: {str(exc)[:80]}"
    return row


def _noting(model, image, dev, seen):
    """predict_iter at bf16, noting the window size and count it chose."""
    from napari_segnets.inference import predict_iter

    job = predict_iter(model, image, device=dev.type, amp="bf16")
    try:
        while True:
            ev = next(job)
            if "tile" in ev.payload:
                seen["tile"], seen["windows"] = tuple(ev.payload["tile"]), ev.total
            yield ev
    except StopIteration as stop:
        return stop.value


def _monai(net, image, plan, batch, dev, repeats) -> float:
    """Seconds for MONAI's sliding_window_inference over the same windows (best of ``repeats``)."""
    import numpy as np
    import torch
    from monai.inferers import sliding_window_inference

    from napari_segnets.io.normalize import apply_normalization, fit_normalization
    from napari_segnets.io.normalize import normalization_spec as spec

    fitted = fit_normalization(image, spec())
    x = torch.from_numpy(np.ascontiguousarray(apply_normalization(image, fitted), dtype=np.float32))
    x = x.reshape(-1, 1, *image.shape[-2:])  # slices as the batch axis, on the host
    # MONAI's step is int(roi * (1 - overlap)): nudge the fraction so the step is exactly tile - overlap.
    overlap = [(o - 0.5) / t for o, t in zip(plan.overlap, plan.tile)]

    def predictor(t):
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            return torch.sigmoid(net(t.contiguous(memory_format=torch.channels_last)).float())

    def run():
        with torch.inference_mode():
            sliding_window_inference(
                x, roi_size=plan.tile, sw_batch_size=batch, predictor=predictor, overlap=overlap,
                mode="gaussian", sigma_scale=0.125, padding_mode="reflect", sw_device=dev, device="cpu",
            )  # fmt: skip

    return _timed(run, dev, repeats)


# ---------------------------------------------------------------- part 3: training
def part_train(args) -> dict:
    import numpy as np
    import tifffile
    import torch

    from napari_segnets import checkpoints, metrics
    from napari_segnets.inference import predict

    root = find_data(args.data)
    if root is None:
        raise FileNotFoundError("EPFL/Lucchi not found: run `benchmarks/gpu_check.sh pack` and carry .gpu_data")
    image, labels = load_lucchi(root)
    work = Path(tempfile.mkdtemp(prefix="gpu_check_train_"))  # not under OUT: only the report returns
    n_train, test = (20, slice(20, 30)) if not args.cpu_smoke else (6, slice(20, 22))
    tifffile.imwrite(work / "train.tif", image[:n_train])
    tifffile.imwrite(work / "train_masks.tif", labels[:n_train])
    ckpt = work / "default_recipe.safetensors"
    dev = device_name(args.cpu_smoke)
    val = f"{n_train - 4}:{n_train}"
    cmd = [sys.executable, "-m", "napari_segnets", "train", "--arch", "unet",
           "--images", str(work / "train.tif"), "--masks", str(work / "train_masks.tif"),
           "--val-slices", val, "--minutes", str(args.train_minutes), "--device", dev,
           "--seed", str(args.seed), "--out", str(ckpt), "--no-progress"]  # fmt: skip
    print("$", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t0
    print(proc.stdout[-8000:], proc.stderr[-8000:], flush=True)
    if proc.returncode != 0:
        raise RuntimeError(f"train exited {proc.returncode}: {proc.stderr.strip()[-300:]}")
    model, meta = checkpoints.load(ckpt)
    t1 = time.perf_counter()
    prob = np.asarray(predict(model, image[test], device=dev, output="probabilities"))
    t_pred = time.perf_counter() - t1
    pred = (prob >= 0.5).astype(np.uint8)
    truth = (labels[test] > 0).astype(np.uint8)
    hist = (meta or {}).get("history") or []
    return {
        "rows": [{
            "recipe": "napari-segnets train --arch unet (defaults)", "budget (min)": args.train_minutes,
            "wall incl. start (s)": round(seconds, 1), "epochs": len(hist),
            "held-out IoU (slices 20-29)" if not args.cpu_smoke else "held-out IoU (smoke)":
                float(metrics.iou(pred, truth)),
            "Dice": float(metrics.dice(pred, truth)), "predict test slices (s)": round(t_pred, 2),
            "torch threads": torch.get_num_threads(),
        }],  # fmt: skip
        "command": " ".join(cmd),
        "effective_config": _read(Path(str(ckpt) + ".config.yaml")),
        "config": {k: (meta or {}).get("config", {}).get(k) for k in ("arch", "base", "depth")},
    }


def _read(path: Path) -> str:
    return path.read_text() if path.is_file() else ""


# ---------------------------------------------------------------- driver
RUNNERS = {"tests": part_tests, "throughput": part_throughput, "train": part_train}


def run_part(args) -> None:
    """Child mode: run one part, write its JSON (or the error) to ``args.result``."""
    if args.cpu_smoke:
        import torch

        torch.set_num_threads(1)
    try:
        result = {"ok": True, **RUNNERS[args.part](args)}
    except Exception as exc:
        traceback.print_exc()
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
    Path(args.result).write_text(json.dumps(result, indent=1, default=str))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.environ.get("OUT") or "gpu_check_out", help="folder for the report")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    ap.add_argument("--train-minutes", type=float, default=5.0)
    ap.add_argument("--data", default=None, help="folder with lucchi.npz or epfl_lucchi_mitochondria/")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget", type=float, default=540,
                    help="seconds for everything (the device tool stops a command at 600): later parts get "
                    "what is left, training shortens its minutes to fit")
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on the CPU: checks the script itself")
    ap.add_argument("--pack", metavar="DIR", default=None, help="write DIR/lucchi.npz for carrying, and stop")
    ap.add_argument("--part", choices=PARTS, help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.pack:
        pack(Path(args.pack))
        return 0
    if args.cpu_smoke and args.train_minutes == 5.0:
        args.train_minutes = 0.1
    if args.part:
        run_part(args)
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    info = machine()
    print("machine:", info, flush=True)
    results = {"machine": info, "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    start = time.perf_counter()
    budget = args.budget * (3 if args.cpu_smoke else 1)
    for part in [p.strip() for p in args.parts.split(",") if p.strip()]:
        left = budget - (time.perf_counter() - start)
        if part == "train" and args.train_minutes * 60 + LIMITS["train"] > left:
            fitted = min(args.train_minutes, max(0.5, (left - LIMITS["train"]) / 60))
            print(f"   only {left:.0f} s left: training {fitted:.2f} instead of {args.train_minutes} minutes")
            args.train_minutes = round(fitted, 2)
        limit = LIMITS[part] + (args.train_minutes * 60 if part == "train" else 0)
        limit = min(limit * (3 if args.cpu_smoke else 1), max(30.0, left))
        res_file = out / f"gpu_check_{part}.json.tmp"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--part", part, "--result", str(res_file),
               "--out", str(out), "--seed", str(args.seed), "--train-minutes", str(args.train_minutes)]
        cmd += ["--data", args.data] if args.data else []
        cmd += ["--cpu-smoke"] if args.cpu_smoke else []  # fmt: skip
        print(f"== {part} (limit {limit:.0f} s)", flush=True)
        t0 = time.perf_counter()
        with open(out / f"gpu_check_{part}.log", "w") as log:
            try:
                proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=limit, cwd=ROOT)
                res = (json.loads(res_file.read_text()) if res_file.exists()
                       else {"ok": False, "error": f"exited {proc.returncode} without a result"})
            except subprocess.TimeoutExpired:
                res = {"ok": False, "error": f"stopped at its {limit:.0f} s limit"}
        res_file.unlink(missing_ok=True)
        res["seconds"] = round(time.perf_counter() - t0, 1)
        results[part] = res
        print(f"   {part}: {'ok' if res.get('ok') else res.get('error')} ({res['seconds']} s)", flush=True)
    results["machine_after"] = machine()
    (out / "gpu_check.json").write_text(json.dumps(results, indent=1, default=str))
    report = render(results, args)
    (out / "gpu_check.md").write_text(report)
    print(report)
    return 0


def render(results: dict, args) -> str:
    info = results["machine"]
    lines = [f"# gpu_check {'(CPU SMOKE RUN: not GPU numbers)' if args.cpu_smoke else ''}".rstrip(), "",
             f"device: **{info.get('device')}**; torch {info.get('torch')}, CUDA {info.get('cuda')}, "
             f"Python {info.get('python')}, {info.get('cpus')} CPUs, load average {info.get('load_avg')} "
             f"(after: {results['machine_after'].get('load_avg')}); seed {args.seed}; {results['started']}", ""]  # fmt: skip
    for part in PARTS:
        if part not in results:
            continue
        res = results[part]
        lines.append(f"## {part} ({res['seconds']} s)")
        if not res.get("ok"):
            lines += ["", f"FAILED: {res.get('error')}", ""]
            continue
        if part == "tests":
            lines += ["", f"`pytest -m gpu` on {', '.join(res['files'])}: {res['summary']}", ""]
            if res["rows"]:
                lines += [table(res["rows"], ["outcome", "test"]), ""]
        elif part == "throughput":
            cols = ["input", "window", "windows", "batch", "predict MP/s", "bare forward MP/s",
                    "predict / bare", "MONAI MP/s", "predict / MONAI"]  # fmt: skip
            lines += ["", res["model"] + "; input uint8 in host memory; predict includes "
                      "normalisation, transfers, Gaussian blending and the write-back; the bare forward "
                      "runs the same windows already on the device; MONAI gets the normalised float32 "
                      "stack on the host (sw_device cuda, output on the host). Best of 3 after a warm-up.",
                      "", table(res["rows"], cols), ""]  # fmt: skip
            lines += [f"MONAI: {r['MONAI']}" for r in res["rows"] if "MONAI" in r]
        else:
            cols = list(res["rows"][0])
            lines += ["", f"`{res['command']}`", "", table(res["rows"], cols), ""]
            if res.get("effective_config"):
                lines += ["effective config:", "```", res["effective_config"].strip(), "```", ""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
