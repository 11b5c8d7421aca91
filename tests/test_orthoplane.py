"""Orthoplane inference and views: each view is predict on a transformed stack, turned back."""

import numpy as np
import pytest

from napari_segnets import models
from napari_segnets.errors import InputError
from napari_segnets.inference import predict
from napari_segnets.inference.orthoplane import (
    VIEWS,
    flicker,
    from_view,
    orthoplane_pays,
    predict_orthoplane,
    predict_views,
    to_view,
)
from napari_segnets.io.normalize import fit_normalization, normalization_spec


@pytest.fixture(scope="module")
def net():
    import torch

    torch.manual_seed(0)
    return models.build("unet", base=4, depth=2).eval()


def _stack(shape=(6, 16, 12), seed=0):
    return np.random.default_rng(seed).integers(0, 255, shape).astype(np.uint8)


@pytest.mark.parametrize("view", VIEWS)
def test_views_round_trip(view):
    vol = np.arange(4 * 5 * 6).reshape(4, 5, 6)
    assert np.array_equal(from_view(to_view(vol, view), view), vol)
    probs = np.stack([vol, -vol])  # a class axis in front is kept there
    assert np.array_equal(from_view(np.stack([to_view(vol, view), -to_view(vol, view)]), view), probs)


def test_orthoplane_is_mean_of_three_separate_predictions(net):
    image = _stack()
    fitted = fit_normalization(image, normalization_spec())
    kw = dict(device="cpu", normalization=fitted)
    xy = predict(net, image, **kw)
    xz = predict(net, np.ascontiguousarray(image.transpose(1, 0, 2)), **kw).transpose(1, 0, 2)
    yz = predict(net, np.ascontiguousarray(image.transpose(2, 0, 1)), **kw).transpose(1, 2, 0)
    expected = (xy.astype(np.float64) + xz + yz) / 3
    got = predict_orthoplane(net, image, device="cpu")  # fits the same normalisation itself
    assert got.shape == image.shape and got.dtype == np.float32
    assert np.abs(got - expected).max() < 1e-6
    labels = predict_orthoplane(net, image, device="cpu", output="labels")
    assert np.array_equal(labels, (got >= 0.5).astype(np.uint8))


def test_flip_views_undo_their_transform(net):
    image = _stack((2, 16, 16))
    out = predict_views(net, image, ("xy", "flip_x", "rot90"), device="cpu")
    for view in ("flip_x", "rot90"):
        assert out[view].shape == image.shape
        # a convolutional net is not flip-invariant, but the views agree far better aligned than not
        aligned = np.abs(out[view] - out["xy"]).mean()
        assert aligned < np.abs(to_view(out[view], view) - out["xy"]).mean() or aligned < 1e-3


def test_views_refuse_bad_requests(net):
    with pytest.raises(InputError, match="2D image has no xz"):
        predict_views(net, _stack((16, 16)), ("xz",), device="cpu")
    with pytest.raises(InputError, match="Unknown view"):
        predict_views(net, _stack(), ("xq",), device="cpu")
    with pytest.raises(InputError, match="single image"):
        predict_orthoplane(net, _stack((16, 16)), device="cpu")


def test_orthoplane_pays_only_for_isotropic_stacks():
    assert orthoplane_pays((30, 768, 1024), (5.0, 5.0, 5.0))
    assert not orthoplane_pays((30, 512, 512), (50.0, 4.0, 4.0))
    assert not orthoplane_pays((30, 512, 512), None)
    assert not orthoplane_pays((4, 512, 512), (5.0, 5.0, 5.0))


def test_flicker():
    lab = np.zeros((6, 10, 10), np.uint8)
    lab[1:5, 2:6, 2:6] = 1  # steady: 16 px on 4 slices
    lab[1, 0:1, 8:10] = 2  # one slice only
    lab[0:3, 7:9, 0:4] = 3
    lab[1, 7:9, 0:4] = 0  # vanishes in the middle slice
    f = flicker(lab)
    assert f[1] == 0.0 and f[2] == 0.0
    assert f[3] == pytest.approx(8 / (16 / 3))  # jumps of 8 and 8 over a mean area of 16/3
