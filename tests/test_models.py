"""Model zoo: shapes, gradients, input checks, budgets, determinism and halo exactness on tiny nets."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from napari_segnets.errors import InputError
from napari_segnets.models import available, build, count_parameters, fit_pca, presets

ARCHS = ["unet", "atrous", "fcn32s", "fcn16s", "fcn8s"]
TINY = {"unet": {"base": 8, "depth": 3}, "atrous": {"base": 8}}
SIZES = {
    "unet": (48, 80),
    "atrous": (37, 53),
    "fcn32s": (64, 96),
    "fcn16s": (64, 96),
    "fcn8s": (64, 96),
}


def tiny(arch, **kw):
    opts = dict(TINY.get(arch, {"base": 4}))
    opts.update(kw)
    return build(arch, **opts)


def test_available_lists_every_family():
    assert available() == ["unet", "atrous", "fcn32s", "fcn16s", "fcn8s", "linear", "pca"]


def test_presets_are_listed_and_build_on_meta():
    table = presets()
    assert {"original", "unet16", "unet8"} <= set(table["unet"])
    assert presets("fcn8s")["vgg16"]["fc_channels"] == 4096
    with torch.device("meta"):
        unet = build("unet", preset="original")
        fcn = build("fcn8s", preset="vgg16")
    # Ronneberger's U-Net has ~31.0 M weights; FCN-8s on VGG-16 ~134 M.
    assert 30.9e6 < count_parameters(unet) < 31.1e6
    assert 134.0e6 < count_parameters(fcn) < 134.6e6
    assert unet.channels == [64, 128, 256, 512, 1024]
    drops = [type(b[-1]).__name__ == "Dropout2d" for b in unet.down]
    assert drops == [False, False, False, True, True]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("task", ["segment", "autoencode"])
def test_output_shapes(arch, task):
    model = tiny(arch, task=task, classes=3)
    h, w = SIZES[arch]
    y = model(torch.randn(2, 1, h, w))
    expected = 3 if task == "segment" else 1
    assert y.shape == (2, expected, h, w)
    assert model.out_channels == expected and model.task == task and model.arch == arch
    assert model.halo % model.size_multiple == 0 and model.halo >= model.receptive_field


@pytest.mark.parametrize("arch", ["unet", "atrous", "fcn8s", "linear"])
def test_backward_gives_finite_gradients(arch):
    kw = {"task": "autoencode"} if arch == "linear" else {"classes": 2}
    model = tiny(arch, **kw) if arch != "linear" else build("linear", task="autoencode")
    x = torch.randn(2, 1, 64, 64)
    model(x).square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_multichannel_input():
    model = build("unet", base=4, depth=2, in_channels=3, task="autoencode")
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3, 32, 32)


def test_wrong_size_multiple_is_a_clear_error():
    model = build("unet", base=4)
    with pytest.raises(
        InputError, match=r"input 100x130 is not a multiple of 16: pad or crop to 112x144"
    ):
        model(torch.randn(1, 1, 100, 130))
    with pytest.raises(InputError, match="multiple of 32"):
        tiny("fcn8s")(torch.randn(1, 1, 48, 64))


def test_wrong_dimensions_and_channels_are_clear_errors():
    model = tiny("atrous")
    with pytest.raises(InputError, match="4D batch"):
        model(torch.randn(1, 37, 53))
    with pytest.raises(InputError, match="1 input channel"):
        model(torch.randn(1, 2, 37, 53))
    with pytest.raises(InputError, match="4D batch"):
        model.check_input((1, 1, 4, 32, 32))


def test_bad_build_arguments():
    with pytest.raises(InputError, match="Unknown architecture"):
        build("resnet")
    with pytest.raises(InputError, match="Unknown task"):
        build("unet", task="denoise")
    with pytest.raises(InputError, match="Unknown option"):
        build("unet", base=4, depht=3)
    with pytest.raises(InputError, match="Unknown preset"):
        build("unet", preset="huge")
    with pytest.raises(InputError, match="either base or budget"):
        build("unet", base=8, budget=100_000)
    with pytest.raises(InputError, match="below the smallest"):
        build("fcn8s", budget=100)
    with pytest.raises(InputError, match="patch and components"):
        build("linear", task="autoencode", budget=10_000)
    with pytest.raises(InputError, match="autoencoder"):
        build("pca")
    with pytest.raises(InputError, match="positive integer"):
        build("unet", classes=0)


@pytest.mark.parametrize("arch", [*ARCHS, "linear"])
def test_config_is_json_and_rebuilds_the_same_architecture(arch):
    model = (
        build("linear", task="autoencode", patch=4) if arch == "linear" else tiny(arch, classes=2)
    )
    config = json.loads(json.dumps(model.config))
    again = build(**config)
    assert again.config == model.config
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert shapes == {k: v.shape for k, v in again.state_dict().items()}


def test_preset_options_can_be_overridden():
    model = build("unet", preset="unet16", base=4, depth=2, task="autoencode")
    assert model.channels == [4, 8, 16] and model.size_multiple == 4


@pytest.mark.parametrize("budget", [50_000, 500_000, 2_000_000])
def test_budget_matching_within_five_percent(budget):
    counts = {}
    for arch in ARCHS:
        with torch.device("meta"):
            model = build(arch, budget=budget)
        counts[arch] = count_parameters(model)
        assert abs(counts[arch] - budget) <= 0.05 * budget, (arch, counts[arch])
        # The chosen width is recorded, so the config rebuilds the same count.
        with torch.device("meta"):
            assert count_parameters(build(**model.config)) == counts[arch]


def test_budget_applies_to_autoencoders_and_options():
    model = build("unet", task="autoencode", budget=120_000, depth=3, up="bilinear")
    assert abs(count_parameters(model) - 120_000) <= 6_000
    assert model.config["depth"] == 3 and model.config["up"] == "bilinear"


@pytest.mark.parametrize("arch", ARCHS)
def test_same_seed_gives_identical_weights_and_outputs(arch):
    x = torch.randn(1, 1, 64, 64)
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        model = tiny(arch, dropout=0.3) if arch == "unet" else tiny(arch)
        torch.manual_seed(7)
        outs.append((model.state_dict(), model(x)))  # train mode: dropout draws from the seed too
    (s1, y1), (s2, y2) = outs
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert torch.equal(y1, y2)


def _dependency_radius(model, size, pixels):
    """Largest distance from an output pixel to an input pixel its value depends on.

    ReLUs are replaced by the identity on a copy, so no dead unit hides a structural
    dependency: what remains is the receptive field of the architecture itself.
    """
    model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, torch.nn.ReLU):
            m.forward = lambda t: t
    x = torch.randn(1, 1, size, size, requires_grad=True)
    y = model(x)
    far = 0
    for c in pixels:
        (g,) = torch.autograd.grad(y[0, 0, c, c], x, retain_graph=True)
        nz = (g[0, 0] != 0).nonzero()
        far = max(far, int((nz - c).abs().max()))
    return far


HALO_CASES = {
    "unet": ({"base": 4, "depth": 2}, 96),
    "unet-bilinear": ({"base": 4, "depth": 2, "up": "bilinear"}, 96),
    "atrous-aspp": ({"base": 4, "aspp": True}, 128),
    "fcn8s": ({"base": 2}, 640),
    "fcn32s": ({"base": 2}, 576),
}


@pytest.mark.parametrize("case", list(HALO_CASES))
def test_halo_bounds_the_dependency_and_tiles_exactly(case):
    arch = case.split("-")[0]
    opts, size = HALO_CASES[case]
    torch.manual_seed(0)
    model = build(arch, **opts).eval()
    k = model.size_multiple
    # Every alignment of the output pixel to the pooling grid.
    centre = size // 2 // k * k
    far = _dependency_radius(model, size, range(centre, centre + k, max(1, k // 4)))
    assert far <= model.receptive_field <= model.halo
    assert far >= model.receptive_field - k  # the analytic radius is nearly tight
    # Predicting a grid-aligned crop and keeping all but `halo` pixels each side
    # reproduces the whole-image prediction (what tiled inference with no blending does).
    tile = 2 * model.halo + 2 * k
    x = torch.randn(1, 1, tile + 2 * k, tile + 2 * k)
    with torch.no_grad():
        whole = model(x)
        part = model(x[..., k : k + tile, k : k + tile])
    h = model.halo
    torch.testing.assert_close(
        part[..., h : tile - h, h : tile - h],
        whole[..., k + h : k + tile - h, k + h : k + tile - h],
        rtol=0,
        atol=1e-5,
    )


def test_input_beyond_the_halo_never_changes_the_output():
    torch.manual_seed(0)
    model = build("unet", base=4, depth=3).eval()
    size = 2 * model.halo + 32
    x = torch.randn(1, 1, size, size)
    c = size // 2
    with torch.no_grad():
        y = model(x)
        outside = x.clone()
        outside[..., c + model.halo + 1 :, :] += 5.0
        outside[..., :, : c - model.halo - 1] -= 5.0
        assert torch.equal(model(outside)[..., c, c], y[..., c, c])
        inside = x.clone()
        inside[..., c, c + 1] += 5.0
        assert not torch.equal(model(inside)[..., c, c], y[..., c, c])


def test_fcn_coarse_scores_and_bilinear_init():
    model = tiny("fcn16s", classes=2)
    x = torch.randn(1, 1, 64, 96)
    assert model.coarse_stride == 16
    assert model.forward_coarse(x).shape == (1, 2, 4, 6)
    up = tiny("fcn8s").upscore
    with torch.no_grad():
        out = up(torch.ones(1, 1, 4, 4))
    assert out.shape == (1, 1, 32, 32)
    torch.testing.assert_close(out[..., 8:24, 8:24], torch.ones(1, 1, 16, 16))


def test_pca_full_rank_reconstructs_and_matches_numpy():
    rng = np.random.default_rng(0)
    images = rng.random((3, 40, 48)).astype(np.float32)
    full = fit_pca(images, patch=4, components=16)
    x = torch.from_numpy(images[:, None])
    with torch.no_grad():
        torch.testing.assert_close(full(x), x, rtol=0, atol=1e-5)
    model = fit_pca(images, patch=4, components=3)
    assert model.arch == "pca" and model.halo == 4 and model.size_multiple == 4
    patches = (
        images.reshape(3, 10, 4, 12, 4).transpose(0, 1, 3, 2, 4).reshape(-1, 16).astype(np.float64)
    )
    mean = patches.mean(0)
    _, s, vt = np.linalg.svd(patches - mean, full_matrices=False)
    expected = (patches - mean) @ vt[:3].T @ vt[:3] + mean
    with torch.no_grad():
        got = model(x).numpy().reshape(3, 10, 4, 12, 4).transpose(0, 1, 3, 2, 4).reshape(-1, 16)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    ratio = model.explained_variance_ratio.numpy()
    np.testing.assert_allclose(ratio, (s**2 / (s**2).sum())[:3], rtol=1e-4)
    assert model.encode(x).shape == (3, 3, 10, 12)


def test_pca_bad_inputs():
    with pytest.raises(InputError, match="exceed"):
        fit_pca(np.zeros((16, 16)), patch=4, components=17)
    with pytest.raises(InputError, match="NaN"):
        fit_pca(np.full((16, 16), np.nan), patch=4, components=2)
    with pytest.raises(InputError, match="smaller than one"):
        fit_pca(np.zeros((3, 3)), patch=4, components=2)
    with pytest.raises(InputError, match="2D image"):
        fit_pca(np.zeros((2, 2, 16, 16)), patch=4, components=2)


def test_linear_autoencoder_trains():
    torch.manual_seed(0)
    model = build("linear", task="autoencode", patch=4, components=4)
    x = torch.rand(4, 1, 32, 32)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = (model(x) - x).square().mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert not any(isinstance(m, (torch.nn.ReLU, torch.nn.BatchNorm2d)) for m in model.modules())


def test_bad_family_options_are_clear_errors():
    with pytest.raises(InputError, match="up must be"):
        build("unet", base=4, up="nearest")
    with pytest.raises(InputError, match="depth"):
        build("unet", base=4, depth=0)
    with pytest.raises(InputError, match="dilation"):
        build("atrous", base=4, dilations=[1, 0])
    with pytest.raises(InputError, match="fc_kernel"):
        build("fcn8s", base=4, fc_kernel=4)


def test_numpy_numbers_give_a_json_config():
    model = build(
        "unet", base=np.float32(4.0), depth=2, in_channels=np.int64(1), classes=np.int64(2)
    )
    assert json.loads(json.dumps(model.config))["base"] == 4
