"""The sparse-start benchmark's simulated strokes: ilastik's convention, about 1%, never wrong."""

from __future__ import annotations

import numpy as np

from napari_segnets.sample_data import simulate_strokes


def test_strokes_follow_the_truth_in_ilastiks_convention():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:256, :256]
    truth = np.zeros((2, 256, 256), bool)
    for z in range(2):  # a few blobs, like mitochondria in a slice
        for cy, cx, r in zip(*rng.integers(20, 236, (2, 6)), rng.integers(8, 20, 6)):
            truth[z] |= (yy - cy) ** 2 / 2 + (xx - cx) ** 2 < r**2
    strokes = simulate_strokes(truth.astype(np.uint8), fraction=0.01, seed=0)
    assert strokes.dtype == np.uint8 and set(np.unique(strokes)) == {0, 1, 2}
    painted = strokes > 0
    assert 0.005 < painted.mean() < 0.02  # about 1% of the pixels
    assert not (painted & ((strokes == 2) != truth)).any()  # every stroke tells the truth
    for z in range(2):
        assert (strokes[z] == 1).any() and (strokes[z] == 2).any()
    again = simulate_strokes(truth.astype(np.uint8), fraction=0.01, seed=0)
    assert np.array_equal(strokes, again)


def test_corrections_paint_where_the_prediction_is_wrong_and_keep_the_strokes():
    from napari_segnets.sample_data import simulate_corrections

    yy, xx = np.mgrid[:256, :256]
    truth = np.zeros((3, 256, 256), bool)
    truth[:, 40:100, 40:100] = True
    pred = truth.copy()
    pred[:, 150:220, 150:220] = True  # a false object
    pred[:, 40:100, 40:70] = False  # a missed part
    strokes = simulate_strokes(truth.astype(np.uint8), fraction=0.01, seed=0)
    strokes[2] = 0  # a slice nobody painted stays unpainted
    out = simulate_corrections(pred, truth, strokes, fraction=0.005, seed=0)
    assert np.array_equal(out[strokes > 0], strokes[strokes > 0])  # nothing painted is changed
    new = (out > 0) & (strokes == 0)
    assert not new[2].any()
    assert 0 < new[:2].mean() <= 0.0075  # at most about the share asked (a region holds only its skeleton)
    assert ((out == 1) & new)[:2, 150:220, 150:220].any() and ((out == 2) & new)[:2, 40:100, 40:70].any()
    assert not (new & ((out == 2) != truth)).any()  # corrections tell the truth too
    assert not (new & ~(pred != truth)).any()  # and lie only where the prediction was wrong
    assert np.array_equal(out, simulate_corrections(pred, truth, strokes, fraction=0.005, seed=0))
