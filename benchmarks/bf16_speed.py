"""bf16 autocast against float32 on this CPU: training steps/s and prediction MP/s, in one run.

Same model (U-Net, default width), same seeded data, channels_last in both; the precision is the
only difference (``amp=False`` against ``amp="bf16"``). Also prints whether the two precisions
agree on the predicted labels. What ``amp=None`` (the default) picks here is printed too.

With ``--parity-steps N`` it also trains U-Net-16 for exactly N steps on EPFL/Lucchi slices 0-23 (the
raw 0/255 masks, the loop's default crop, batch and schedule, same seed) once in float32 and once under
bf16 autocast, predicts slices 24-29 in the same precision and prints both IoUs: accuracy at an equal
number of steps, so the difference is the precision's (and the chaos of two training trajectories).

    python benchmarks/bf16_speed.py                       # the real run (quiet machine)
    python benchmarks/bf16_speed.py --parity-steps 1200   # ... and IoU parity (~10 min more)
    python benchmarks/bf16_speed.py --steps 3 --size 256  # a smoke run
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np


def _machine() -> str:
    import torch

    from napari_segnets.devices import cpu_has_bf16

    load = os.getloadavg()
    return (f"{platform.node()}, {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
            f"native bf16: {cpu_has_bf16()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
            f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")


def _data(size: int, n: int, seed: int):
    from napari_segnets.sample_data import synthetic_stack

    image, labels = synthetic_stack((n, size, size), seed=seed)
    return image, labels["mitochondria"]


def train_rate(amp, image, mask, *, steps: int, crop: int, batch: int, seed: int) -> float:
    """Training steps per second (after 2 warm-up steps)."""
    from napari_segnets.models import build
    from napari_segnets.training import train_iter

    model = build("unet", seed=seed)
    job = train_iter(model, (image, mask), val=None, epochs=1, steps_per_epoch=steps + 2,
                     crop=crop, batch_size=batch, amp=amp, device="cpu", seed=seed)
    t = None
    for event in job:
        if event.stage == "train" and event.payload.get("step") == 2:
            t = time.perf_counter()
    return steps / (time.perf_counter() - t)


def predict_rate(amp, image, *, repeats: int, seed: int):
    """Prediction megapixels per second over ``image`` and the labels it gives."""
    from napari_segnets.inference import predict
    from napari_segnets.models import build

    model = build("unet", seed=seed).eval()
    predict(model, image[:1], device="cpu", amp=amp)  # warm-up
    t = time.perf_counter()
    for _ in range(repeats):
        prob = np.asarray(predict(model, image, device="cpu", amp=amp))
    seconds = (time.perf_counter() - t) / repeats
    return image.size / 1e6 / seconds, prob >= 0.5


def parity(amp, *, steps: int, seed: int, slices: tuple = (24, 30)) -> tuple[float, float]:
    """(IoU on EPFL slices 24-29, seconds) of U-Net-16 trained ``steps`` steps on slices 0-23 in ``amp``."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _training_common import load

    from napari_segnets import metrics
    from napari_segnets.inference import predict
    from napari_segnets.models import build
    from napari_segnets.training import train_iter

    image, labels = load("lucchi")
    a, b = slices
    model = build("unet", seed=seed)
    norm = {"mode": "percentile", "low": 1.0, "high": 99.8}
    t = time.perf_counter()
    for _ in train_iter(model, (image[:a], labels[:a]), val=None, epochs=1, steps_per_epoch=steps,
                        amp=amp, device="cpu", seed=seed, normalization=norm):
        pass
    prob = np.asarray(predict(model.eval(), image[a:b], device="cpu", amp=amp, normalization=norm))
    iou = float(metrics.iou((prob >= 0.5).astype(np.uint8), labels[a:b]))
    return iou, time.perf_counter() - t


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20, help="timed training steps (default 20)")
    p.add_argument("--size", type=int, default=1024, help="slice side for prediction (default 1024)")
    p.add_argument("--crop", type=int, default=128, help="training crop (default 128)")
    p.add_argument("--batch", type=int, default=4, help="training batch (default 4)")
    p.add_argument("--repeats", type=int, default=2, help="timed prediction runs (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--parity-steps", type=int, default=0,
                   help="also train N steps on EPFL 0-23 in each precision and score 24-29 (default 0: off)")
    args = p.parse_args(argv)

    import torch

    from napari_segnets.devices import autocast_dtype

    image, mask = _data(max(args.size, args.crop), 2, args.seed)
    rows = []
    labels = {}
    for name, amp in (("float32", False), ("bf16 autocast", "bf16")):
        steps = train_rate(amp, image, mask, steps=args.steps, crop=args.crop, batch=args.batch,
                           seed=args.seed)
        mps, labels[name] = predict_rate(amp, image[:1], repeats=args.repeats, seed=args.seed)
        rows.append((name, steps, mps))
    agree = float(np.mean(labels["float32"] == labels["bf16 autocast"]))
    print(f"# bf16 against float32, U-Net-16 on the CPU ({_machine()})")
    print(f"# training: batch {args.batch} x {args.crop}^2 crops; prediction: one {args.size}^2 slice")
    print("| precision | training steps/s | prediction MP/s |")
    print("| --- | --- | --- |")
    for name, steps, mps in rows:
        print(f"| {name} | {steps:.2f} | {mps:.2f} |")
    print(f"| bf16 / float32 | {rows[1][1] / rows[0][1]:.2f}x | {rows[1][2] / rows[0][2]:.2f}x |")
    print(f"# predicted labels agree on {agree:.4%} of pixels; default here (amp=None): "
          f"{autocast_dtype(torch.device('cpu'), None) or 'float32'}", flush=True)
    if args.parity_steps:
        print(f"# IoU parity: U-Net-16, {args.parity_steps} steps on EPFL/Lucchi slices 0-23 (0/255 masks), "
              f"seed {args.seed}, scored on slices 24-29 in the same precision")
        print("| precision | IoU | seconds (train + predict) |")
        print("| --- | --- | --- |")
        ious = {}
        for name, amp in (("float32", False), ("bf16 autocast", "bf16")):
            ious[name], seconds = parity(amp, steps=args.parity_steps, seed=args.seed)
            print(f"| {name} | {ious[name]:.3f} | {seconds:.0f} |", flush=True)
        print(f"| bf16 - float32 | {ious['bf16 autocast'] - ious['float32']:+.3f} | |")
        print(f"# after: {_machine()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
