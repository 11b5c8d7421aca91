"""CUDA inference: tiled == untiled, reduced precision, out-of-memory back-off, cancel.

All ``gpu``-marked: skipped without CUDA (run by ``benchmarks/gpu_check.py`` on a lent GPU).
"""

from __future__ import annotations

import gc

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_segnets.inference import predict, predict_iter, predict_untiled  # noqa: E402

pytestmark = pytest.mark.gpu


@pytest.fixture
def exact_cuda():
    """No TF32 in convolutions/matmuls: tiled vs untiled is then float32 rounding only."""
    conv, mm = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = conv, mm


def _image(shape, seed=0):
    rng = np.random.default_rng(seed)
    from scipy import ndimage

    noise = rng.normal(size=shape)
    sigma = (0, 3, 3) if len(shape) == 3 else 3
    return (ndimage.gaussian_filter(noise, sigma) * 400 + 128).clip(0, 255).astype(np.uint8)


def _model(arch="unet", **kw):
    from napari_segnets.models import build

    torch.manual_seed(0)
    return build(arch, **kw).eval()


@pytest.mark.parametrize(
    "arch,kw", [("unet", {"base": 8, "depth": 3}), ("atrous", {}), ("fcn8s", {"base": 8})]
)
def test_tiled_equals_untiled_on_cuda(exact_cuda, arch, kw):
    model = _model(arch, **kw)
    image = _image((2, 300, 333))
    ref = predict_untiled(model, image, device="cuda", amp=False)
    m, halo = model.size_multiple, model.halo
    tile = -(-(2 * halo + 96) // m) * m
    for blend in ("gaussian", "none"):
        got = predict(model, image, device="cuda", amp=False, tile=tile, blend=blend, batch_size=3)
        np.testing.assert_allclose(got, ref, atol=2e-5, err_msg=f"{arch} blend={blend}")


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_reduced_precision_close_to_float32(amp):
    model = _model("unet", base=16)
    image = _image((512, 512), seed=1)
    ref = predict(model, image, device="cuda", amp=False)
    got = predict(model, image, device="cuda", amp=amp)
    diff = np.abs(got - ref)
    # bf16 keeps 8 bits of mantissa: probabilities move by ~1e-2 at most, labels agree.
    assert diff.max() < 0.05, diff.max()
    assert diff.mean() < 5e-3, diff.mean()
    assert ((got >= 0.5) == (ref >= 0.5)).mean() > 0.995


@pytest.fixture
def memory_cap():
    """Cap this process's CUDA allocator at ``gib`` GiB: allocations beyond it fail for real."""
    dev = torch.device("cuda")
    total = torch.cuda.get_device_properties(dev).total_memory

    def cap(gib):
        torch.cuda.empty_cache()
        torch.cuda.set_per_process_memory_fraction(gib * 2**30 / total, dev)

    yield cap
    torch.cuda.set_per_process_memory_fraction(1.0, dev)
    torch.cuda.empty_cache()


def test_out_of_memory_backs_off_to_smaller_tiles(exact_cuda, memory_cap):
    model = _model("unet", base=16)
    image = _image((4, 1024, 1024), seed=2)
    ref = predict(model, image, device="cuda", amp=False, tile=384, blend="none")
    # A batch of 4 windows of 2048 x 2048 at 16 channels in float32 needs 1 GiB per activation.
    memory_cap(1.0)
    with pytest.raises(torch.OutOfMemoryError):  # the cap is real: a 2 GiB tensor fails
        torch.empty(2**29, dtype=torch.float32, device="cuda")
    messages = []
    job = predict_iter(model, image, device="cuda", amp=False, tile=2048, batch_size=4, blend="none")
    try:
        while True:
            messages.append(next(job).message)
    except StopIteration as stop:
        got = stop.value
    assert any("Out of memory" in m for m in messages), messages
    np.testing.assert_allclose(got, ref, atol=2e-5)


def test_default_tile_survives_a_capped_allocator(memory_cap):
    """The probe sizes windows from the free device memory, which the cap hides: back-off catches it."""
    model = _model("unet", base=16)
    image = _image((2048, 2048), seed=3)
    memory_cap(1.5)
    got = predict(model, image, device="cuda", amp="bf16")
    assert got.shape == image.shape and np.isfinite(got).all()


def test_cancel_mid_run_frees_the_device():
    model = _model("unet", base=16)
    image = _image((6, 1024, 1024), seed=4)
    full = predict(model, image[:1], device="cuda", tile=320, batch_size=2)
    gc.collect()
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()  # after a whole run: what stays (e.g. a cached model)
    out = np.full((6, 1024, 1024), -1.0, dtype=np.float32)
    job = predict_iter(model, image, device="cuda", tile=320, batch_size=2, out=out)
    events = [next(job) for _ in range(4)]
    job.close()  # what the widget's Cancel does (worker.quit closes the generator)
    assert events[-1].done < events[-1].total
    gc.collect()
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() <= before + 2**20  # no tiles or batches left behind
    assert (out[-1] == -1).all()  # the last slice was never written
    # The device is usable afterwards and gives the same answer as before.
    again = predict(model, image[:1], device="cuda", tile=320, batch_size=2)
    np.testing.assert_array_equal(again, full)
