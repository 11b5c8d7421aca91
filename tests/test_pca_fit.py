"""The PCA autoencoder fitted in closed form through the training-loop interface, the CLI and the widget."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segnets.errors import InputError

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def stack():
    from napari_segnets.sample_data import synthetic_stack

    image, _ = synthetic_stack((4, 64, 64), seed=0)
    return image


def test_fit_pca_iter_saves_a_checkpoint_that_reconstructs(stack, tmp_path):
    from napari_segnets import checkpoints
    from napari_segnets.inference import predict
    from napari_segnets.progress import drive
    from napari_segnets.training import fit_pca_iter

    events = []
    result = drive(fit_pca_iter(stack[:3], val=stack[3:], components=12, checkpoint=tmp_path / "pca.safetensors"),
                   callback=events.append)
    assert result.checkpoint == tmp_path / "pca.safetensors" and result.checkpoint.is_file()
    assert result.stopped == "fit" and result.best_epoch == 1
    epoch = [e for e in events if e.stage == "epoch"]
    assert len(epoch) == 1 and epoch[0].payload["preview"].shape == (64, 64)
    val = result.history[0]["val"]
    # more components keep more of the slice: 12 of 64 clearly beat the patch mean alone
    one = drive(fit_pca_iter(stack[:3], val=stack[3:], components=1)).history[0]["val"]
    assert val["psnr"] > one["psnr"] + 2, (val, one)
    assert result.best_score == pytest.approx(-val["mse"])

    model, meta = checkpoints.load(result.checkpoint)
    assert model.arch == "pca" and model.config["components"] == 12
    assert meta["normalization"]["mode"] == "percentile" and meta["fit"]["slices"] == 3
    recon = predict(model, stack[3], output="reconstruction", normalization=meta["normalization"])
    assert recon.shape == stack[3].shape
    err = np.abs(recon - stack[3].astype(np.float32)).mean()
    assert err < 0.6 * stack[3].std(), "the reconstruction follows the slice, in its intensity range"


def test_fit_pca_iter_is_deterministic(stack):
    from napari_segnets.progress import drive
    from napari_segnets.training import fit_pca_iter

    a = drive(fit_pca_iter(stack, components=8, seed=3, max_patches=100))
    b = drive(fit_pca_iter(stack, components=8, seed=3, max_patches=100))
    for (ka, va), (kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_fit_pca_iter_refuses_a_parent_and_too_few_patches(stack):
    from napari_segnets.progress import drive
    from napari_segnets.training import fit_pca_iter

    with pytest.raises(InputError, match="not fine-tuned"):
        drive(fit_pca_iter(stack, parent="x.safetensors"))
    with pytest.raises(InputError, match="components"):
        drive(fit_pca_iter(stack[:1, :8, :8], components=16))


def test_cli_train_arch_pca(stack, tmp_path, capsys):
    import tifffile

    from napari_segnets._cli import main

    tifffile.imwrite(tmp_path / "img.tif", stack, photometric="minisblack")
    out = tmp_path / "pca.safetensors"
    code = main(["train", "--arch", "pca", "--task", "autoencode", "--images", str(tmp_path / "img.tif"),
                 "--val-slices", "3:4", "--base", "10", "--out", str(out), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert out.is_file() and "psnr" in captured.out
    code = main(["train", "--arch", "pca", "--images", str(tmp_path / "img.tif"), "--out", str(tmp_path / "s.safetensors")])
    err = capsys.readouterr().err
    assert code == 2 and "--task autoencode" in err and "Traceback" not in err
    assert not (tmp_path / "s.safetensors").exists()


@pytest.mark.gui
def test_train_widget_fits_pca(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    from napari_segnets._widgets import TrainWidget
    from napari_segnets._widgets._session import REGISTRY
    from tests._widget_helpers import Notes, synthetic_layers, wait_for

    notes = Notes(monkeypatch)
    viewer = make_napari_viewer()
    img, truth = synthetic_layers(viewer)
    widget = TrainWidget(viewer)
    widget.image.value, widget.labels_layer.value = img, truth
    widget.arch.value = "pca"
    widget.output.value = tmp_path / "pca.safetensors"
    widget.task.value = "segment"
    assert widget.run() is None
    assert notes.errors and "pick task 'autoencode'" in notes.errors[-1]
    widget.task.value = "autoencode"
    widget.base.value = 8
    assert widget.run() is not None, widget.status.value
    wait_for(qtbot, widget)
    assert widget.result is not None, widget.status.value
    assert (tmp_path / "pca.safetensors").is_file()
    entry = REGISTRY.get(REGISTRY.names()[-1])
    assert entry.arch == "pca" and entry.task == "autoencode"
    assert np.any(viewer.layers["training preview"].data)
    assert any("val" in h and h["val"] for h in widget.history)
