"""One engine (issue 12): validation is predict + metrics, task defaults live in the core, DDP
stops through the loop's hook and gives back the best weights."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _blobs import blobs as _blobs

from napari_segnets.training import train

torch = pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[1]
FAST = dict(crop=32, batch_size=2, device="cpu", augment=False)


def blobs(n=4, size=48, seed=0):
    return _blobs(n, size, seed, value=255, discs=4, rmax=7)


def test_validation_iou_is_predict_plus_metrics_on_the_same_slices():
    from napari_segnets import metrics
    from napari_segnets.inference import predict
    from napari_segnets.models import build

    image, mask = blobs()
    result = train(build("unet", base=4, depth=2, seed=0), (image[:3], mask[:3]),
                   val=(image[3:], mask[3:]), epochs=2, steps_per_epoch=3, lr=1e-2, amp=False,
                   **FAST)
    val = result.history[result.best_epoch - 1]["val"]
    # what a user gets: predict the held-out slice (default tiles), threshold, score
    prob = predict(result.model, image[3:], device="cpu", amp=False)
    labels = (np.asarray(prob) >= 0.5).astype(np.uint8)  # one class: (Z, Y, X) probabilities
    assert val["iou"]["1"] == pytest.approx(metrics.iou(labels, mask[3:] > 0), abs=1e-9)
    assert val["dice"]["1"] == pytest.approx(metrics.dice(labels, mask[3:] > 0), abs=1e-9)


def test_train_on_an_autoencoder_works_on_defaults():
    from napari_segnets.models import build

    image, _ = blobs()
    result = train(build("unet", task="autoencode", base=4, depth=2, seed=0), image, epochs=1,
                   steps_per_epoch=2, **FAST)
    val = result.history[0]["val"]  # the loss (MSE) and a held-out split were chosen by task
    assert np.isfinite(result.history[0]["loss"]) and val["score"] == -val["mse"]


_DDP_SCRIPT = """
import os, sys, numpy as np, torch
from napari_segnets import checkpoints
from napari_segnets.distributed import ddp_train
from napari_segnets.models import build
image, mask = np.load(sys.argv[1])["image"], np.load(sys.argv[1])["mask"]
out = sys.argv[2]
result = ddp_train(build("unet", base=4, depth=2, seed=0), (image[:3], mask[:3]),
                   val=(image[3:], mask[3:]), epochs=40, steps_per_epoch=1, lr=1e-7,
                   early_stopping=1, checkpoint=out, crop=32, batch_size=2, augment=False)
if os.environ["RANK"] == "0":
    best, meta = checkpoints.load(out)
    same = all(torch.equal(a, b) for a, b in zip(best.state_dict().values(),
                                                 result.model.state_dict().values()))
    print("RESULT", result.stopped, result.best_epoch, len(result.history), same,
          meta["training"]["epoch"])
"""


@pytest.mark.slow
def test_ddp_early_stopping_gives_back_the_best_weights(tmp_path):
    image, mask = blobs()
    np.savez(tmp_path / "data.npz", image=image, mask=mask)
    script = tmp_path / "ddp_run.py"
    script.write_text(_DDP_SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(script), str(tmp_path / "data.npz"), str(tmp_path / "best.safetensors")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT"))
    _, stopped, best_epoch, epochs, same, saved_epoch = line.split()
    assert stopped == "early_stopping" and int(best_epoch) < int(epochs) < 40
    assert same == "True" and int(saved_epoch) == int(best_epoch)  # the best came back


def test_pca_is_an_architecture_the_loop_fits_in_closed_form():
    from napari_segnets.models import build

    image, mask = blobs()
    result = train(build("pca", task="autoencode", patch=8, components=4), (image, mask))
    assert result.stopped == "fit" and result.steps == 0
    val = result.history[0]["val"]  # held out by default, as for the trained architectures
    assert val is not None and val["score"] == -val["mse"]


def test_one_psnr_definition():
    from napari_segnets import metrics
    from napari_segnets.training.validate import score_reconstruction
    from napari_segnets.wavelets.compare import _image_metrics

    a = np.linspace(0, 1, 64).reshape(8, 8)
    b = a + 0.01
    assert metrics.psnr(metrics.mse(b, a)) == pytest.approx(40.0)
    assert score_reconstruction([b], [a])["psnr"] == pytest.approx(40.0)
    assert _image_metrics(a, b, 1.0)[1] == pytest.approx(40.0)


def test_one_precision_decision_for_training_and_prediction(monkeypatch):
    from napari_segnets import devices
    from napari_segnets.inference.engine import amp_dtype

    cpu = torch.device("cpu")
    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: True)
    assert devices.autocast_dtype(cpu) is torch.bfloat16 and amp_dtype(cpu, None) is torch.bfloat16
    assert devices.autocast_dtype(cpu, False) is None and devices.autocast_dtype(cpu, "bf16")
    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: False)  # emulated bf16 is slower: fp32
    assert devices.autocast_dtype(cpu) is None and amp_dtype(cpu, None) is None
    from napari_segnets.models import build

    image, mask = blobs(2)
    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: True)
    from napari_segnets.training import setup

    run = setup.prepare_run(build("unet", base=4, depth=2, seed=0), (image, mask), None,
                            task=None, crop=32, batch_size=2, epochs=1, loss=None,
                            optimizer="adam", schedule="none", device="cpu", amp=None,
                            ignore_index=None, annotation="full", resume=None, parent=None,
                            augment=False, early_stopping=None, class_weights=None,
                            foreground_crop=0.5, normalization=None, lr=1e-3, weight_decay=0,
                            minutes=None, denoise=0.0)
    assert run.amp and run.amp_dtype is torch.bfloat16 and run.channels_last
