"""Self-training on sparse strokes (issue 13): the net labels the unpainted pixels it is sure of."""

from __future__ import annotations

import numpy as np
import pytest
from _blobs import blobs as _blobs

from napari_segnets.errors import InputError
from napari_segnets.training import train
from napari_segnets.training.masks import IGNORE
from napari_segnets.training.pseudo import pseudo_labels

torch = pytest.importorskip("torch")


def _fake_predict(prob):
    def predict(model, image, **kwargs):
        assert kwargs["normalization"] == {"mode": "none"}  # the sampler's slices are normalised already
        assert kwargs["output"] == "probabilities"
        return prob

    return predict


def test_painted_pixels_keep_their_label_sure_pixels_get_the_prediction_unsure_ones_none(monkeypatch):
    import napari_segnets.inference as inference

    prob = np.array([[0.99, 0.95, 0.5, 0.05], [0.01, 0.7, 0.3, 0.92]], np.float32)
    monkeypatch.setattr(inference, "predict", _fake_predict(prob))
    strokes = np.full((2, 4), IGNORE, np.int64)
    strokes[0, 0] = 0  # painted background where the net is sure of an object: the user wins
    strokes[1, 1] = 1  # painted object where the net is unsure
    (out,) = pseudo_labels(None, [np.zeros((2, 4), np.float32)], [strokes], confidence=0.9)
    expected = np.array([[0, 1, IGNORE, 0], [0, 1, IGNORE, 1]])
    assert np.array_equal(out, expected) and out.dtype == strokes.dtype
    (stricter,) = pseudo_labels(None, [np.zeros((2, 4), np.float32)], [strokes], confidence=0.96)
    assert np.array_equal(stricter, [[0, IGNORE, IGNORE, IGNORE], [0, 1, IGNORE, IGNORE]])
    with pytest.raises(ValueError, match="confidence"):
        pseudo_labels(None, [], [], confidence=0.5)


def test_several_classes_take_the_sure_argmax(monkeypatch):
    import napari_segnets.inference as inference

    prob = np.array([[[0.95, 0.2, 0.0]], [[0.03, 0.3, 0.0]], [[0.02, 0.5, 1.0]]], np.float32)  # (C=3, 1, 3)
    monkeypatch.setattr(inference, "predict", _fake_predict(prob))
    strokes = np.full((1, 3), IGNORE, np.int64)
    strokes[0, 2] = 1  # painted class 1 where the net is sure of class 2
    (out,) = pseudo_labels(None, [np.zeros((1, 3), np.float32)], [strokes], confidence=0.9)
    assert np.array_equal(out, [[0, IGNORE, 1]])


def _data():
    image, mask = _blobs(2, 48, 0, value=1, discs=4, rmax=7)
    strokes = np.zeros_like(mask)
    strokes[:, 4, :] = 1
    strokes[mask.astype(bool) & (np.arange(mask.shape[1])[None, :, None] % 3 == 0)] = 2
    return image, strokes


def _tiny():
    from napari_segnets.models import build

    torch.manual_seed(0)
    return build("unet", base=4, depth=2)


FAST = dict(crop=32, batch_size=2, device="cpu", augment=False, epochs=2, steps_per_epoch=5, lr=0.03)


def test_strokes_self_train_from_half_way_when_asked_and_repeat_bit_for_bit(tmp_path, monkeypatch):
    from napari_segnets import checkpoints
    from napari_segnets.training import pseudo, setup

    image, strokes = _data()
    calls, events = [], []
    real = pseudo.pseudo_labels_iter

    def counting(model, images, targets, **kwargs):
        calls.append(len(images))
        events.append("pseudo")
        out = yield from real(model, images, targets, **kwargs)
        assert all((o != IGNORE).sum() > (t != IGNORE).sum() for o, t in zip(out, targets))  # it labels more
        return out

    def seen(event):
        if event.stage == "train":
            events.append(event.payload["step"])
        elif event.stage == "self-training":  # one event per painted slice: a Cancel is heard between them
            events.append(f"slice {event.done}/{event.total}")

    monkeypatch.setattr("napari_segnets.training.loop.pseudo_labels_iter", counting)
    # a tiny net after 5 steps is sure of little: a lower bar so that the pseudo-labels change the run
    monkeypatch.setattr("napari_segnets.training.loop.SELF_TRAINING_CONFIDENCE", 0.55)
    assert not setup.SPARSE_SELF_TRAINING  # the measured default (benchmarks/sparse_start.py): off
    a = train(_tiny(), (image, strokes), annotation="sparse", checkpoint=tmp_path / "a.safetensors",
              callback=seen, self_training=True, **FAST)  # fmt: skip
    assert len(calls) == len(setup.SELF_TRAINING_AT) and set(calls) == {2}  # five refreshes over both slices
    # strokes alone for the first half (10 steps in all), then one refresh per step at 50, 60, ... 90%
    assert events[: events.index("pseudo")] == [1, 2, 3, 4, 5]
    assert [events[i - 1] for i, e in enumerate(events) if e == "pseudo"] == [5, 6, 7, 8, 9]
    first = events.index("pseudo")
    assert events[first + 1 : first + 4] == ["slice 1/2", "slice 2/2", 6]
    meta = checkpoints.read_metadata(tmp_path / "a.safetensors")
    assert meta["training"]["pseudo_label_rounds"] == len(setup.SELF_TRAINING_AT)
    b = train(_tiny(), (image, strokes), annotation="sparse", self_training=True, **FAST)
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(p, q)
    calls.clear()
    off = train(_tiny(), (image, strokes), annotation="sparse", **FAST)  # the default
    assert not calls and any(not torch.equal(p, q) for p, q in zip(a.model.parameters(), off.model.parameters()))


def test_full_masks_have_nothing_to_self_train_on():
    image, strokes = _data()
    with pytest.raises(InputError, match="sparse"):
        train(_tiny(), (image, (strokes == 2).astype(np.uint8)), self_training=True, **FAST)


def test_a_slice_nobody_painted_is_neither_predicted_nor_labelled(monkeypatch):
    import napari_segnets.inference as inference

    seen = []

    def predict(model, image, **kwargs):
        seen.append(image.shape)
        return np.full(image.shape, 0.99, np.float32)

    monkeypatch.setattr(inference, "predict", predict)
    painted = np.full((4, 4), IGNORE, np.int64)
    painted[0, 0] = 0
    unpainted = np.full((4, 4), IGNORE, np.int64)
    imgs = [np.zeros((4, 4), np.float32), np.zeros((4, 4), np.float32)]
    a, b = pseudo_labels(None, imgs, [painted, unpainted], confidence=0.9)
    assert len(seen) == 1 and (a == 1).sum() == 15 and a[0, 0] == 0
    assert (b == IGNORE).all()


def test_cli_self_trains_strokes_when_told_to_and_refuses_it_for_full_masks(tmp_path, capsys):
    import tifffile

    from napari_segnets import checkpoints
    from napari_segnets._cli import main

    image, strokes = _data()
    tifffile.imwrite(tmp_path / "img.tif", image, photometric="minisblack")
    tifffile.imwrite(tmp_path / "strokes.tif", strokes, photometric="minisblack")
    tifffile.imwrite(tmp_path / "mask.tif", (strokes == 2).astype(np.uint8), photometric="minisblack")
    common = ["train", "--images", tmp_path / "img.tif", "--arch", "unet", "--base", 4, "--option", "depth=2",
              "--epochs", 1, "--steps-per-epoch", 10, "--crop", 32, "--batch-size", 1, "--device", "cpu",
              "--no-progress"]  # fmt: skip
    for flag, rounds in (([], 0), (["--self-training"], 5), (["--no-self-training"], 0)):
        out = tmp_path / f"s{rounds}.safetensors"
        argv = [*common, "--masks", tmp_path / "strokes.tif", "--sparse", *flag, "--out", out]
        assert main([str(a) for a in argv]) == 0
        assert checkpoints.read_metadata(out)["training"]["pseudo_label_rounds"] == rounds
    capsys.readouterr()
    bad = tmp_path / "bad.safetensors"
    argv = [*common, "--masks", tmp_path / "mask.tif", "--self-training", "--val-slices", "1:2", "--out", bad]
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--sparse" in err[0] and not bad.exists()
