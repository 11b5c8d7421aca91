"""Tiled inference: lazy inputs, Zarr outputs, cancel, progress, out-of-memory retry, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from napari_segnets.errors import InputError  # noqa: E402
from napari_segnets.inference import create_output, predict, predict_iter  # noqa: E402
from napari_segnets.progress import Progress  # noqa: E402

FIXED = {"mode": "fixed", "vmin": 0.0, "vmax": 255.0}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def unet():
    from napari_segnets.models import build

    torch.manual_seed(0)
    return build("unet", base=8, depth=2, classes=1).eval()


@pytest.fixture
def stack(rng):
    return rng.integers(0, 256, size=(3, 70, 90)).astype(np.uint8)


class Counting:
    """An array that records every read (how many pixels each ``__getitem__`` returned)."""

    def __init__(self, data):
        self.data = data
        self.shape, self.dtype, self.ndim = data.shape, data.dtype, data.ndim
        self.reads: list[int] = []

    def __getitem__(self, key):
        block = np.asarray(self.data[key])
        self.reads.append(block.size)
        return block


def test_numpy_wrapper_is_read_tile_by_tile(unet, stack):
    src = Counting(stack)
    got = predict(unet, src, tile=80, normalization=FIXED)
    np.testing.assert_allclose(got, predict(unet, stack, tile=80, normalization=FIXED), atol=1e-6)
    assert max(src.reads) <= 80 * 80  # never more than one tile window at a time
    assert len(src.reads) >= 3 * 9


def test_dask_input_is_never_materialised(unet, stack):
    da = pytest.importorskip("dask.array")
    src = Counting(stack)
    # One chunk covering the whole stack: any whole-array read would show up as such.
    lazy = da.from_array(src, chunks=stack.shape, asarray=False)
    got = predict(unet, lazy, tile=80, normalization=FIXED)
    np.testing.assert_allclose(got, predict(unet, stack, tile=80, normalization=FIXED), atol=1e-6)
    assert src.reads and max(src.reads) <= 80 * 80


def test_default_normalisation_is_fitted_on_a_lazy_input(unet, stack):
    da = pytest.importorskip("dask.array")
    lazy = da.from_array(stack, chunks=(1, 35, 45))
    got = predict(unet, lazy, tile=80)
    assert np.allclose(got, predict(unet, stack, tile=80), atol=1e-6)


@pytest.mark.parametrize("output, dtype", [("probabilities", "float32"), ("probabilities", "uint8"),
                                           ("probabilities", "float16"), ("labels", "uint8")])  # fmt: skip
def test_zarr_output_equals_in_memory(unet, stack, tmp_path, output, dtype):
    pytest.importorskip("zarr")
    ref = predict(unet, stack, tile=80, output=output, normalization=FIXED)
    out = create_output(
        tmp_path / "p.zarr", stack.shape, 1, output, dtype=dtype, chunks=(1, 32, 32)
    )
    ret = predict(unet, stack, tile=80, output=output, normalization=FIXED, out=out)
    assert ret is out
    got = out[:]
    if dtype == "uint8" and output == "probabilities":
        assert np.abs(got.astype(int) - np.rint(ref * 255)).max() <= 1
    elif dtype == "float16":
        np.testing.assert_allclose(got, ref, atol=1e-3)
    else:
        np.testing.assert_array_equal(got, ref)


def test_multiclass_output_into_zarr(tmp_path, stack):
    from napari_segnets.models import build

    torch.manual_seed(0)
    model = build("unet", base=8, depth=2, classes=3)
    ref = predict(model, stack[0], tile=80, normalization=FIXED)
    out = create_output(tmp_path / "m.zarr", stack[0].shape, 3, dtype="float32")
    predict(model, stack[0], tile=80, normalization=FIXED, out=out)
    assert out.shape == (3, 70, 90)
    np.testing.assert_array_equal(out[:], ref)


def test_closing_the_generator_stops_within_one_batch(unet, stack):
    calls = []
    hook = unet.register_forward_hook(lambda *a: calls.append(1))
    try:
        out = np.zeros(stack.shape, np.float32)
        job = predict_iter(unet, stack, tile=80, batch_size=2, out=out, normalization=FIXED)
        first = next(job)
        assert isinstance(first, Progress) and not calls  # nothing runs before the first event
        event = next(job)
        assert len(calls) == 1 and event.done == 2 and event.total == 3 * 9
        job.close()
        assert len(calls) == 1
        assert not out[1:].any()  # later slices untouched
    finally:
        hook.remove()
    assert not unet.training


def test_progress_counts_every_tile(unet, stack):
    events = list(_events(predict_iter(unet, stack, tile=80, batch_size=5, normalization=FIXED)))
    done = [e.done for e in events if e.total]
    assert done == sorted(done) and done[-1] == events[-1].total == 27
    assert "slice 3/3" in events[-1].message


def _events(job):
    while True:
        try:
            yield next(job)
        except StopIteration:
            return


class OOMAbove(nn.Module):
    """Wraps a model and raises the device out-of-memory error for tiles wider than ``limit``."""

    def __init__(self, inner, limit):
        super().__init__()
        self.inner, self.limit = inner, limit
        for k in ("arch", "task", "in_channels", "out_channels", "size_multiple", "halo"):
            setattr(self, k, getattr(inner, k))

    def forward(self, x):
        if x.shape[-1] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.inner(x)


def test_out_of_memory_halves_the_tile_and_says_so(unet, stack):
    ref = predict(unet, stack, tile=80, blend="none", normalization=FIXED)
    job = predict_iter(OOMAbove(unet, 80), stack, tile=112, blend="none", normalization=FIXED)
    events = []
    while True:
        try:
            events.append(next(job))
        except StopIteration as stop:
            got = stop.value
            break
    assert any("Out of memory" in e.message for e in events)
    assert events[-1].payload["tile"][1] <= 80
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_out_of_memory_at_the_smallest_tile_is_reported(unet, stack):
    from napari_segnets.errors import SegnetsError

    with pytest.raises(SegnetsError, match="ran out of memory"):
        predict(OOMAbove(unet, 8), stack, tile=112, normalization=FIXED)


@pytest.mark.parametrize(
    "image, kwargs, match",
    [
        (np.zeros((2, 2, 32, 32)), {}, "4 dimensions"),
        (np.zeros((64, 64, 3)), {}, "RGB"),
        (np.zeros((0, 32)), {}, "empty"),
        (np.full((32, 32), np.nan), {}, "NaN"),
        (np.zeros((32, 32), complex), {}, "dtype"),
        (np.zeros((32, 32)), {"tile": 30}, "multiple"),
        (np.zeros((32, 32)), {"tile": 40}, "halo"),
        (np.zeros((32, 32)), {"tile": 80, "overlap": 0.1}, "twice the halo"),
        (np.zeros((32, 32)), {"blend": "cubic"}, "blend"),
        (np.zeros((32, 32)), {"output": "reconstruction"}, "reconstruction"),
        (np.zeros((32, 32)), {"output": "edges"}, "output"),
        (np.zeros((32, 32)), {"strided": "shift_and_stitch"}, "forward_coarse"),
        (np.zeros((32, 32)), {"out": np.zeros((31, 32), np.float32)}, "shape"),
        (np.zeros((32, 32)), {"out": np.zeros((32, 32), np.int16)}, "dtype"),
        (np.zeros((32, 32)), {"batch_size": 0}, "batch_size"),
        (np.zeros((32, 32)), {"amp": "fp8"}, "amp"),
    ],
)
def test_bad_inputs_raise_clear_errors(unet, image, kwargs, match):
    with pytest.raises(InputError, match=match):
        predict(unet, image, **kwargs)


def test_nan_in_a_lazy_input_is_caught(unet, stack):
    da = pytest.importorskip("dask.array")
    bad = stack.astype(np.float32)
    bad[2, 60, 80] = np.nan
    with pytest.raises(InputError, match="NaN"):
        predict(unet, da.from_array(bad, chunks=(1, 70, 90)), tile=80, normalization=FIXED)


def test_autoencoder_refuses_probabilities():
    from napari_segnets.models import build

    ae = build("unet", base=8, depth=2, task="autoencode")
    with pytest.raises(InputError, match="autoencoder"):
        predict(ae, np.zeros((32, 32)), output="probabilities")
