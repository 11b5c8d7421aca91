"""Export: TorchScript and ONNX files give the same outputs as the model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_segnets.checkpoints import export_onnx, export_torchscript
from napari_segnets.errors import InputError
from napari_segnets.models import build


def _model(arch):
    torch.manual_seed(0)
    if arch == "linear":
        return build("linear", task="autoencode", patch=4, components=3)
    opts = {"base": 4, "depth": 2} if arch == "unet" else {"base": 4}
    model = build(arch, classes=2, **opts)
    model.train()
    model(torch.randn(2, 1, 64, 64))  # non-trivial batch-norm statistics
    return model


@pytest.mark.parametrize("arch", ["unet", "fcn8s"])
def test_torchscript_matches(tmp_path, arch):
    model = _model(arch)
    path = export_torchscript(model, tmp_path / "m.pt", tile=64)
    assert model.training  # the caller's model is left as it was
    scripted = torch.jit.load(str(path))
    model.eval()
    for shape in [(1, 1, 64, 64), (2, 1, 96, 128)]:
        x = torch.randn(shape)
        with torch.no_grad():
            torch.testing.assert_close(scripted(x), model(x), rtol=0, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["unet", "atrous", "linear"])
def test_onnx_matches_with_onnxruntime(tmp_path, arch):
    import onnxruntime as ort

    model = _model(arch)
    path = export_onnx(model, tmp_path / "m.onnx", tile=64)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    model.eval()
    shapes = [(1, 1, 64, 64), (2, 1, 96, 128)] + ([(1, 1, 37, 53)] if arch == "atrous" else [])
    for shape in shapes:  # dynamic batch and size
        x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
        (got,) = session.run(["output"], {"image": x})
        with torch.no_grad():
            expected = model(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


def test_export_rejects_bad_tiles_and_foreign_models(tmp_path):
    with pytest.raises(InputError, match="multiple of 4"):
        export_torchscript(_model("unet"), tmp_path / "m.pt", tile=30)
    with pytest.raises(InputError, match="napari-segnets models"):
        export_onnx(torch.nn.Conv2d(1, 1, 3), tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())
