"""Per-call overhead of ``predict``: preparing the model afresh (before the cache) vs the cached copy.

For each model: the time to prepare the inference copy (deep copy + batch-norm folding +
channels_last) with and without the cache, and a whole ``predict`` call on a small image with
the cache cleared before each call (the old behaviour) and warm (the new one).

    PYTHONPATH=. python benchmarks/predict_overhead.py                 # U-Net-16, atrous, FCN-8s (VGG-16)
    PYTHONPATH=. python benchmarks/predict_overhead.py --smoke         # tiny models, one repeat
"""

from __future__ import annotations

import argparse
import os
import platform
import time


def best_of(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny models and one repeat")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from napari_segnets.inference import predict
    from napari_segnets.inference import prepared as prep
    from napari_segnets.models import build

    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = 1 if args.smoke else args.repeats
    specs = (
        [("unet", {"base": 4, "depth": 2}), ("fcn8s", {"base": 4})]
        if args.smoke
        else [("unet", {"base": 16}), ("atrous", {}), ("fcn8s", {"preset": "vgg16"})]
    )
    image = np.random.default_rng(args.seed).integers(0, 256, (64, 64), dtype=np.uint8)
    cpu = torch.device("cpu")
    rows = []
    for arch, kw in specs:
        torch.manual_seed(args.seed)
        model = build(arch, **kw).eval()
        mb = sum(t.numel() * t.element_size() for t in model.state_dict().values()) / 2**20

        def prepare(cache, model=model):
            with prep.prepared_model(model, cpu, cache=cache):
                pass

        def cold(model=model):
            prep.clear_prepared()
            predict(model, image, device="cpu")

        t_prep_cold = best_of(lambda: prepare(False), repeats)  # noqa: B023
        t_prep_warm = best_of(lambda: prepare(True), repeats)  # noqa: B023
        t_cold = best_of(cold, repeats)
        t_warm = best_of(lambda: predict(model, image, device="cpu"), repeats)  # noqa: B023
        rows.append([f"{arch} {kw or ''}".strip(), f"{mb:.0f}", f"{t_prep_cold * 1e3:.1f}",
                     f"{t_prep_warm * 1e3:.3f}", f"{t_cold * 1e3:.1f}", f"{t_warm * 1e3:.1f}",
                     f"{(t_cold - t_warm) * 1e3:.1f}"])  # fmt: skip
        prep.clear_prepared()
    cols = ["model", "weights MiB", "prepare, no cache (ms)", "prepare, cached (ms)",
            "predict 64x64, cold (ms)", "predict 64x64, cached (ms)", "saved per call (ms)"]  # fmt: skip
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    print(f"machine: {platform.node()} {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}; seed {args.seed}; "
          f"best of {repeats}")  # fmt: skip
    print("| " + " | ".join(c.ljust(w) for c, w in zip(cols, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(v.ljust(w) for v, w in zip(r, widths)) + " |")
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
