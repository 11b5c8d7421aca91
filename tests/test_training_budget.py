"""Reproducible runs, a time budget that is used, and a validation split by default (issue 13)."""

from __future__ import annotations

import numpy as np
import pytest
from _blobs import blobs as _blobs

from napari_segnets.training import SliceDataset, train

torch = pytest.importorskip("torch")

FAST = dict(crop=32, batch_size=2, device="cpu", augment=True)


def blobs(n=3, size=48, seed=0):
    return _blobs(n, size, seed, value=255, discs=4, rmax=7)


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_build_with_a_seed_is_bit_identical_and_leaves_the_global_state_alone():
    from napari_segnets.models import build

    torch.manual_seed(5)
    before = torch.random.get_rng_state()
    a = build("unet", base=4, depth=2, seed=3)
    assert torch.equal(torch.random.get_rng_state(), before)
    b = build("unet", base=4, depth=2, seed=3)
    c = build("unet", base=4, depth=2, seed=4)
    assert _same(_state(a), _state(b)) and not _same(_state(a), _state(c))


def test_same_seed_gives_bit_identical_weights_through_train():
    from napari_segnets.models import build

    image, mask = blobs()
    states = []
    for _ in range(2):
        model = build("unet", base=4, depth=2, seed=0)
        result = train(model, (image, mask), epochs=2, steps_per_epoch=2, seed=0, **FAST)
        states.append(_state(result.model))
    assert _same(*states)
    other = train(build("unet", base=4, depth=2, seed=0), (image, mask), epochs=2,
                  steps_per_epoch=2, seed=1, **FAST)
    assert not _same(states[0], _state(other.model))


def test_written_config_repeats_the_run_bit_for_bit(tmp_path, capsys):
    import tifffile

    from napari_segnets import checkpoints
    from napari_segnets._cli import main

    image, mask = blobs(4)
    tifffile.imwrite(tmp_path / "img.tif", image, photometric="minisblack")
    tifffile.imwrite(tmp_path / "mask.tif", mask, photometric="minisblack")
    first = tmp_path / "a.safetensors"
    argv = ["train", "--images", tmp_path / "img.tif", "--masks", tmp_path / "mask.tif",
            "--arch", "unet", "--base", 4, "--option", "depth=2", "--epochs", 2,
            "--steps-per-epoch", 2, "--crop", 32, "--batch-size", 2, "--seed", 7,
            "--device", "cpu", "--out", first, "--no-progress"]
    assert main([str(a) for a in argv]) == 0
    again = tmp_path / "b.safetensors"
    config = str(first) + ".config.yaml"
    assert main(["train", "--config", config, "--out", str(again), "--no-progress"]) == 0
    for a, b in ((first, again), (tmp_path / "a.last.safetensors", tmp_path / "b.last.safetensors")):
        (ma, meta_a), (mb, _) = checkpoints.load(a), checkpoints.load(b)
        assert _same(_state(ma), _state(mb))
    assert meta_a["training"]["seed"] == 7 and meta_a["training"]["steps"] == 4


class FakeClock:
    """Seconds that advance by ``tick`` at every reading: the loop's only notion of time."""

    def __init__(self, tick):
        self.now, self.tick = 0.0, tick

    def __call__(self):
        self.now += self.tick
        return self.now


def test_minutes_alone_trains_for_the_budget_with_the_schedule_spanning_it(tmp_path):
    from napari_segnets import checkpoints
    from napari_segnets.models import build

    image, mask = blobs()
    events = []
    clock = FakeClock(tick=1.0)  # one second per reading: a few seconds per step
    out = tmp_path / "m.safetensors"
    result = train(build("unet", base=4, depth=2, seed=0), (image, mask), minutes=1.0,
                   steps_per_epoch=1, checkpoint=out, clock=clock, callback=events.append,
                   **FAST)
    assert result.stopped == "time_budget"
    assert len(result.history) > 10  # no hidden epoch cap: the old default stopped after 10
    assert 55 <= clock.now <= 80  # it used the minute, and stopped soon after
    lrs = [e.payload["lr"] for e in events if e.stage == "train"]
    assert lrs[0] == pytest.approx(1e-3, rel=0.1) and lrs[-1] < 0.1 * lrs[0]  # annealed over it
    steps = [e for e in events if e.stage == "train"]
    assert steps[-1].total == 60 and steps[-1].done == 60 and steps[-1].payload["eta_s"] == 0
    assert steps[0].payload["eta_s"] > 50  # the ETA counts down the budget
    _, meta = checkpoints.load(out.with_name("m.last.safetensors"))
    assert meta["training"]["steps"] == result.steps and meta["training"]["stopped"] == "time_budget"


def test_validation_is_held_out_by_default():
    image, mask = blobs(16)
    ds = SliceDataset(image, mask)
    tr, va = ds.holdout(crop=32)
    assert (len(tr), len(va)) == (14, 2)
    np.testing.assert_array_equal(va.slice(0)[0], image[14])  # the last slices, never trained on
    big, big_mask = blobs(1, size=64)
    tr, va = SliceDataset(big, big_mask).holdout(crop=32)
    (ti, _), (vi, _) = tr.slice(0), va.slice(0)
    assert ti.shape == (64, 56) and vi.shape == (64, 8)  # a strip of the one slice
    np.testing.assert_array_equal(np.concatenate([ti, vi], axis=1), big[0])
    assert SliceDataset(big, big_mask).holdout(crop=60)[1] is None  # nothing to spare
    from napari_segnets.models import build

    result = train(build("unet", base=4, depth=2, seed=0), (image[:4], mask[:4]), epochs=1,
                   steps_per_epoch=1, **FAST)
    assert result.history[0]["val"] is not None and result.best_epoch == 1
