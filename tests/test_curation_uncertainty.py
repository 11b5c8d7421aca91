"""Ranking slices and tiles by model uncertainty."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segnets.curation import Store, rank_uncertainty, uncertainty_map
from napari_segnets.errors import InputError


def _confident_stack(z=4, shape=(16, 16)):
    p = np.full((z, *shape), 0.02, np.float32)
    p[:, :, shape[1] // 2 :] = 0.97
    return p


@pytest.mark.parametrize("method", ["entropy", "margin"])
def test_unsure_slice_ranks_first(method):
    p = _confident_stack()
    p[2] = 0.5
    ranking = rank_uncertainty(p, method=method)
    assert [k for k, _ in ranking][0] == 2
    assert ranking[0][1] == pytest.approx(1.0)
    assert all(s < 0.25 for _, s in ranking[1:])
    assert sorted(k for k, _ in ranking) == [0, 1, 2, 3]


def test_scores_by_hand():
    # binary entropy of 0.5 is 1 bit; of 0.1 it is 0.469 bits; margin of 0.1 is 1 - |0.2 - 1| = 0.2
    assert uncertainty_map(np.full((2, 2), 0.1))[0, 0] == pytest.approx(0.468996, abs=1e-5)
    assert uncertainty_map(np.full((2, 2), 0.1), "margin")[0, 0] == pytest.approx(0.2)
    # three classes: uniform = maximum entropy; (0.6, 0.3, 0.1) margin = 1 - 0.3
    uniform = np.full((3, 2, 2), 1 / 3)
    assert uncertainty_map(uniform)[0, 0] == pytest.approx(1.0, abs=1e-5)
    probs = np.broadcast_to(np.array([0.6, 0.3, 0.1])[:, None, None], (3, 2, 2))
    assert uncertainty_map(probs, "margin")[0, 0] == pytest.approx(0.7)
    assert uncertainty_map(np.full((1, 2, 2), 0.5))[0, 0] == pytest.approx(1.0)


def test_multiclass_stack_is_class_first():
    p = np.zeros((3, 5, 8, 8), np.float32)  # (C, Z, Y, X): three classes, five slices
    p[0] = 0.9
    p[1] = 0.05
    p[2] = 0.05
    p[:, 1] = 1 / 3
    for method in ("entropy", "margin"):
        ranking = rank_uncertainty(p, method=method)
        assert sorted(k for k, _ in ranking) == [0, 1, 2, 3, 4]
        assert ranking[0] == (1, pytest.approx(1.0, abs=1e-5))


def test_ranks_slices_of_what_predict_returns_with_defaults(rng):
    """rank_uncertainty(predict(...)) on a multi-class result ranks slices, not classes."""
    import torch

    from napari_segnets.inference import predict
    from napari_segnets.models import build

    torch.manual_seed(0)
    model = build("unet", classes=3, base=8, depth=2).eval()
    image = (rng.random((5, 32, 32)) * 255).astype(np.uint8)
    image[3] = 128  # a flat slice: the random net's softmax is the same everywhere there
    prob = predict(model, image, device="cpu")
    assert prob.shape == (3, 5, 32, 32)
    ranking = rank_uncertainty(prob)
    assert sorted(k for k, _ in ranking) == [0, 1, 2, 3, 4]
    by_hand = {z: float(uncertainty_map(prob[:, z]).mean()) for z in range(5)}
    assert dict(ranking) == pytest.approx(by_hand)
    flips = rank_uncertainty(prob, method="flip_disagreement", image=image,
                             flips=lambda s: predict(model, s, device="cpu"))
    assert sorted(k for k, _ in flips) == [0, 1, 2, 3, 4]


def test_tiles_and_exclude():
    p = _confident_stack(z=3, shape=(20, 20))
    p[1, 8:16, 0:8] = 0.5  # one unsure tile in slice 1
    ranking = rank_uncertainty(p, tiles=(8, 8))
    assert ranking[0] == ((1, 8, 0, 16, 8), pytest.approx(1.0))
    keys = [k for k, _ in ranking]
    assert len(keys) == 3 * 9  # 20 = 8 + 8 + 4: edge tiles are smaller
    assert (0, 16, 16, 20, 20) in keys
    # excluding the slice, or just that region, removes it from the ranking
    assert all(k[0] != 1 for k in [k for k, _ in rank_uncertainty(p, tiles=(8, 8), exclude=[1])])
    ranked = rank_uncertainty(p, tiles=(8, 8), exclude=[(1, 10, 2, 12, 4)])
    assert (1, 8, 0, 16, 8) not in [k for k, _ in ranked] and len(ranked) == 26
    assert [k for k, _ in rank_uncertainty(p, exclude=[0, 2])] == [1]


def test_exclude_what_the_store_holds(tmp_path):
    p = _confident_stack()
    p[2] = 0.5
    p[3] = 0.4
    store = Store(tmp_path / "s")
    store.add(np.zeros((16, 16)), np.ones((16, 16), np.uint8), source="stack.tif", index=2)
    store.add(np.zeros((4, 4)), np.ones((4, 4), np.uint8), source="stack.tif", index=3, region=(0, 0, 4, 4))
    store.add(np.zeros((16, 16)), np.ones((16, 16), np.uint8), source="other.tif", index=3)
    covered = store.covered("stack.tif")
    assert covered == [2, (3, 0, 0, 4, 4)]
    assert rank_uncertainty(p, exclude=covered)[0][0] == 3  # slice 2 is done, a region of 3 is not all
    tiles = rank_uncertainty(p, tiles=(8, 8), exclude=covered)
    assert tiles[0][0] == (3, 0, 8, 8, 16) and len(tiles) == 4 * 3 - 1


def test_flip_disagreement_from_a_list():
    p = _confident_stack()
    same = [p.copy(), p.copy(), p.copy()]
    assert all(s == 0 for _, s in rank_uncertainty(p, method="flip_disagreement", flips=same))
    other = p.copy()
    other[3] = 1 - other[3]  # the flipped prediction of slice 3 says the opposite
    ranking = rank_uncertainty(p, method="flip_disagreement", flips=[p, other])
    assert ranking[0][0] == 3 and ranking[0][1] > 0.5
    assert ranking[1][1] == 0.0


def test_flip_disagreement_from_a_function(rng):
    image = rng.random((3, 16, 16)).astype(np.float32)
    def pixelwise(stack):  # flip-equivariant: no disagreement at all
        return 1 / (1 + np.exp(-(stack - 0.5) * 8))

    p = pixelwise(image)
    ranking = rank_uncertainty(p, method="flip_disagreement", flips=pixelwise, image=image)
    assert max(s for _, s in ranking) == pytest.approx(0.0, abs=1e-6)
    ramp = np.linspace(0, 1, 16, dtype=np.float32)

    def biased(stack):  # looks at position too: disagrees with itself under flips where the image is flat
        flat = stack.std(axis=(1, 2), keepdims=True) < 0.1
        return np.where(flat, np.broadcast_to(ramp, stack.shape), pixelwise(stack))

    image[1] = 0.5
    p = biased(image)
    calls = []
    ranking = rank_uncertainty(p, method="flip_disagreement",
                               flips=lambda s: calls.append(len(s)) or biased(s), image=image, exclude=[2])
    assert ranking[0][0] == 1 and ranking[0][1] > 0.3
    assert calls == [1] * 6  # per kept slice, one call per flip; the excluded slice is not predicted


@pytest.mark.parametrize(
    "probs, kwargs, match",
    [
        (np.full((2, 4, 4), np.nan), {}, "NaN"),
        (np.full((2, 4, 4), 3.0), {}, "logits"),
        (np.zeros((2, 2, 2, 4, 4)), {}, "shape"),
        (np.zeros((3, 2, 4, 4)), {"method": "flip_disagreement", "flips": [np.zeros((2, 3, 4, 4))]},
         r"\(3, 2, 4, 4\)"),
        (np.zeros((0, 4, 4)), {}, "shape"),
        (np.zeros((2, 4, 4)), {"method": "vote"}, "method"),
        (np.zeros((2, 4, 4)), {"method": "flip_disagreement"}, "flips"),
        (np.zeros((2, 4, 4)), {"method": "flip_disagreement", "flips": lambda s: s}, "image"),
        (np.zeros((2, 4, 4)), {"method": "flip_disagreement", "flips": lambda s: s[:, :2],
                               "image": np.zeros((2, 4, 4))}, "returned shape"),
        (np.zeros((2, 4, 4)), {"method": "flip_disagreement", "flips": [np.zeros((2, 4, 5))]}, "match"),
        (np.zeros((2, 4, 4)), {"tiles": (0, 4)}, "positive"),
        (np.zeros((2, 4, 4)), {"tiles": 4}, "pair"),
        (np.zeros((2, 4, 4)), {"exclude": ["a"]}, "exclude"),
    ],
)
def test_bad_inputs(probs, kwargs, match):
    with pytest.raises(InputError, match=match):
        rank_uncertainty(probs, **kwargs)


def test_single_2d_map():
    assert rank_uncertainty(np.full((4, 4), 0.5)) == [(0, pytest.approx(1.0))]


def test_iter_reports_progress_and_matches_plain():
    from napari_segnets.curation import rank_uncertainty_iter

    p = _confident_stack()
    p[1] = 0.5
    job = rank_uncertainty_iter(p, exclude=[3])
    events = []
    try:
        while True:
            events.append(next(job))
    except StopIteration as stop:
        result = stop.value
    assert [(e.stage, e.done, e.total) for e in events] == [("rank", 1, 3), ("rank", 2, 3), ("rank", 3, 3)]
    assert result == rank_uncertainty(p, exclude=[3])
    # closing the generator early (cancel) just stops it
    job = rank_uncertainty_iter(p)
    next(job)
    job.close()


def test_class_first_probabilities_stay_lazy():
    """predict returns (C, Z, Y, X); ranking reads it slice by slice without materialising it."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 5, 8, 8)) * np.array([0.1, 3, 1, 0.5, 2])[None, :, None, None]
    czyx = np.exp(logits) / np.exp(logits).sum(0, keepdims=True)

    class Counting:
        def __init__(self, a):
            self.a, self.shape, self.ndim, self.dtype, self.reads = a, a.shape, a.ndim, a.dtype, []

        def __getitem__(self, key):
            self.reads.append(key)
            return self.a[key]

        def __array__(self, *args, **kwargs):
            raise AssertionError("the whole stack was materialised")

    lazy = Counting(czyx)
    expected = [(z, float(uncertainty_map(czyx[:, z]).mean())) for z in range(5)]
    got = rank_uncertainty(lazy, method="entropy")
    assert sorted(got) == pytest.approx(sorted(expected))
    assert len(lazy.reads) == 5 and all(k[0] == slice(None) for k in lazy.reads)
    assert got[0][0] == 0, "the flattest softmax (slice 0) is the most uncertain"
