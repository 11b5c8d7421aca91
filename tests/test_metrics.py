"""Metrics against small cases computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segnets import metrics as M
from napari_segnets.errors import InputError

P = np.array([[1, 1, 0, 0]])
T = np.array([[1, 0, 1, 0]])


def test_binary_scores_by_hand():
    # intersection 1, |pred| 2, |truth| 2, union 3
    assert M.iou(P, T) == pytest.approx(1 / 3)
    assert M.dice(P, T) == pytest.approx(0.5)
    assert M.f1(P, T) == pytest.approx(0.5)
    assert M.pixel_accuracy(P, T) == pytest.approx(0.5)
    # F1 of the background class: pred 0 at {2,3}, truth 0 at {1,3} -> 2*1/4
    assert M.f1(P, T, positive=0) == pytest.approx(0.5)
    assert M.iou(P.astype(bool), T.astype(bool)) == pytest.approx(1 / 3)
    assert M.iou(P.astype(np.float32), T) == pytest.approx(1 / 3)


def test_empty_masks():
    z = np.zeros((3, 3), np.uint8)
    one = z.copy()
    one[1, 1] = 1
    # nothing to find and nothing found: undefined, never a perfect 1.0 (issue 13)
    assert np.isnan(M.iou(z, z)) and np.isnan(M.dice(z, z)) and np.isnan(M.f1(z, z))
    assert M.format_score(M.iou(z, z)) == "undefined" and M.format_score(0.5) == "0.5000"
    assert M.iou(one, z) == 0.0  # something predicted where there is nothing
    assert M.iou(z, one) == 0.0  # something missed
    assert M.dice(z, one) == 0.0


def test_ignore_pixels_left_out():
    truth = np.array([[1, 255, 0, 1]])
    pred = np.array([[1, 1, 1, 0]])
    # scored pixels: pred [1, 1, 0] vs truth [1, 0, 1]: intersection 1, union 3, 1 of 3 right
    assert M.iou(pred, truth, ignore_index=255) == pytest.approx(1 / 3)
    assert M.pixel_accuracy(pred, truth, ignore_index=255) == pytest.approx(1 / 3)
    assert M.dice(pred, truth, ignore_index=255) == pytest.approx(0.5)


def test_multiclass_per_class_by_hand():
    truth = np.array([0, 1, 2, 2])
    pred = np.array([0, 2, 2, 1])
    out = M.iou(pred, truth, classes=3)
    assert out == pytest.approx({0: 1.0, 1: 0.0, 2: 1 / 3})
    assert M.dice(pred, truth, classes=3) == pytest.approx({0: 1.0, 1: 0.0, 2: 0.5})
    # auto: labels beyond 0/1 give a dict for every label present
    assert M.iou(pred, truth) == pytest.approx({0: 1.0, 1: 0.0, 2: 1 / 3})
    # an explicit class list; class 5 is absent from both -> undefined
    out = M.iou(pred, truth, classes=[2, 5])
    assert out[2] == pytest.approx(1 / 3) and np.isnan(out[5])
    assert M.pixel_accuracy(pred, truth) == pytest.approx(0.5)
    cm = M.confusion_matrix(pred, truth, 3)
    assert cm.tolist() == [[1, 0, 0], [0, 0, 1], [0, 1, 1]]


@pytest.mark.parametrize(
    "pred, truth, kwargs, match",
    [
        (np.zeros((2, 3)), np.zeros((3, 2)), {}, "shape"),
        (np.zeros((0, 3)), np.zeros((0, 3)), {}, "empty"),
        (np.array([0.0, np.nan]), np.array([0, 1]), {}, "NaN"),
        (np.array([0.0, 0.4]), np.array([0, 1]), {}, "fractional"),
        (np.array([0, -1]), np.array([0, 1]), {}, "negative"),
        (np.array([0, 2]), np.array([0, 1]), {"classes": 2}, "classes=2"),
        (np.array([0, 1]), np.array([255, 255]), {"ignore_index": 255}, "ignore_index=255"),
        (np.array(["a", "b"]), np.array([0, 1]), {}, "dtype"),
    ],
)
def test_bad_inputs(pred, truth, kwargs, match):
    with pytest.raises(InputError, match=match):
        M.iou(pred, truth, **kwargs)


def test_rand_and_vi_merge_by_hand():
    truth = np.zeros((4, 4), int)
    truth[:, :2], truth[:, 2:] = 1, 2
    merged = np.ones((4, 4), int)
    # Ordered pairs of distinct pixels: together in both 2*8*7 = 112, in truth 112, in prediction 16*15 = 240.
    # precision 112/240 = 7/15, recall 1 -> F = 7/11, error 4/11.
    r = M.rand_error(merged, truth, details=True)
    assert r["error"] == pytest.approx(4 / 11)
    assert r["precision"] == pytest.approx(7 / 15)
    assert r["recall"] == pytest.approx(1.0)
    assert M.rand_error(merged, truth) == pytest.approx(4 / 11)
    vi = M.variation_of_information(merged, truth)
    assert vi == pytest.approx({"vi": 1.0, "split": 0.0, "merge": 1.0})  # one bit lost: which half?
    # the other way round: the prediction splits one true segment in two
    r2 = M.rand_error(truth, merged, details=True)
    assert r2["error"] == pytest.approx(4 / 11)
    assert (r2["precision"], r2["recall"]) == pytest.approx((1.0, 7 / 15))
    assert M.variation_of_information(truth, merged) == pytest.approx({"vi": 1.0, "split": 1.0, "merge": 0.0})
    assert M.rand_error(truth, truth) == 0.0


def test_rand_error_matches_skimage_on_random_labels(rng):
    from skimage.metrics import adapted_rand_error

    truth = rng.integers(1, 5, (20, 20))
    pred = rng.integers(0, 4, (20, 20))
    assert M.rand_error(pred, truth) == pytest.approx(adapted_rand_error(truth, pred)[0])


def _membrane_truth():
    t = np.zeros((5, 5), np.uint8)
    t[:, 2] = 1  # one membrane column: cells of 10 pixels left and right
    return t


def test_membrane_rand_and_vi_by_hand():
    truth = _membrane_truth()
    assert M.rand_error(truth, truth, membrane=True) == 0.0
    # no membrane predicted: one cell; the 20 cell pixels of the truth are all merged:
    # together 2*10*9 = 180, truth pairs 180, prediction pairs 20*19 = 380 -> F = 9/14, error 5/14
    none = np.zeros_like(truth)
    assert M.rand_error(none, truth, membrane=True) == pytest.approx(5 / 14)
    assert M.variation_of_information(none, truth, membrane=True)["merge"] == pytest.approx(1.0)
    # a gap in the predicted membrane merges the cells just the same
    gap = truth.copy()
    gap[2, 2] = 0
    assert M.rand_error(gap, truth, membrane=True) == pytest.approx(5 / 14)
    # a thicker membrane with the right topology costs nothing: membrane pixels join the nearest cell
    thick = truth.copy()
    thick[:, 3] = 1
    assert M.rand_error(thick, truth, membrane=True) == pytest.approx(0.0)
    assert M.variation_of_information(thick, truth, membrane=True)["vi"] == pytest.approx(0.0)


def test_membrane_cells_and_ignore():
    truth = _membrane_truth()
    cells = M.membrane_to_cells(truth)
    assert cells[0, 0] != cells[0, 4] and cells[0, 2] == 0 and cells.max() == 2
    filled = M.membrane_to_cells(np.pad(np.ones((1, 1)), 1), fill=True)
    assert (filled == 1).all()
    # ignored truth pixels are left out: hiding the right cell leaves one cell, which "none" gets right
    t = truth.copy()
    t[:, 3:] = 255
    assert M.rand_error(np.zeros_like(t), t, membrane=True, ignore_index=255) == pytest.approx(0.0)
    with pytest.raises(InputError, match="2D"):
        M.rand_error(np.zeros((2, 5, 5)), np.zeros((2, 5, 5)), membrane=True)
    with pytest.raises(InputError, match="no labelled segment"):
        M.rand_error(np.zeros((3, 3), int), np.zeros((3, 3), int))


def test_score_stack_binary_pools_pixels():
    pred = np.stack([np.array([[1, 1, 0, 0]]), np.zeros((1, 4), int), np.array([[1, 1, 1, 1]])])
    truth = np.stack([np.array([[1, 0, 1, 0]]), np.zeros((1, 4), int), np.full((1, 4), 255)])
    out = M.score_stack(pred, truth, ignore_index=255)
    s0, s1, s2 = out["per_slice"]
    assert s0["iou"] == pytest.approx(1 / 3) and s0["pixels"] == 4
    assert np.isnan(s1["iou"]) and np.isnan(s1["dice"])  # empty slice predicted empty: undefined
    assert s2 == {"index": 2, "pixels": 0}  # every pixel ignored: nothing scored
    # pooled: intersection 1, union 3 over slices 0 and 1
    o = out["overall"]
    assert o["iou"] == pytest.approx(1 / 3) and o["pixels"] == 8 and o["slices"] == 3
    assert o["pixel_accuracy"] == pytest.approx(6 / 8)
    assert o["precision"] == pytest.approx(0.5) and o["recall"] == pytest.approx(0.5)
    # a 2D pair is one slice
    assert M.score_stack(P, T)["overall"]["iou"] == pytest.approx(1 / 3)


def test_score_stack_multiclass_and_membrane():
    truth = np.array([[[0, 1, 2, 2]]])
    pred = np.array([[[0, 2, 2, 1]]])
    o = M.score_stack(pred, truth, mode="multiclass", classes=3)["overall"]
    assert o["iou"] == pytest.approx({0: 1.0, 1: 0.0, 2: 1 / 3})
    assert o["mean_iou"] == pytest.approx((1 + 0 + 1 / 3) / 3)
    assert o["mean_dice"] == pytest.approx(0.5)

    t = np.stack([_membrane_truth()] * 2)
    p = np.stack([_membrane_truth(), np.zeros((5, 5), np.uint8)])
    out = M.score_stack(p, t, mode="membrane")
    assert out["per_slice"][0]["rand_error"] == 0.0
    assert out["per_slice"][1]["rand_error"] == pytest.approx(5 / 14)
    assert out["per_slice"][1]["f1"] == 0.0
    assert out["overall"]["rand_error"] == pytest.approx(5 / 28)
    assert out["overall"]["vi_merge"] == pytest.approx(0.5)
    assert out["overall"]["f1"] == pytest.approx(2 * 5 / (5 + 10))
    # the membrane class's IoU and Dice come with it (Dice == F1): the same as mode="binary"
    binary = M.score_stack(p, t, mode="binary")["overall"]
    assert out["overall"]["dice"] == out["overall"]["f1"] == binary["dice"]
    assert out["overall"]["iou"] == pytest.approx(5 / 10) == binary["iou"]
    assert out["per_slice"][0]["iou"] == 1.0 and out["per_slice"][1]["iou"] == 0.0


def test_score_stack_bad_inputs():
    with pytest.raises(InputError, match="mode"):
        M.score_stack(P, T, mode="fancy")
    with pytest.raises(InputError, match="shape"):
        M.score_stack(np.zeros((2, 4, 4)), np.zeros((2, 4, 5)))
    with pytest.raises(InputError, match="2D or 3D"):
        M.score_stack(np.zeros((1, 2, 4, 4)), np.zeros((1, 2, 4, 4)))


def test_score_stack_reads_any_binary_truth_encoding():
    """0/255, bool, 16-bit and label-id truth are all 'nonzero = object' in binary mode."""
    pred = np.array([[[1, 1, 0, 0]]], np.uint8)
    truth01 = np.array([[[1, 0, 1, 0]]], np.uint8)
    expected = M.score_stack(pred, truth01)["overall"]["iou"]
    assert expected == pytest.approx(1 / 3)
    for truth in (truth01 * 255, truth01.astype(bool), truth01.astype(np.uint16) * 65535,
                  np.array([[[7, 0, 9, 0]]], np.int32)):
        assert M.score_stack(pred, truth)["overall"]["iou"] == pytest.approx(expected)
    # a prediction saved as 0/255 too
    assert M.score_stack(pred * 255, truth01 * 255)["overall"]["iou"] == pytest.approx(expected)
    # an explicit ignore value still means "unlabelled", even in a 0/255 mask
    t = np.array([[[255, 0, 255, 0, 3]]], np.uint8)
    out = M.score_stack(np.array([[[1, 1, 0, 0, 1]]]), t, ignore_index=3)["overall"]
    assert out["pixels"] == 4 and out["iou"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("bad", [np.array([0.0, np.nan]), np.array([0.0, 0.4]), np.array(["a", "b"]),
                                 np.zeros((0, 3))])
def test_metrics_and_training_read_labels_with_one_reader(bad):
    """metrics and training.masks refuse bad labels with the same sentence (one reader)."""
    from napari_segnets.training.masks import to_targets

    with pytest.raises(InputError) as scored:
        M.iou(bad, np.zeros(bad.shape, np.uint8))
    with pytest.raises(InputError) as trained:
        to_targets(bad, what="prediction")
    assert str(scored.value) == str(trained.value)
