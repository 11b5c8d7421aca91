"""Novelty: an object where the autoencoder fails more than on the training slices stands out."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_segnets.errors import InputError
from napari_segnets.review import novelty_signals, review


def _texture(shape, seed, sigma=2.0):
    """Smooth EM-like texture in 0-255 (blurred noise)."""
    rng = np.random.default_rng(seed)
    t = ndi.gaussian_filter(rng.normal(size=shape), (0, sigma, sigma))
    return (t - t.min()) / (t.max() - t.min()) * 200 + 20


def _scene():
    """Reference slices of smooth texture; a test stack of the same texture but for one noisy corner."""
    reference = _texture((4, 64, 64), 0)
    image = _texture((3, 64, 64), 1)
    rng = np.random.default_rng(2)
    image[:, 32:, 32:] = rng.uniform(20, 220, (3, 32, 32))  # a texture the training never showed
    labels = np.zeros(image.shape, np.uint32)
    for k, (y, x) in enumerate(((8, 8), (8, 40), (40, 8), (40, 40)), start=1):
        labels[:, y:y + 16, x:x + 16] = k  # one object per quadrant; 4 is in the noisy one
    return labels, image, reference


def _lowpass(a):
    """An autoencoder that learned smooth texture: it keeps what a blur keeps."""
    return ndi.gaussian_filter(np.asarray(a, np.float64), (0, 1.5, 1.5))


def test_the_object_in_unfamiliar_texture_is_the_most_novel():
    labels, image, reference = _scene()
    found = novelty_signals(labels, image, _lowpass(image), reference, _lowpass(reference))
    nov = found["novelty"]
    assert set(nov) == {1, 2, 3, 4}
    assert nov[4] > 3.0  # far outside the reference
    assert max(nov[1], nov[2], nov[3]) < 3.0 and nov[4] > max(nov[1], nov[2], nov[3]) + 3.0
    assert {f"novelty_level{level}" for level in (1, 2, 3, 4)} <= set(found)
    assert found["novelty_level1"][4] > found["novelty_level1"][1]  # noise is fine detail
    again = novelty_signals(labels, image, _lowpass(image), reference, _lowpass(reference))
    assert again == found  # deterministic
    # the same object in familiar texture is familiar
    calm = _texture((3, 64, 64), 1)
    assert novelty_signals(labels, calm, _lowpass(calm), reference, _lowpass(reference))["novelty"][4] < 3.0
    # one image against one reference image
    flat = novelty_signals(labels[1], image[1], _lowpass(image)[1], reference[0], _lowpass(reference)[0])
    assert max(flat["novelty"], key=flat["novelty"].get) == 4


def test_novelty_refuses_mismatched_input():
    labels, image, reference = _scene()
    with pytest.raises(InputError, match="must match"):
        novelty_signals(labels, image, _lowpass(image)[:2], reference, _lowpass(reference))
    with pytest.raises(InputError, match="must match"):
        novelty_signals(labels[:2], image, _lowpass(image), reference, _lowpass(reference))


def test_residual_takes_the_normalisation_as_predict_does():
    from napari_segnets.review.novelty import residual

    image = np.linspace(0, 1000, 2 * 8 * 8).reshape(2, 8, 8)
    rec = image - 10.0
    assert np.allclose(residual(image, rec, {"mode": "fixed", "vmin": 0.0, "vmax": 200.0}), 10 / 200)
    # a spec already fitted (as a checkpoint may carry it) is used as it is, not fitted again
    fitted = {"mode": "percentile", "low": 1.0, "high": 99.8, "vmin": 0.0, "vmax": 50.0}
    assert np.allclose(residual(image, rec, fitted), 10 / 50)
    assert np.allclose(residual(image, rec, "minmax"), 10 / 1000)  # a mode by name, as predict takes it


def _pca(reference):
    """A tiny PCA autoencoder fitted on the reference slices (closed form, seconds)."""
    from napari_segnets.io.normalize import apply_normalization, fit_normalization
    from napari_segnets.models import fit_pca

    norm = fit_normalization(reference)
    return fit_pca(apply_normalization(reference, norm), patch=8, components=6, seed=0).eval()


def test_review_with_an_autoencoder_adds_novelty_and_leaves_the_score_alone():
    import torch

    from napari_segnets import models

    labels, image, reference = _scene()
    image = image.astype(np.float32)
    image[labels > 0] += 40  # objects a model can find (brighter squares)
    torch.manual_seed(0)
    net = models.build("unet", base=4, depth=2).eval()
    ae = _pca(reference)
    kw = {"device": "cpu", "views": ("xy", "flip_x"), "threshold": 0.45}
    plain = review(net, image, **kw)
    assert not [n for n in plain.table.names if n.startswith("novelty")]
    with_n = review(net, image, autoencoder=ae, reference=reference, **kw)
    again = review(net, image, autoencoder=ae, reference=reference, **kw)
    assert np.array_equal(with_n.table["novelty"], again.table["novelty"], equal_nan=True)
    # novelty is reported, not scored: same objects, same order, same scores
    assert np.array_equal(plain.labels, with_n.labels)
    assert plain.table["id"].tolist() == with_n.table["id"].tolist()
    assert np.array_equal(plain.table["score"], with_n.table["score"])
    assert np.isfinite(with_n.table["novelty"]).all() and "novelty_level1" in with_n.table.names
    with pytest.raises(InputError, match="both"):
        review(net, image, autoencoder=ae, **kw)
    with pytest.raises(InputError, match="autoencoder"):
        review(net, image, autoencoder=net, reference=reference, **kw)


def test_views_review_ranks_the_same_with_or_without_novelty():
    """Objects of varied suspicion (the scene of test_review): novelty adds columns, moves nothing."""
    from napari_segnets.progress import drive
    from napari_segnets.review import review_views_iter

    z, y, x = np.mgrid[:12, :48, :48]
    prob = np.zeros((12, 48, 48), np.float32)
    for cz, cy, cx in ((6, 10, 10), (6, 10, 36), (6, 36, 10)):
        prob[(z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 <= 16] = 0.95
    prob[3:9, 30:42, 30:42] = 0.9
    other = prob.copy()
    other[:, 35:37, 30:42] = 0.1
    prob[5, 2:4, 44:46] = 0.55
    other[5, 2:4, 44:46] = 0.3
    views = {"xy": prob, "flip_x": other}
    image = _texture((12, 48, 48), 3)
    reference = _texture((4, 48, 48), 4)
    plain = drive(review_views_iter(views, image, voxel_size=(5.0, 5.0, 5.0)))
    nov = {"reconstruction": _lowpass(image), "reference": reference, "reference_reconstruction": _lowpass(reference)}
    with_n = drive(review_views_iter(views, image, voxel_size=(5.0, 5.0, 5.0), novelty=nov))
    assert len(plain.table) == 4  # the speck is under the threshold in the mean of the views
    assert plain.table["id"].tolist() == with_n.table["id"].tolist()
    assert np.array_equal(plain.table["score"], with_n.table["score"])
    assert set(with_n.table.names) - set(plain.table.names) == {"novelty", *(f"novelty_level{i}" for i in (1, 2, 3, 4))}
    for name in plain.table.names:
        assert np.array_equal(plain.table[name], with_n.table[name], equal_nan=True), name


def test_a_pca_autoencoder_finds_the_unfamiliar_region():
    """Through the one forward path: PCA fitted on smooth slices, the noisy quadrant's object stands out."""
    from napari_segnets.inference import predict

    labels, image, reference = _scene()
    ae = _pca(reference)
    rec = predict(ae, image, output="reconstruction", device="cpu")
    ref_rec = predict(ae, reference, output="reconstruction", device="cpu")
    nov = novelty_signals(labels, image, rec, reference, ref_rec)["novelty"]
    assert nov[4] > max(nov[1], nov[2], nov[3]) + 2.0
