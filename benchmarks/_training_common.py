"""Shared helpers for the training benchmarks: data, whole-slice prediction, machine description."""

from __future__ import annotations

import os
import platform
import time

import numpy as np


def load(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(image uint8 (Z, Y, X), labels 0/1) with foreground = mitochondrion (Lucchi) or membrane (ISBI)."""
    from napari_segnets.sample_data import load_public

    image, labels, _ = load_public(name)
    return np.asarray(image), np.asarray(labels).astype(np.uint8)


def predictor_name(engine: str = "predict") -> str:
    try:
        from napari_segnets.inference import predict  # noqa: F401
    except ImportError:
        return "inference.predict"
    if engine == "predict":
        return "inference.predict (one tile per slice, blend none)"
    return "inference.predict (default tiles)"


def probabilities(
    model, image: np.ndarray, normalization: dict, *, engine: str = "predict"
) -> np.ndarray:
    """Foreground probabilities (Z, Y, X) float32 for a stack, normalisation fitted on that stack.

    ``engine="predict"``: :func:`napari_segnets.inference.predict` with one tile per slice (the
    slice plus the model's halo, mirrored at the borders): the exact whole-slice prediction.
    ``engine="slice"``: ``predict`` with its default tiles.
    """
    from napari_segnets.inference import predict

    model.eval()
    if engine == "predict":
        m, halo = model.size_multiple, model.halo
        tile = tuple(-(-(s + 2 * halo) // m) * m for s in image.shape[-2:])
        return np.asarray(
            predict(model, image, device="cpu", output="probabilities", normalization=normalization,
                    tile=tile, blend="none"),
            dtype=np.float32,
        )  # fmt: skip
    return np.asarray(
        predict(model, image, device="cpu", output="probabilities", normalization=normalization),
        dtype=np.float32,
    )


def machine() -> str:
    import torch

    load1, load5, load15 = os.getloadavg()
    return (
        f"{platform.node()} {os.cpu_count()} CPUs, torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"load average {load1:.2f} {load5:.2f} {load15:.2f}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )


def table(rows: list[dict], columns: list[str]) -> str:
    """A Markdown table."""
    head = "| " + " | ".join(columns) + " |"
    sep = "| " + " | ".join("---" for _ in columns) + " |"
    body = ["| " + " | ".join(_fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def add_run_args(ap, *, lr_flag: str = "--lr", lr: float = 2e-3) -> None:
    """The crop, batch, learning-rate, seed and thread flags every training benchmark takes."""
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument(lr_flag, type=float, default=lr)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")


def set_threads(args) -> None:
    """Apply ``--threads`` (0 keeps torch's default)."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)


def run_with_snapshots(job, model, marks, budget: float):
    """Drive a training job; copy the weights as each of ``marks`` (minutes) passes, and at the end.

    Returns ``(result, snapshots)``, a snapshot being ``(minutes, steps, elapsed minutes, state_dict)``.
    """
    import copy

    from napari_segnets.progress import Events

    marks, snapshots, t0 = sorted(marks), [], time.perf_counter()
    run = Events(job)
    for event in run:
        if event.stage != "train":
            continue
        elapsed = (time.perf_counter() - t0) / 60
        while marks and elapsed >= marks[0] and marks[0] < budget:
            snapshots.append((marks.pop(0), event.done, elapsed, copy.deepcopy(model.state_dict())))
    result = run.result
    snapshots.append((budget, result.steps, result.seconds / 60, copy.deepcopy(model.state_dict())))
    return result, snapshots
