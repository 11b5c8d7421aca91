"""Training and reconstruction for the autoencoder study (:mod:`napari_segnets.study`).

The project's training loop is used when it can train autoencoders; otherwise a
minimal, seeded loop runs here: random crops with random flips and 90-degree
rotations, Adam, mean squared error. Both are progress generators.
"""

from __future__ import annotations

import time

import numpy as np

from .errors import InputError
from .progress import Events, Progress

_EVENT_EVERY = 10  # training steps per progress event: enough for a live loss curve


def _project_trainer():
    """The project's ``train_iter`` if it trains autoencoders with an MSE loss, else None."""
    try:
        import inspect

        from .training import SliceDataset, train_iter
    except ImportError:
        return None
    params = inspect.signature(train_iter).parameters
    if not {"task", "loss", "steps_per_epoch"} <= set(params):
        return None
    return train_iter, SliceDataset


def train_autoencoder(
    model, images, *, steps, minutes=None, batch_size=8, crop=128, lr=1e-3, seed=0,
    device="cpu", trainer="auto", stage="train",
):  # fmt: skip
    """Train ``model`` to reconstruct crops of ``images`` (Z, Y, X raw intensities).

    Both loops normalise with percentiles 1-99.8 fitted on the stack, draw seeded
    random crops with flips and 90-degree rotations only (no elastic, intensity or
    noise augmentation: the study compares architectures, not augmentations) and
    minimise the MSE with Adam. The project's loop adds its cosine learning-rate
    schedule; the minimal loop keeps ``lr`` constant.

    Yields
    ------
    Progress
        With ``payload={"loss": float, "step": int}``.

    Returns
    -------
    (str, dict)
        Which loop ran (``"project"`` or ``"minimal"``) and a history dict
        (``steps``, ``final_loss`` = mean loss of the last 20 steps, ``losses``).
    """
    project = _project_trainer() if trainer != "minimal" else None
    if trainer == "project" and project is None:
        raise InputError(
            "napari_segnets.training cannot train autoencoders here: use trainer='minimal'."
        )
    args = (model, images, steps, minutes, batch_size, crop, lr, seed, device, stage)
    if project is not None:
        history = yield from _train_project(project, *args)
        return "project", history
    history = yield from _train_minimal(*args)
    return "minimal", history


def _train_project(
    project, model, images, steps, minutes, batch_size, crop, lr, seed, device, stage
):
    from .io.normalize import normalization_spec

    train_iter, SliceDataset = project
    job = train_iter(
        model, SliceDataset(images, name="study"), task="autoencode", epochs=1,
        steps_per_epoch=steps, minutes=minutes, batch_size=batch_size, crop=crop, lr=lr,
        loss="mse", optimizer="adam", schedule="cosine", device=device, seed=seed,
        checkpoint=None, normalization=normalization_spec("percentile"),
        augment={"flips": True, "elastic_p": 0.0, "intensity_p": 0.0, "noise_p": 0.0},
    )  # fmt: skip
    losses = []
    run = Events(job)
    try:
        for event in run:
            if event.stage != "train":  # the loop's per-epoch summaries repeat the loss
                continue
            losses.append(float(event.payload.get("loss", np.nan)))
            if event.done == 1 or event.done % _EVENT_EVERY == 0 or event.done == event.total:
                msg = (
                    f"step {event.done}/{event.total} loss {np.nanmean(losses[-_EVENT_EVERY:]):.5f}"
                )
                yield Progress(stage, event.done, event.total, msg, dict(event.payload))
    finally:
        job.close()
    result = run.result
    if getattr(result, "model", None) is not None and result.model is not model:
        model.load_state_dict(result.model.state_dict())
    model.eval()
    return {
        "steps": int(result.steps),
        "final_loss": float(np.mean(losses[-20:])),
        "losses": losses,
    }


def _batch(rng, images, batch_size, crop):
    z, h, w = images.shape
    out = np.empty((batch_size, 1, crop, crop), np.float32)
    for i in range(batch_size):
        k, y, x = rng.integers(0, z), rng.integers(0, h - crop + 1), rng.integers(0, w - crop + 1)
        patch = images[k, y : y + crop, x : x + crop]
        patch = np.rot90(patch, rng.integers(0, 4))
        out[i, 0] = patch[:, ::-1] if rng.integers(0, 2) else patch
    return out


def normalise(stack: np.ndarray) -> np.ndarray:
    """Percentile 1-99.8 normalisation fitted on the whole stack (the project's default)."""
    from .io.normalize import apply_normalization, fit_normalization, normalization_spec

    return apply_normalization(stack, fit_normalization(stack, normalization_spec("percentile")))


def _train_minimal(model, images, steps, minutes, batch_size, crop, lr, seed, device, stage):
    import torch

    images = normalise(np.asarray(images))

    if crop > min(images.shape[1:]):
        raise InputError(
            f"Training crops of {crop} pixels do not fit images of {images.shape[1:]}."
        )
    model.check_input((batch_size, 1, crop, crop))
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)  # same batches, same order, for every model
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses, start, done = [], time.perf_counter(), 0
    for step in range(1, steps + 1):
        x = torch.from_numpy(_batch(rng, images, batch_size, crop)).to(device)
        loss = torch.nn.functional.mse_loss(model(x), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        done = step
        if step == 1 or step % _EVENT_EVERY == 0 or step == steps:
            msg = f"step {step}/{steps} loss {np.mean(losses[-_EVENT_EVERY:]):.5f}"
            yield Progress(stage, step, steps, msg, {"loss": losses[-1], "step": step})
        if minutes is not None and time.perf_counter() - start > 60 * minutes:
            break
    model.eval()
    return {"steps": done, "final_loss": float(np.mean(losses[-20:])), "losses": losses}


def reconstruct(model, crops, *, device="cpu", batch_size=4, stage="reconstruct"):
    """Run ``model`` on every crop (N, Y, X) under inference mode; returns float32 (N, Y, X)."""
    import torch

    model.to(device).eval()
    out = np.empty(crops.shape, np.float32)
    with torch.inference_mode():
        for i in range(0, len(crops), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(crops[i : i + batch_size, None], np.float32))
            out[i : i + batch_size] = model(x.to(device))[:, 0].float().cpu().numpy()
            yield Progress(stage, min(i + batch_size, len(crops)), len(crops))
    return out
