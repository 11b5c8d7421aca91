"""Wavelet decompositions, level power, mosaics and comparisons."""

from __future__ import annotations

import json

import numpy as np
import pytest
import pywt

from napari_segnets import wavelets as W
from napari_segnets.errors import InputError


@pytest.fixture
def em_like(rng):
    """A smooth background with fine texture: power at every level."""
    y, x = np.mgrid[0:64, 0:64]
    return np.sin(x / 9.0) + np.cos(y / 5.0) + 0.3 * rng.standard_normal((64, 64))


@pytest.mark.parametrize("wavelet", ["haar", "db2", "sym4", "coif1"])
@pytest.mark.parametrize("shape", [(64, 64), (37, 50), (256, 128)])
def test_level_power_sums_to_one(rng, wavelet, shape):
    img = rng.random(shape) * 200
    power = W.level_power(img, wavelet)
    assert power.ndim == 1
    assert power.size == pywt.dwt_max_level(min(shape), pywt.Wavelet(wavelet).dec_len) + 1
    assert np.all(power >= 0)
    assert power.sum() == pytest.approx(1.0, abs=1e-12)


def test_haar_level1_bands_equal_pywt(em_like):
    dec = W.decompose(em_like, "haar", levels=1)
    cA, (cH, cV, cD) = pywt.dwt2(em_like, "haar")  # pywt's default mode: equal to ours for Haar
    np.testing.assert_allclose(dec.approximation, cA, atol=1e-12)
    for ours, theirs in zip(dec.details[0], (cH, cV, cD)):
        np.testing.assert_allclose(ours, theirs, atol=1e-12)


@pytest.mark.parametrize("wavelet", ["haar", "db2"])
@pytest.mark.parametrize("shape", [(64, 64), (37, 50), (5, 3)])
def test_multilevel_matches_wavedec2(rng, wavelet, shape):
    img = rng.standard_normal(shape)
    if W.max_levels(shape, wavelet) < 1:  # (5, 3) for db2: refused, not silently empty
        with pytest.raises(InputError, match="too small"):
            W.decompose(img, wavelet)
        return
    dec = W.decompose(img, wavelet)
    ref = pywt.wavedec2(img, wavelet, mode="periodization", level=dec.levels)
    for ours, theirs in zip(dec.coeffs(), ref):
        if isinstance(theirs, tuple):
            for a, b in zip(ours, theirs):
                np.testing.assert_allclose(a, b, atol=1e-12)
        else:
            np.testing.assert_allclose(ours, theirs, atol=1e-12)
    back = pywt.waverec2(dec.coeffs(), wavelet, mode="periodization")
    np.testing.assert_allclose(back[: shape[0], : shape[1]], img, atol=1e-10)


def test_orthogonal_energy_is_preserved(em_like):
    dec = W.decompose(em_like, "haar")
    total = sum(np.sum(b**2) for bands in dec.details for b in bands) + np.sum(dec.approximation**2)
    assert total == pytest.approx(np.sum(em_like**2), rel=1e-10)


def test_known_split_between_levels():
    # A +-1 checkerboard lives entirely in the level-1 diagonal band.
    board = np.indices((32, 32)).sum(axis=0) % 2 * 2.0 - 1.0
    power = W.level_power(board)
    assert power[0] == pytest.approx(1.0)
    orient = W.orientation_power(board)
    np.testing.assert_allclose(orient[0], [0.0, 0.0, 1.0], atol=1e-12)
    # Vertical stripes (changes along x) live in the vertical band.
    stripes = np.tile([0.0, 1.0], (16, 8))
    o = W.orientation_power(stripes, within_level=True)
    np.testing.assert_allclose(o[0], [0.0, 1.0, 0.0], atol=1e-12)


def test_orientation_power_rows_sum_to_level_power(em_like):
    orient = W.orientation_power(em_like, "db2")
    power = W.level_power(em_like, "db2")
    np.testing.assert_allclose(orient.sum(axis=1), power[:-1], atol=1e-12)
    within = W.orientation_power(em_like, "db2", within_level=True)
    np.testing.assert_allclose(within.sum(axis=1), 1.0, atol=1e-12)


@pytest.mark.parametrize("value", [0.0, 7.5])
def test_constant_image_has_all_power_in_approximation(value):
    power = W.level_power(np.full((48, 40), value))
    assert power[-1] == 1.0
    assert np.all(power[:-1] == 0.0)


def test_levels_argument_and_labels(em_like):
    power = W.level_power(em_like, levels=3)
    assert power.shape == (4,) and power.sum() == pytest.approx(1.0)
    assert W.level_labels(3) == ["1", "2", "3", "A"]
    assert W.max_levels((64, 64)) == 6
    assert W.max_levels((1, 64)) == 0


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((4, 4, 4)), "2D image"),
        (np.zeros(16), "2D image"),
        (np.array([[1.0, np.nan], [0.0, 1.0]]), "NaN"),
        (np.array([["a", "b"], ["c", "d"]]), "numeric"),
        (np.zeros((1, 50)), "too small"),
        (np.zeros((0, 0)), "too small"),
    ],
)
def test_bad_images_are_refused(bad, match):
    with pytest.raises(InputError, match=match):
        W.level_power(bad)
    with pytest.raises(InputError, match=match):
        W.mosaic(bad)


def test_bad_wavelet_and_levels(em_like):
    with pytest.raises(InputError, match="Unknown wavelet"):
        W.decompose(em_like, "nope")
    with pytest.raises(InputError, match="Unknown wavelet"):
        W.decompose(em_like, "morl")  # continuous: not usable here
    with pytest.raises(InputError, match="levels must be"):
        W.level_power(em_like, levels=99)
    with pytest.raises(InputError, match="levels must be"):
        W.level_power(em_like, levels=0)
    with pytest.raises(InputError, match="too small"):
        W.decompose(np.zeros((3, 3)), "db4")  # db4 needs 8 pixels a side


def test_tiny_image_is_handled():
    power = W.level_power(np.array([[1.0, 2.0], [3.0, 5.0]]))
    assert power.shape == (2,) and power.sum() == pytest.approx(1.0)
    assert W.mosaic(np.array([[1.0, 2.0], [3.0, 5.0]])).shape == (2, 2)


@pytest.mark.parametrize("shape", [(64, 64), (63, 65), (33, 17), (2, 3), (100, 7)])
@pytest.mark.parametrize("level", [1, None])
@pytest.mark.parametrize("wavelet", ["haar", "db2"])
def test_mosaic_shape_and_range(rng, shape, level, wavelet):
    if W.max_levels(shape, wavelet) < 1:  # (2, 3) for db2: refused, not silently empty
        with pytest.raises(InputError, match="too small"):
            W.mosaic(rng.random(shape), wavelet, level)
        return
    m = W.mosaic(rng.random(shape), wavelet, level)
    assert m.shape == shape
    assert m.dtype == np.float32
    assert m.min() >= 0.0 and m.max() <= 1.0


def test_mosaic_layout_follows_pywt():
    # Vertical stripes: only the top-right (vertical details) quadrant lights up at level 1.
    stripes = np.tile([0.0, 1.0], (32, 16))
    m = W.mosaic(stripes, level=1)
    assert m[:16, 16:].min() == 1.0
    assert m[16:, :16].max() == 0.0 and m[16:, 16:].max() == 0.0


def test_multilevel_mosaic_splits_the_approximation(em_like):
    one = W.mosaic(em_like, level=1)
    three = W.mosaic(em_like, level=3)
    np.testing.assert_array_equal(one[32:, :], three[32:, :])  # level-1 details unchanged
    assert not np.array_equal(one[:32, :32], three[:32, :32])
    dec = W.decompose(em_like)
    np.testing.assert_array_equal(W.mosaic(dec, level=3), three)
    np.testing.assert_array_equal(W.mosaic(dec, level=None), W.mosaic(em_like, level=None))


def test_mosaic_with_reference_scaling(em_like):
    weak = em_like * 0.25
    # Own scaling hides the loss of contrast; the original's scaling shows it.
    np.testing.assert_allclose(W.mosaic(weak, level=2), W.mosaic(em_like, level=2), atol=1e-6)
    scaled = W.mosaic(weak, level=2, reference=em_like)
    own = W.mosaic(em_like, level=2, reference=W.decompose(em_like))
    np.testing.assert_array_equal(own, W.mosaic(em_like, level=2))
    assert scaled[32:, 32:].mean() < 0.5 * own[32:, 32:].mean()
    with pytest.raises(InputError, match="same shape"):
        W.mosaic(em_like, reference=em_like[:32])


def test_mosaic_detail_bands_show_edges_over_a_black_noise_floor():
    # An EM-like finest level: noise everywhere, a few strong edges (a 20-pixel square).
    rng = np.random.default_rng(0)
    image = rng.normal(100.0, 4.0, (256, 256))
    image[101:121, 101:121] += 80.0  # odd start: the edges fall inside Haar pairs
    m = W.mosaic(image, level=1)
    for band in (m[:128, 128:], m[128:, :128]):  # vertical and horizontal details, own contrast each
        edges = np.zeros(band.shape, bool)
        edges[50:61, 50:61] = True  # the square's edges in band coordinates, with a margin
        assert band[edges].max() == 1.0, "the edges reach white"
        noise = band[~edges]
        assert np.median(noise) == 0.0, "half the noise (below the band's median) is black"
        assert (noise > 0.5).mean() < 0.05, "the noise stays dark"


def test_mosaic_of_constant_image():
    m = W.mosaic(np.full((16, 16), 3.0), level=2)
    assert np.all(m[:4, :4] == 0.5)
    assert np.all(m[4:, :] == 0) and np.all(m[:, 4:] == 0)


def test_mean_level_power_over_stack(rng):
    stack = rng.random((5, 32, 32))
    mean, std = W.mean_level_power(stack)
    rows = np.stack([W.level_power(s) for s in stack])
    np.testing.assert_allclose(mean, rows.mean(axis=0))
    np.testing.assert_allclose(std, rows.std(axis=0))
    assert mean.sum() == pytest.approx(1.0)
    events = []
    job = W.stack_power_iter(list(stack))
    while True:
        try:
            events.append(next(job))
        except StopIteration as stop:
            result = stop.value
            break
    assert [e.done for e in events] == [1, 2, 3, 4, 5] and events[-1].total == 5
    np.testing.assert_allclose(result, rows)


def test_mean_level_power_refuses_mixed_levels(rng):
    with pytest.raises(
        InputError, match=r"Image 1 \(16, 16\) allows 4 levels but the first gives 6"
    ):
        W.mean_level_power([rng.random((64, 64)), rng.random((16, 16))])
    mean, _ = W.mean_level_power([rng.random((64, 64)), rng.random((16, 16))], levels=3)
    assert mean.shape == (4,)
    with pytest.raises(InputError, match="empty"):
        W.mean_level_power([])


def test_compare_with_itself_gives_ratio_one(em_like):
    table = W.compare(em_like, {"same": em_like.copy()})
    np.testing.assert_allclose(table.ratio["same"], 1.0)
    assert table.metrics["same"]["mse"] == (0.0, 0.0)
    assert table.metrics["same"]["psnr"][0] == np.inf
    assert table.metrics["same"]["ssim"][0] == pytest.approx(1.0)
    json.dumps(table.to_dict(), allow_nan=True)


def test_compare_blurred_loses_fine_levels(rng):
    from scipy.ndimage import gaussian_filter

    crops = rng.random((4, 64, 64))
    blurred = np.stack([gaussian_filter(c, 2) for c in crops])
    table = W.compare(
        crops, {"blur": blurred, "noisy": crops + 0.01 * rng.standard_normal(crops.shape)}
    )
    assert table.n_images == 4 and table.labels[-1] == "A" and len(table.labels) == 7
    assert table.ratio["blur"][0] < 0.05  # finest level nearly gone
    assert table.metrics["noisy"]["psnr"][0] > table.metrics["blur"]["psnr"][0]
    md = W.format_table(table, extra={"blur": {"params": "0"}})
    assert "| level | original | blur | blur / orig. |" in md
    assert "1 (finest)" in md and "A (approx., 6)" in md and "params" in md


def test_compare_refuses_mismatches(em_like):
    with pytest.raises(InputError, match="must match"):
        W.compare(em_like, {"x": em_like[:32]})
    with pytest.raises(InputError, match="non-empty"):
        W.compare(em_like, {})
    with pytest.raises(InputError, match="reserved"):
        W.compare(em_like, {"original": em_like})


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_plots_are_written(tmp_path, rng, suffix):
    crops = rng.random((3, 32, 32))
    table = W.compare(crops, {"a": crops * 0.9, "b": crops[:, ::-1]})
    out = W.plot_power(table, tmp_path / f"power{suffix}")
    assert out.exists() and out.stat().st_size > 1000
    out = W.plot_mosaics({"original": crops[0], "a": crops[0] * 0.9}, tmp_path / f"m{suffix}")
    assert out.exists() and out.stat().st_size > 1000
    with pytest.raises(InputError, match="png"):
        W.plot_power(table, tmp_path / "power.jpg")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"power{suffix}", f"m{suffix}"])
