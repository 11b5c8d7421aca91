"""Training pieces: datasets, crops, augmentation, ignore-aware losses, and short loop runs without files."""

from __future__ import annotations

import numpy as np
import pytest
from _blobs import blobs as _blobs

from napari_segnets.errors import InputError
from napari_segnets.training import (
    Augmenter,
    CropSampler,
    SliceDataset,
    make_loss,
    train,
    train_iter,
)

torch = pytest.importorskip("torch")


def blobs(n=3, size=64, seed=0):
    return _blobs(n, size, seed, value=1, discs=5, rmax=8)


def tiny(task="segment", classes=1, seed=0):
    from napari_segnets.models import build

    torch.manual_seed(seed)
    return build("unet", task=task, classes=classes, base=8, depth=2)


FAST = dict(crop=32, batch_size=2, device="cpu", augment=False, schedule="none")


# -- datasets -----------------------------------------------------------------------------
def test_slice_dataset_2d_and_3d_give_one_sample_per_slice():
    image, mask = blobs(3)
    assert len(SliceDataset(image, mask)) == 3
    assert len(SliceDataset(image[0], mask[0])) == 1
    pairs = SliceDataset.from_pairs([(image[0], mask[0]), (image[1, :48, :40], mask[1, :48, :40])])
    assert len(pairs) == 2 and pairs.min_shape() == (48, 40)
    sub = SliceDataset(image, mask).subset([2])
    np.testing.assert_array_equal(sub.slice(0)[1], mask[2])


@pytest.mark.parametrize(
    "image, mask, match",
    [
        (np.zeros((2, 32, 32)), np.zeros((2, 32, 31), np.uint8), "must match"),
        (np.zeros((1, 2, 32, 32)), None, "dimensions"),
        (np.zeros((0, 32, 32)), None, "empty"),
        (np.zeros((32, 32)), np.full((32, 32), 0.5), "fractional"),
    ],
)
def test_slice_dataset_rejects_bad_inputs(image, mask, match):
    with pytest.raises(InputError, match=match):
        SliceDataset(image, mask)


def test_check_rejects_more_classes_than_the_model_and_all_ignore():
    image, mask = blobs(1)
    bad = mask.copy()
    bad[0, 0, 0] = 3
    with pytest.raises(InputError, match="classes=4"):
        SliceDataset(image, bad).check(classes=1)  # 0/1/3 is ambiguous: say how many classes
    SliceDataset(image, bad, classes=4).check(classes=4)  # fine for a 4-class model
    with pytest.raises(InputError, match="model has 2"):
        SliceDataset(image, bad, classes=4).check(classes=1)
    with pytest.raises(InputError, match="ignored"):
        SliceDataset(image, np.full_like(mask, 255), ignore_index=255).check(classes=1)


def test_crop_sampler_is_seeded_and_prefers_foreground():
    image, mask = blobs(2, size=96)
    images = list(image)
    s = CropSampler(images, list(mask), crop=16, foreground_crop=1.0, augmenter=Augmenter())
    a = s.batch(np.random.default_rng(1), 8)
    b = s.batch(np.random.default_rng(1), 8)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[0].shape == (8, 1, 16, 16) and a[1].dtype == np.int64
    fg_centred = CropSampler(images, list(mask), crop=16, foreground_crop=1.0).batch(
        np.random.default_rng(0), 64
    )[1]
    uniform = CropSampler(images, list(mask), crop=16, foreground_crop=0.0).batch(
        np.random.default_rng(0), 64
    )[1]
    assert fg_centred.mean() > uniform.mean()
    with pytest.raises(InputError, match="larger than a slice"):
        CropSampler(images, list(mask), crop=128)


def test_augmentations_keep_labels_and_ignore_value_intact():
    rng = np.random.default_rng(0)
    image = rng.random((40, 40)).astype(np.float32)
    mask = (image > 0.5).astype(np.uint8)
    mask[:5] = 255
    aug = Augmenter(elastic_p=1.0, intensity_p=1.0, noise_p=1.0)
    for _ in range(5):
        im2, m2 = aug(image, mask, rng)
        assert im2.shape == image.shape and im2.dtype == np.float32
        assert set(np.unique(m2)) <= {0, 1, 255}  # nearest-neighbour: no blended labels


# -- losses ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, classes",
    [
        ("bce", 1),
        ("dice", 1),
        ("bce_dice", 1),
        ("focal", 1),
        ("ce", 3),
        ("bce_dice", 3),
        ("dice", 3),
        ("focal", 3),
    ],
)
def test_ignored_pixels_carry_no_gradient(name, classes):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, classes, 8, 8, generator=g, requires_grad=True)
    target = torch.randint(0, max(classes, 2), (2, 8, 8), generator=g)
    target[:, :3] = -1  # masks.IGNORE, the default
    loss = make_loss(name)
    value = loss(logits, target)
    value.backward()
    assert torch.isfinite(value)
    assert torch.all(logits.grad[:, :, :3] == 0)
    assert torch.any(logits.grad[:, :, 3:] != 0)
    # changing the logits under ignored pixels changes nothing
    other = logits.detach().clone()
    other[:, :, :3] = 100.0
    assert torch.allclose(loss(other, target), value.detach())


def test_class_weights_and_autoencoder_losses():
    logits = torch.zeros(1, 1, 4, 4)
    target = torch.ones(1, 4, 4, dtype=torch.long)
    plain = make_loss("bce")(logits, target)
    weighted = make_loss("bce", class_weights=(1.0, 3.0))(logits, target)
    assert torch.allclose(weighted, plain)  # all pixels one class: a weighted mean is unchanged
    target[0, 0] = 0
    assert make_loss("bce", class_weights=(1.0, 3.0))(logits - 1, target) > make_loss("bce")(
        logits - 1, target
    )
    out, ref = torch.zeros(1, 1, 4, 4), torch.ones(1, 1, 4, 4)
    assert make_loss("mse", task="autoencode")(out, ref) == 1
    valid = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    valid[..., 0] = True
    assert make_loss("l1", task="autoencode")(out, ref, valid=valid) == 1
    with pytest.raises(InputError, match="autoencoders"):
        make_loss("mse", task="segment")
    with pytest.raises(InputError, match="Unknown loss"):
        make_loss("hinge")


# -- the loop, in memory -----------------------------------------------------------------
def test_a_few_steps_lower_the_loss():
    image, mask = blobs(3)
    result = train(tiny(), (image, mask), epochs=4, steps_per_epoch=6, lr=3e-3, **FAST)
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0]
    assert result.stopped == "epochs" and result.steps == 24


def test_fixed_seed_gives_identical_weights_on_cpu():
    image, mask = blobs(2)
    kw = dict(epochs=1, steps_per_epoch=3, seed=5, crop=32, batch_size=2, device="cpu")
    a = train(tiny(seed=1), (image, mask), **kw).model.state_dict()
    b = train(tiny(seed=1), (image, mask), **kw).model.state_dict()
    c = train(tiny(seed=1), (image, mask), **dict(kw, seed=6)).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_progress_events_carry_loss_epoch_and_lr():
    image, mask = blobs(2)
    events = list_events(train_iter(tiny(), (image, mask), epochs=2, steps_per_epoch=2, **FAST))
    steps = [e for e in events if e.stage == "train"]
    epochs = [e for e in events if e.stage == "epoch"]
    assert len(steps) == 4 and len(epochs) == 2
    assert {"loss", "epoch", "lr"} <= set(steps[0].payload)
    assert steps[-1].done == steps[-1].total == 4


def list_events(gen):
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration:
            return events


def test_autoencoder_with_denoising_trains_and_validates(tmp_path):
    from napari_segnets import checkpoints

    image, _ = blobs(3)
    result = train(
        tiny(task="autoencode"),
        image[:2],
        val=image[2:],
        task="autoencode",
        loss="mse",
        denoise=0.05,
        epochs=2,
        steps_per_epoch=4,
        lr=3e-3,
        checkpoint=tmp_path / "ae.safetensors",
        **FAST,
    )
    val = result.history[-1]["val"]
    assert (
        np.isfinite(result.history[-1]["loss"]) and val["score"] == -val["mse"] and val["psnr"] > 0
    )
    training = checkpoints.read_metadata(result.checkpoint)["training"]  # no masks: no annotation recorded
    assert "annotation" not in training and "painted" not in training


def test_multiclass_integer_labels_train():
    image, mask = blobs(2)
    labels = mask.copy()
    labels[:, :8] = 2
    labels[:, -4:] = 255
    result = train(tiny(classes=3), (image, labels), epochs=1, steps_per_epoch=2, loss="ce",
                   ignore_index=255, **FAST)
    assert np.isfinite(result.history[0]["loss"])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(task="autoencode"), "task"),
        (dict(crop=30), "multiple of 4"),
        (dict(crop=128), "larger than a slice"),
        (dict(optimizer="lbfgs"), "Unknown optimizer"),
        (dict(schedule="step"), "Unknown schedule"),
        (dict(loss="mse"), "autoencoders"),
        (dict(early_stopping=2, val=None), "validation data"),
        (dict(epochs=0), "epochs"),
        (dict(minutes=-1), "time budget"),
        (dict(class_weights=(1, 2, 3)), "class_weights"),
    ],
)
def test_bad_training_arguments_raise_input_error(kwargs, match):
    image, mask = blobs(1)
    args = dict(FAST, epochs=1, steps_per_epoch=1)
    args.update(kwargs)
    with pytest.raises(InputError, match=match):
        train(tiny(), (image, mask), **args)


def test_bad_training_data_raise_input_error():
    image, mask = blobs(1)
    args = dict(FAST, epochs=1, steps_per_epoch=1)
    with pytest.raises(InputError, match="ignored"):
        train(tiny(), (image, np.full_like(mask, 255)), ignore_index=255, **args)
    with pytest.raises(InputError, match="no object pixels"):
        train(tiny(), (image, np.zeros_like(mask)), **args)
    with pytest.raises(InputError, match="model has 2"):
        train(tiny(), SliceDataset(image, mask * 2, classes=3), **args)
    with pytest.raises(InputError, match="no masks"):
        train(tiny(), image, **args)
    with pytest.raises(InputError, match="must match"):
        train(tiny(), (image, mask[:, :-1]), **args)
