"""The training loop with files: validation, best checkpoint, cancel, resume, fine-tune, stopping rules."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segnets.errors import InputError
from napari_segnets.training import SliceDataset, finetune, train, train_iter
from napari_segnets.training.state import last_path, sidecar_path

torch = pytest.importorskip("torch")

from test_training import blobs, tiny  # noqa: E402  (shared tiny data and nets)

FAST = dict(crop=32, batch_size=2, device="cpu", augment=False)


def data_and_val():
    image, mask = blobs(4, size=64, seed=3)
    return SliceDataset(image[:3], mask[:3]), SliceDataset(image[3:], mask[3:])


def run_events(gen, stop_after=None):
    """Consume a training generator; with ``stop_after(event)`` true, close it there (a cancel)."""
    events = []
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return events, stop.value
        events.append(event)
        if stop_after is not None and stop_after(event):
            gen.close()
            return events, None


def test_validation_scores_preview_and_best_checkpoint(tmp_path):
    from napari_segnets import checkpoints

    data, val = data_and_val()
    ckpt = tmp_path / "best.safetensors"
    events, result = run_events(
        train_iter(
            tiny(), data, val=val, epochs=3, steps_per_epoch=4, lr=3e-3, checkpoint=ckpt, **FAST
        )
    )
    epoch_events = [e for e in events if e.stage == "epoch"]
    assert len(epoch_events) == 3
    v = epoch_events[-1].payload["val"]
    assert set(v["iou"]) == {"1"} and 0.0 <= v["dice"]["1"] <= 1.0
    assert epoch_events[-1].payload["preview"].shape == (64, 64)
    scores = [h["val"]["score"] for h in result.history]
    assert result.best_score == max(scores) and result.checkpoint == ckpt
    model, meta = checkpoints.load(ckpt)
    assert meta["history"][-1]["epoch"] == result.best_epoch
    assert meta["normalization"]["mode"] == "percentile" and meta["task"] == "segment"
    assert last_path(ckpt).exists() and sidecar_path(ckpt).exists()


def test_cancel_mid_epoch_leaves_a_loadable_checkpoint(tmp_path):
    from napari_segnets import checkpoints

    data, val = data_and_val()
    ckpt = tmp_path / "best.safetensors"
    gen = train_iter(tiny(), data, val=val, epochs=5, steps_per_epoch=3, checkpoint=ckpt, **FAST)
    events, _ = run_events(
        gen, stop_after=lambda e: e.stage == "train" and e.done == 5
    )  # inside epoch 2
    assert [e.stage for e in events].count("epoch") == 1
    model, meta = checkpoints.load(ckpt)
    assert len(meta["history"]) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no half-written files
    x = torch.zeros(1, 1, 32, 32)
    assert model(x).shape == (1, 1, 32, 32)


def test_resume_continues_exactly_where_it_stopped(tmp_path):
    from napari_segnets import checkpoints

    data, val = data_and_val()
    kw = dict(FAST, val=val, steps_per_epoch=3, seed=2, schedule="cosine")
    train(tiny(seed=4), data, epochs=2, checkpoint=tmp_path / "full.safetensors", **kw)
    ckpt = tmp_path / "run.safetensors"
    # the same run, cancelled right after its first epoch
    gen = train_iter(tiny(seed=4), data, epochs=2, checkpoint=ckpt, **kw)
    run_events(gen, stop_after=lambda e: e.stage == "epoch")
    resumed = train(
        None, data, epochs=2, resume=last_path(ckpt), checkpoint=tmp_path / "r.safetensors", **kw
    )
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    # the same crops, optimizer moments and schedule: bitwise the uninterrupted run's last weights
    full, _ = checkpoints.load(last_path(tmp_path / "full.safetensors"))
    again, _ = checkpoints.load(last_path(tmp_path / "r.safetensors"))
    ref = full.state_dict()
    for k, v in again.state_dict().items():
        assert torch.equal(v, ref[k]), k
    with pytest.raises(InputError, match="already finished"):
        train(None, data, epochs=1, resume=last_path(ckpt), **kw)


def test_finetune_records_parent_and_keeps_normalization(tmp_path):
    from napari_segnets import checkpoints

    data, val = data_and_val()
    parent = tmp_path / "parent.safetensors"
    norm = {"mode": "fixed", "vmin": -0.2, "vmax": 1.2}
    train(
        tiny(),
        data,
        val=val,
        epochs=1,
        steps_per_epoch=2,
        checkpoint=parent,
        normalization=norm,
        **FAST,
    )
    child = tmp_path / "child.safetensors"
    result = finetune(parent, data, val=val, epochs=1, steps_per_epoch=2, checkpoint=child, **FAST)
    _, meta = checkpoints.load(child)
    assert meta["parent"]["content_hash"] == checkpoints.read_metadata(parent)["content_hash"]
    assert meta["parent"]["path"].endswith("parent.safetensors")
    assert meta["normalization"] == norm
    assert result.checkpoint == child


def test_early_stopping_and_time_budget(tmp_path):
    data, val = data_and_val()
    # a learning rate too small to change the validation score: patience 1 stops after epoch 2
    stopped = train(
        tiny(),
        data,
        val=val,
        epochs=10,
        steps_per_epoch=1,
        lr=1e-12,
        early_stopping=1,
        schedule="none",
        **FAST,
    )
    assert stopped.stopped == "early_stopping" and len(stopped.history) == 2
    ckpt = tmp_path / "budget.safetensors"
    timed = train(
        tiny(),
        data,
        val=val,
        epochs=1000,
        steps_per_epoch=50,
        minutes=1e-4,
        checkpoint=ckpt,
        **FAST,
    )
    assert timed.stopped == "time_budget" and len(timed.history) == 1
    assert timed.checkpoint == ckpt and ckpt.exists()


def test_training_from_a_curated_store(tmp_path):
    from napari_segnets.curation import Store

    image, mask = blobs(3, seed=5)
    store = Store(tmp_path / "store")
    with pytest.raises(InputError, match="no samples"):
        SliceDataset.from_store(store)
    for z in range(2):
        partial = mask[z].copy()
        partial[:, 40:] = 255  # only the left part was checked by a person
        store.add(image[z], partial, source="blobs.tif", index=z, ignore_index=255)
    store.add(image[2], mask[2], source="blobs.tif", index=2, split="val")
    data = SliceDataset.from_store(store, split="train")
    assert len(data) == 2
    result = train(
        tiny(),
        store,
        val=SliceDataset.from_store(store, split="val"),
        epochs=1,
        steps_per_epoch=2,
        **FAST,
    )
    assert np.isfinite(result.best_score)


@pytest.mark.gpu
def test_amp_and_channels_last_on_cuda(tmp_path):
    from napari_segnets import checkpoints

    data, val = data_and_val()
    ckpt = tmp_path / "gpu.safetensors"
    result = train(
        tiny(),
        data,
        val=val,
        epochs=1,
        steps_per_epoch=3,
        checkpoint=ckpt,
        **dict(FAST, device="cuda"),
    )
    assert np.isfinite(result.history[0]["loss"]) and np.isfinite(result.best_score)
    model, _ = checkpoints.load(
        ckpt
    )  # weights saved from channels_last CUDA tensors load on the CPU
    assert model(torch.zeros(1, 1, 32, 32)).shape == (1, 1, 32, 32)


def test_atrous_at_a_weight_budget_trains_under_the_default_precision(tmp_path):
    """The README's `train --task autoencode --arch atrous --budget 100000` crashed the process:
    torch 2.13's oneDNN segfaults in the bf16 channels_last backward of a dilated convolution with
    44 channels. Such models train in the default layout (and bf16 on CPUs that have it)."""
    from napari_segnets.models import build

    rng = np.random.default_rng(0)
    images = (rng.random((2, 96, 96)) * 255).astype(np.uint8)
    model = build("atrous", task="autoencode", budget=100_000, seed=0)
    result = train(model, SliceDataset(images), val=None, epochs=1, steps_per_epoch=2, batch_size=4,
                   crop=96, device="cpu", checkpoint=tmp_path / "ae.safetensors")
    assert np.isfinite(result.history[-1]["loss"])
