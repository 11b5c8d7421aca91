"""Encoder transfer: an autoencoder trained on the stack initialises a segmentation net's encoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_segnets import checkpoints
from napari_segnets._cli import main
from napari_segnets.errors import InputError
from napari_segnets.models import build
from napari_segnets.training.pretrain import (
    encoder_state,
    init_encoder,
    matching_autoencoder,
    pretrain_encoder,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = {"base": 4, "depth": 2}


def _snapshot(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _seeded(seed, arch="unet", **kw):
    torch.manual_seed(seed)
    return build(arch, **{**SMALL, **kw}) if arch == "unet" else build(arch, base=4, **kw)


def test_autoencoder_checkpoint_encoder_is_copied_and_decoder_left(tmp_path):
    ae = matching_autoencoder(_seeded(1))
    assert ae.task == "autoencode" and ae.config["skips"] is False and ae.config["base"] == 4
    norm = {"mode": "percentile", "low": 2.0, "high": 98.0}
    path = checkpoints.save(tmp_path / "ae.safetensors", ae, {"normalization": norm})
    model = _seeded(2)
    before = _snapshot(model)
    info = init_encoder(model, path)

    encoder = encoder_state(ae)
    assert encoder and all(k.startswith("down.") for k in encoder)
    after = model.state_dict()
    for k, v in after.items():
        if k in encoder:
            assert torch.equal(v, encoder[k]), k
        else:
            assert torch.equal(v, before[k]), k  # decoder and head untouched
    assert any(not torch.equal(before[k], encoder[k]) for k in encoder)  # really different weights
    assert info["tensors"] == len(encoder) and info["weights"] > 0
    assert info["normalization"] == norm
    assert info["content_hash"] == checkpoints.read_metadata(path)["content_hash"]


@pytest.mark.parametrize("arch", ["atrous", "fcn8s"])
def test_other_families_share_their_encoders(arch):
    model = _seeded(0, arch)
    ae = matching_autoencoder(_seeded(3, arch))
    init_encoder(model, ae)
    for k, v in encoder_state(ae).items():
        assert torch.equal(model.state_dict()[k], v)
    assert "head.weight" in model.state_dict() or "score_fr.weight" in model.state_dict()


@pytest.mark.parametrize(
    ("source", "words"),
    [
        (lambda: build("unet", task="autoencode", base=8, depth=2), "base=8"),
        (lambda: build("unet", task="autoencode", base=4, depth=3), "depth=3"),
        (lambda: build("atrous", task="autoencode", base=4), "'atrous'"),
        (lambda: build("pca", task="autoencode"), "no convolutional encoder"),
    ],
)
def test_mismatched_architectures_are_refused_in_one_sentence(source, words):
    model = _seeded(0)
    before = _snapshot(model)
    with pytest.raises(InputError) as err:
        init_encoder(model, source())
    msg = str(err.value)
    assert words in msg and "\n" not in msg and msg.count(". ") == 0 and msg.endswith(".")
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_missing_encoder_file_is_a_clear_error(tmp_path):
    from napari_segnets.errors import CheckpointError

    with pytest.raises(CheckpointError, match="does not exist"):
        init_encoder(_seeded(0), tmp_path / "nope.safetensors")


def test_pretraining_on_the_unlabelled_stack_sets_the_encoder(tmp_path):
    stack = np.random.default_rng(0).integers(0, 255, (3, 32, 32)).astype(np.uint8)
    model = _seeded(0)
    before = {k: v.clone() for k, v in encoder_state(model).items()}
    info = pretrain_encoder(
        model, stack, minutes=None, epochs=1, steps_per_epoch=2, crop=16, batch_size=2,
        device="cpu", checkpoint=tmp_path / "ae.safetensors",
    )  # fmt: skip
    assert info["steps"] == 2 and (tmp_path / "ae.safetensors").exists()
    ae, meta = checkpoints.load(tmp_path / "ae.safetensors")
    assert meta["task"] == "autoencode"
    for k, v in encoder_state(ae).items():
        assert torch.equal(model.state_dict()[k], v)
    assert any(not torch.equal(before[k], v) for k, v in encoder_state(model).items())


def _tiny_files(tmp_path):
    import tifffile

    from napari_segnets.sample_data import synthetic_stack

    image, labels = synthetic_stack((2, 32, 32), seed=0)
    tifffile.imwrite(tmp_path / "img.tif", image, photometric="minisblack")
    tifffile.imwrite(tmp_path / "mask.tif", labels["mitochondria"], photometric="minisblack")
    return tmp_path / "img.tif", tmp_path / "mask.tif"


def test_cli_init_encoder_flag(tmp_path, capsys):
    img, mask = _tiny_files(tmp_path)
    ae = matching_autoencoder(_seeded(5))
    checkpoints.save(tmp_path / "ae.safetensors", ae, {"normalization": None})
    common = ["train", "--images", img, "--masks", mask, "--arch", "unet", "--base", 4,
              "--option", "depth=2", "--epochs", 1, "--steps-per-epoch", 1, "--crop", 16,
              "--batch-size", 1, "--lr", 1e-12, "--no-progress", "--device", "cpu"]  # fmt: skip
    out = tmp_path / "seg.safetensors"
    assert (
        main(
            [str(a) for a in [*common, "--init-encoder", tmp_path / "ae.safetensors", "--out", out]]
        )
        == 0
    )
    assert "encoder initialised from" in capsys.readouterr().err
    seg, _ = checkpoints.load(out)
    # One step at lr 1e-12 leaves the weights equal to the autoencoder's to float precision.
    for k, v in encoder_state(ae).items():
        if v.is_floating_point() and "running" not in k:
            assert torch.allclose(seg.state_dict()[k], v, atol=1e-6), k

    wide = build("unet", task="autoencode", base=8, depth=2, skips=False)
    checkpoints.save(tmp_path / "wide.safetensors", wide)
    code = main([str(a) for a in [*common, "--init-encoder", tmp_path / "wide.safetensors",
                                  "--out", tmp_path / "bad.safetensors"]])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "base=8" in err and "Traceback" not in err
    assert not (tmp_path / "bad.safetensors").exists()
