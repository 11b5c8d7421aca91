"""Tiled inference: exactness against untiled prediction, mirror padding, shift-and-stitch, outputs."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from napari_segnets.inference import (  # noqa: E402
    make_plan,
    predict,
    predict_untiled,
    read_window,
    shift_and_stitch,
)
from napari_segnets.inference.tiling import align_up  # noqa: E402
from napari_segnets.models.parts import ReceptiveField  # noqa: E402

FIXED = {"mode": "fixed", "vmin": 0.0, "vmax": 255.0}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True)
def _float32_cpu(monkeypatch):
    """Tiled == untiled to 1e-5 is a float32 property: these tests run the CPU in float32 even
    where bf16 is the default (CPUs with native bf16, see devices.autocast_dtype)."""
    monkeypatch.setattr("napari_segnets.devices.cpu_has_bf16", lambda: False)


def lively(model, seed=0):
    """Re-initialise weights so activations keep unit scale (default inits shrink deep nets'
    outputs, which would make a 1e-5 tolerance meaningless) and give batch norm real statistics."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d)):
                fan_in = (
                    mod.weight[0].numel() if isinstance(mod, nn.Conv2d) else mod.weight.shape[0]
                )
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                if mod.bias is not None:
                    mod.bias.copy_(torch.randn(mod.bias.shape, generator=g) * 0.1)
            elif isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.copy_(torch.randn(mod.running_mean.shape, generator=g) * 0.1)
                mod.running_var.copy_(torch.rand(mod.running_var.shape, generator=g) + 0.5)
    return model.eval()


class ToyFCN(nn.Module):
    """A strided net: conv, pool 2, conv, pool 2, 1x1 scores; coarse stride 4, bilinear x4 up."""

    def __init__(self, classes=2, padding=1, width=6):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=padding)
        self.conv2 = nn.Conv2d(width, width, 3, padding=padding)
        self.score = nn.Conv2d(width, classes, 1)
        self.arch, self.task, self.in_channels, self.out_channels = "toyfcn", "segment", 1, classes
        self.size_multiple = self.coarse_stride = 4
        rf = ReceptiveField().conv().pool(2).conv().pool(2).up_interp(4)
        self.halo = rf.halo(4)

    def check_input(self, shape):
        assert shape[-1] % 4 == 0 and shape[-2] % 4 == 0

    def forward_coarse(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.score(x)

    def forward(self, x):
        self.check_input(x.shape)
        y = self.forward_coarse(x)
        return F.interpolate(y, scale_factor=4, mode="bilinear", align_corners=False)


def dense_toy(fcn, x):
    """The same (valid-padding) ToyFCN evaluated densely: unit-stride pools, dilated later layers."""
    x = F.relu(F.conv2d(x, fcn.conv1.weight, fcn.conv1.bias))
    x = F.max_pool2d(x, 2, stride=1)
    x = F.relu(F.conv2d(x, fcn.conv2.weight, fcn.conv2.bias, dilation=2))
    x = F.max_pool2d(x, 2, stride=1, dilation=2)
    return F.conv2d(x, fcn.score.weight, fcn.score.bias, dilation=4)


class ToyAtrous(nn.Module):
    """Dilated convs (1, 2, 4), no stride: size multiple 1."""

    def __init__(self, classes=3):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 6, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(6, 6, 3, padding=2, dilation=2),
            nn.BatchNorm2d(6),
            nn.ReLU(),
            nn.Conv2d(6, classes, 3, padding=4, dilation=4),
        )
        self.arch, self.task, self.in_channels, self.out_channels = (
            "toyatrous",
            "segment",
            1,
            classes,
        )
        self.size_multiple, self.halo = 1, 7

    def check_input(self, shape):
        pass

    def forward(self, x):
        return self.body(x)


ZOO = ["unet", "atrous", "fcn32s", "fcn16s", "fcn8s", "linear", "pca"]


def zoo_model(arch):
    from napari_segnets import models

    assert arch in models.available(), f"{arch} left the model zoo"
    kw = {"task": "autoencode"} if arch in ("linear", "pca") else {"classes": 2}
    if arch == "unet":
        kw.update(base=8, depth=3)
    elif arch == "atrous":
        kw.update(base=8)
    elif arch.startswith("fcn"):  # a slim FCN keeps the halo (and the test) small
        kw.update(base=4, fc_kernel=3, convs=(1, 1, 1, 1, 1))
    return lively(models.build(arch, **kw))


def image_for(rng, shape):
    return rng.integers(0, 256, size=shape).astype(np.uint8)


@pytest.mark.parametrize(
    "n, y0, y1", [(7, -5, 12), (7, 3, 5), (1, -3, 4), (5, -13, 20), (9, 2, 30)]
)
def test_read_window_is_numpy_reflect_padding(n, y0, y1):
    img = np.arange(n * 11).reshape(n, 11)
    width = max(-y0, y1 - n, 4) + 1
    padded = np.pad(img, ((0, 0), (width, width)), mode="reflect")
    padded = np.pad(padded, ((width, width), (0, 0)), mode="reflect" if n > 1 else "edge")
    got = read_window(img, None, y0, y1, -4, 15)
    assert np.array_equal(got, padded[y0 + width : y1 + width, width - 4 : width + 15])


def test_plan_cores_cover_the_image_and_start_on_the_stride():
    plan = make_plan((301, 77), tile=160, halo=16, multiple=16, blend="none")
    assert all(c % 16 == 0 for c in plan.ys + plan.xs)
    covered = np.zeros(301, bool)
    for c in plan.ys:
        covered[c : c + plan.core[0]] = True
    assert covered.all()
    assert plan.tile[1] == align_up(77, 16) + 32  # shrunk to the image


def _check_tiled_equals_untiled(model, img, tile, blend="none", overlap=None, output="logits"):
    """Tiled == untiled to 1e-5 with PyTorch's reference convolutions (they sum in the same order
    whatever the input size, so tiling itself must add no error); with oneDNN, which picks kernels
    by input size, to float32 rounding relative to the output's scale."""
    kw = {"output": output, "normalization": FIXED}
    with torch.backends.mkldnn.flags(enabled=False):
        ref = predict_untiled(model, img, **kw)
        got = predict(model, img, tile=tile, blend=blend, overlap=overlap, **kw)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)
    fast = predict(model, img, tile=tile, blend=blend, overlap=overlap, **kw)
    np.testing.assert_allclose(fast, ref, rtol=0, atol=1e-5 * max(1.0, float(np.abs(ref).max())))
    return ref


@pytest.mark.slow
@pytest.mark.parametrize("arch", ZOO)
def test_tiled_equals_untiled_for_every_zoo_family(arch, rng):
    model = zoo_model(arch)
    m, h = model.size_multiple, model.halo
    tile = 2 * h + 2 * m
    core = tile - 2 * h
    slices = 1 if arch.startswith("fcn") else 2  # 3D stacks on the cheaper nets
    img = image_for(rng, (slices, core + 7, 2 * core + 3))  # odd sizes, several tiles per slice
    plan = make_plan(img.shape[1:], tile=tile, halo=h, multiple=m, blend="none")
    assert len(plan) >= 4
    output = "reconstruction" if model.task == "autoencode" else "logits"
    ref = _check_tiled_equals_untiled(model, img, tile, output=output)
    assert np.abs(ref).max() > 0.05  # a live network, not a constant


@pytest.mark.parametrize("net", [ToyFCN, ToyAtrous])
def test_tiled_equals_untiled_for_test_nets(net, rng):
    torch.manual_seed(0)
    model = lively(net())
    m, h = model.size_multiple, model.halo
    img = image_for(rng, (3, 53, 71))
    _check_tiled_equals_untiled(model, img, tile=align_up(2 * h + 8, m))


def test_blended_tiles_equal_untiled_when_the_halo_suffices(rng):
    from napari_segnets.models import build

    model = lively(build("unet", base=8, depth=2, classes=3))
    img = image_for(rng, (61, 90))
    for blend in ("gaussian", "linear"):
        _check_tiled_equals_untiled(
            model, img, tile=80, blend=blend, overlap=64, output="probabilities"
        )


def test_too_small_a_halo_is_not_exact(rng):
    """The exactness tests above can fail: cutting context changes the answer."""
    from napari_segnets.models import build

    model = lively(build("unet", base=8, depth=2))
    img = image_for(rng, (61, 90))
    ref = predict_untiled(model, img, output="logits", normalization=FIXED)
    got = predict(model, img, tile=32, halo=4, blend="none", output="logits", normalization=FIXED)
    assert np.abs(got - ref).max() > 1e-2


class Neighbour(nn.Module):
    """Output = the input pixel ``dx`` columns away (a fixed 1x3 kernel): shows the border context."""

    def __init__(self, dx):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, (1, 3), padding=(0, 1), bias=False)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0, 0, 1 + dx] = 1.0
        self.arch, self.task, self.in_channels, self.out_channels = "nb", "autoencode", 1, 1
        self.size_multiple, self.halo = 1, 1

    def check_input(self, shape):
        pass

    def forward(self, x):
        return self.conv(x)


@pytest.mark.parametrize("blend", ["none", "gaussian"])
def test_borders_see_mirrored_context(rng, blend):
    img = image_for(rng, (20, 37)).astype(np.float32)
    right = predict(
        Neighbour(+1), img, tile=16, output="reconstruction", normalization=FIXED, blend=blend
    )
    left = predict(
        Neighbour(-1), img, tile=16, output="reconstruction", normalization=FIXED, blend=blend
    )
    np.testing.assert_allclose(right[:, :-1], img[:, 1:], atol=1e-3)
    np.testing.assert_allclose(right[:, -1], img[:, -2], atol=1e-3)  # reflect, not zeros
    np.testing.assert_allclose(left[:, 0], img[:, 1], atol=1e-3)


def test_shift_and_stitch_equals_dense_evaluation():
    torch.manual_seed(0)
    fcn = lively(ToyFCN(classes=2, padding=0))
    x = torch.randn(2, 1, 45, 47)
    with torch.no_grad():
        stitched = shift_and_stitch(fcn.forward_coarse, x, 4, (42, 44))
        dense = dense_toy(fcn, x)
    ny, nx = min(stitched.shape[-2], dense.shape[-2]), min(stitched.shape[-1], dense.shape[-1])
    assert ny >= 36 and nx >= 36
    torch.testing.assert_close(stitched[..., :ny, :nx], dense[..., :ny, :nx], rtol=0, atol=1e-5)


def test_shift_and_stitch_tiled_equals_untiled_and_is_near_the_upsampled_map(rng):
    torch.manual_seed(0)
    model = lively(ToyFCN(classes=2))
    img = image_for(rng, (2, 45, 58))
    kw = {"output": "probabilities", "normalization": FIXED, "strided": "shift_and_stitch"}
    with torch.backends.mkldnn.flags(enabled=False):
        ref = predict_untiled(model, img, **kw)
        got = predict(model, img, tile=48, blend="none", **kw)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    up = predict(model, img, output="probabilities", normalization=FIXED)
    assert not np.allclose(got, up, atol=1e-3)  # the dense map is finer than the upsampled one
    assert np.corrcoef(got.ravel(), up.ravel())[0, 1] > 0.5


@pytest.mark.slow
def test_fcn_zoo_shift_and_stitch_matches_untiled(rng):
    model = zoo_model("fcn8s")
    img = image_for(rng, (30, 45))  # two tiles side by side
    kw = {"output": "logits", "normalization": FIXED, "strided": "shift_and_stitch"}
    with torch.backends.mkldnn.flags(enabled=False):
        ref = predict_untiled(model, img, **kw)
        got = predict(model, img, tile=2 * align_up(model.halo + 8, 32) + 32, blend="none", **kw)
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_outputs_probabilities_labels_reconstruction(rng):
    from napari_segnets.models import build

    img = image_for(rng, (2, 40, 44))
    one = lively(build("unet", base=8, depth=2))
    prob = predict(one, img, tile=80)
    assert (
        prob.shape == img.shape and prob.dtype == np.float32 and 0 <= prob.min() <= prob.max() <= 1
    )
    labels = predict(one, img, tile=80, output="labels", threshold=0.4)
    assert labels.dtype == np.uint8 and np.array_equal(labels, (prob >= 0.4).astype(np.uint8))
    three = lively(build("unet", base=8, depth=2, classes=3))
    p3 = predict(three, img, tile=80)
    assert p3.shape == (3, *img.shape)
    np.testing.assert_allclose(p3.sum(0), 1.0, atol=1e-5)
    l3 = predict(three, img, tile=80, output="labels")
    assert l3.dtype == np.uint8 and np.array_equal(l3, p3.argmax(0))
    # An identity autoencoder gives back the original intensities (normalisation undone).
    ident = Neighbour(0)
    raw = (img.astype(np.float32) * 3 + 1000).astype(np.uint16)
    rec = predict(ident, raw, tile=32, output="reconstruction", normalization={"mode": "minmax"})
    np.testing.assert_allclose(rec, raw, atol=0.05)


@pytest.mark.parametrize("normalization", [
    "percentile", "minmax", {"mode": "fixed", "vmin": 900.0, "vmax": 1900.0}, "meanstd", "none",
    {"mode": "percentile", "low": 0.0, "high": 100.0, "eps": 1e-6, "clip": None},  # a zoo package's
])
def test_identity_autoencoder_round_trips_intensities(rng, normalization):
    """An identity autoencoder gives back the image's intensities under every normalisation: the
    reconstruction is mapped back with the fields each mode fits (mean/std for meanstd, whose
    z-scores are not clipped to [-0.5, 1.5]; vmin/vmax and eps for the others)."""
    raw = (rng.normal(1400, 250, (2, 40, 44))).clip(1000, 1800).astype(np.uint16)
    rec = predict(Neighbour(0), raw, tile=32, output="reconstruction", normalization=normalization)
    assert rec.dtype == np.float32 and rec.shape == raw.shape
    np.testing.assert_allclose(rec, raw, atol=0.05)


def test_tta_averages_the_eight_dihedral_predictions(rng):
    from napari_segnets.models import build

    model = lively(build("unet", base=8, depth=2))
    img = image_for(rng, (48, 64))  # multiples of the stride: flips keep the pooling grid
    kw = {"tile": 80, "blend": "none", "normalization": FIXED}
    got = predict(model, img, tta=True, **kw)
    parts = []
    for k in range(4):
        for flip in (False, True):
            t = np.rot90(img[:, ::-1] if flip else img, k)
            p = np.rot90(predict(model, np.ascontiguousarray(t), **kw), -k)
            parts.append(p[:, ::-1] if flip else p)
    np.testing.assert_allclose(got, np.mean(parts, axis=0), atol=1e-5)
    assert not np.allclose(got, predict(model, img, **kw), atol=1e-4)


def test_prediction_is_deterministic_and_restores_the_model(rng):
    from napari_segnets.models import build

    model = lively(build("unet", base=8, depth=2)).train()
    img = image_for(rng, (2, 50, 70))
    a = predict(model, img, tile=80, batch_size=3)
    b = predict(model, img, tile=80, batch_size=1)
    assert np.array_equal(a, predict(model, img, tile=80, batch_size=3))
    np.testing.assert_allclose(a, b, atol=1e-5)  # oneDNN sums batches of 3 and 1 differently
    assert model.training
    assert next(model.parameters()).is_contiguous()


def test_inference_copy_folds_batch_norm_and_leaves_the_model_alone():
    import torch
    from torch import nn

    from napari_segnets.inference.engine import prepared_model
    from napari_segnets.models import build

    torch.manual_seed(0)
    model = build("unet", base=8, depth=2)
    model.train()
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():  # give the batch norms non-trivial running statistics
        for _ in range(3):
            model(x * 3 + 1)
    model.eval()
    with torch.inference_mode():
        expected = model(x)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with prepared_model(model, torch.device("cpu")) as net:
        assert net is not model
        assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
        with torch.inference_mode():
            got = net(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert model.training and any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("extent", [1, 77, 512, 700, 2048, 2049, 5000])
@pytest.mark.parametrize("halo,multiple,max_tile", [(0, 1, 64), (112, 16, 1536), (288, 32, 1536), (288, 32, 640)])
@pytest.mark.parametrize("blend", ["gaussian", "none"])
def test_balanced_tile_computes_the_fewest_pixels(extent, halo, multiple, max_tile, blend):
    from napari_segnets.inference.engine import balanced_tile

    tile = balanced_tile(extent, halo=halo, multiple=multiple, max_tile=max_tile, blend=blend)
    assert tile % multiple == 0 and 2 * halo + multiple <= tile <= max(max_tile, 2 * halo + multiple)

    def pixels(t):  # windows x size along the axis, as predict's plan places them
        plan = make_plan((extent, extent), tile=t, halo=halo, multiple=multiple, blend=blend)
        return len(plan.ys) * plan.tile[0]

    sizes = range(2 * halo + multiple, max(max_tile, 2 * halo + multiple) + 1, multiple)
    assert pixels(tile) == min(pixels(t) for t in sizes)
    # and never worse than the old fixed core of 512 pixels
    if 2 * halo + 512 <= max_tile:
        assert pixels(tile) <= pixels(align_up(512 + 2 * halo, multiple))


def test_balanced_tile_examples_from_the_benchmark():
    from napari_segnets.inference.engine import balanced_tile

    # FCN-8s (halo 288, multiple 32) on 2048 pixels: 3 windows of 1280, not 4 of 1088
    assert balanced_tile(2048, halo=288, multiple=32, max_tile=1536) == 1280
    # U-Net-16 (halo 112, multiple 16): 2 windows of 1312 with the Gaussian's quarter-tile overlap
    assert balanced_tile(2048, halo=112, multiple=16, max_tile=1536) == 1312
    assert balanced_tile(2048, halo=112, multiple=16, max_tile=1536, blend="none") == 1248


def test_default_cpu_tile_shrinks_for_wide_nets_and_follows_the_slice():
    from napari_segnets.inference.engine import default_tile, full_resolution_width
    from napari_segnets.models import build

    cpu = torch.device("cpu")
    narrow, wide = build("unet", base=16), build("unet", base=64)
    assert full_resolution_width(narrow) == 16 and full_resolution_width(wide) == 64
    side_n = default_tile(narrow, cpu, halo=112, multiple=16, batch_size=1)
    side_w = default_tile(wide, cpu, halo=112, multiple=16, batch_size=1)
    assert side_n == 1344 and side_w == 672
    assert default_tile(narrow, cpu, halo=112, multiple=16, batch_size=1, shape=(2048, 300),
                        blend="none") == (1248, 304 + 224)
    # the default is what predict uses, and it stays exact (blend none, halo = receptive field)
    model = lively(build("unet", base=4, depth=2)).eval()
    img = np.random.default_rng(0).integers(0, 255, size=(100, 130)).astype(np.uint8)
    with torch.backends.mkldnn.flags(enabled=False):
        ref = predict_untiled(model, img, output="logits", normalization=FIXED)
        got = predict(model, img, blend="none", output="logits", normalization=FIXED)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)
