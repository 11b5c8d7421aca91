"""The prepared-model cache: reused while the weights stay, rebuilt when they change."""

from __future__ import annotations

import gc

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_segnets.inference import predict  # noqa: E402
from napari_segnets.inference import prepared as prep  # noqa: E402
from napari_segnets.models import build  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True)
def _empty_cache():
    prep.clear_prepared()
    yield
    prep.clear_prepared()


def _model():
    torch.manual_seed(0)
    return build("unet", base=4, depth=2).eval()


def _image():
    return np.random.default_rng(0).integers(0, 255, (48, 56), dtype=np.uint8)


def _misses(fn):
    before = prep.stats["misses"]
    out = fn()
    return prep.stats["misses"] - before, out


def test_second_call_reuses_the_prepared_copy():
    model, image = _model(), _image()
    n1, a = _misses(lambda: predict(model, image))
    n2, b = _misses(lambda: predict(model, image))
    assert (n1, n2) == (1, 0)
    np.testing.assert_array_equal(a, b)
    with prep.prepared_model(model, "cpu") as net1, prep.prepared_model(model, "cpu") as net2:
        assert net1 is net2 and net1 is not model


@pytest.mark.parametrize(
    "change",
    ["optimizer_step", "load_state_dict", "in_place", "replace_data", "batchnorm_stats", "hook"],
)
def test_changed_weights_rebuild_the_copy(change):
    model, image = _model(), _image()
    predict(model, image)
    if change == "optimizer_step":
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        model(torch.rand(1, 1, 32, 32)).mean().backward()
        opt.step()
        model.eval()
    elif change == "load_state_dict":
        other = build("unet", base=4, depth=2)
        model.load_state_dict(other.state_dict())
    elif change == "in_place":
        with torch.no_grad():
            next(model.parameters()).mul_(-1)
    elif change == "replace_data":
        p = next(model.parameters())
        p.data = -p.data.clone()
    elif change == "hook":  # the copy carries the model's hooks: a new hook needs a new copy
        model.register_forward_hook(lambda mod, inp, out: out * 0.5)
    else:  # a training-mode forward updates the batch-norm running statistics only
        model.train()
        with torch.no_grad():
            model(torch.rand(2, 1, 32, 32) * 5)
        model.eval()
    n, got = _misses(lambda: predict(model, image))
    assert n == 1
    prep.clear_prepared()
    fresh = predict(model, image)
    np.testing.assert_array_equal(got, fresh)


def test_options_and_models_have_their_own_entries():
    model, other = _model(), _model()
    with prep.prepared_model(model, "cpu") as a, prep.prepared_model(model, "cpu", fold=False) as b:
        assert a is not b
    with prep.prepared_model(other, "cpu") as c:
        assert c is not a
    with prep.prepared_model(model, "cpu", cache=False) as d:
        assert d is not a


def test_a_dropped_model_drops_its_copy():
    model = _model()
    with prep.prepared_model(model, "cpu"):
        pass
    assert len(prep._entries) == 1
    del model
    gc.collect()
    with prep.prepared_model(_model(), "cpu"):  # entries of collected models go at the next call
        pass
    assert len(prep._entries) == 1


def test_cache_is_bounded():
    models = [_model() for _ in range(prep.MAX_ENTRIES + 2)]
    for m in models:
        with prep.prepared_model(m, "cpu"):
            pass
    assert len(prep._entries) == prep.MAX_ENTRIES


def test_inference_mode_models_are_not_cached():
    with torch.inference_mode():
        model = _model()
    assert prep.weights_version(model) is None
    with prep.prepared_model(model, "cpu") as a, prep.prepared_model(model, "cpu") as b:
        assert a is not b


def test_a_collected_model_never_deadlocks_the_cache():
    """The weakref callback can fire inside the locked region (a GC during an insert)."""
    with prep._lock:
        prep._forget(("gone",))  # used to take the (non-reentrant) lock again: a hang
    model = _model()
    with prep.prepared_model(model, "cpu"):
        pass
    assert ("gone",) not in prep._dead  # swept at the next call
