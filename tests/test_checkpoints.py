"""Checkpoints: exact round trips, metadata, and refusal of pickles, tampered and truncated files."""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_segnets import checkpoints
from napari_segnets.errors import CheckpointError, InputError
from napari_segnets.models import build, fit_pca


def _trained_unet():
    torch.manual_seed(0)
    model = build("unet", base=4, depth=2, classes=3)
    model.train()
    model(torch.randn(2, 1, 32, 32))  # moves the batch-norm running statistics off their defaults
    return model.eval()


@pytest.fixture
def saved(tmp_path):
    model = _trained_unet()
    path = checkpoints.save(
        tmp_path / "unet.safetensors",
        model,
        {
            "class_names": ["cytoplasm", "membrane", "mitochondrion"],
            "normalization": {"mode": "percentile", "low": 1.0, "high": 99.8},
            "history": [{"epoch": 0, "loss": 0.5}],
            "note": "extra keys are kept",
        },
    )
    return model, path


@pytest.mark.parametrize("arch", ["unet", "atrous", "fcn8s", "linear", "pca"])
def test_round_trip_gives_identical_outputs(tmp_path, arch):
    torch.manual_seed(1)
    if arch == "pca":
        model = fit_pca(np.random.default_rng(0).random((2, 32, 32)), patch=8, components=5)
    elif arch == "linear":
        model = build("linear", task="autoencode", patch=4, components=3)
    else:
        model = build(arch, base=4, task="autoencode").eval()
    path = checkpoints.save(tmp_path / f"{arch}.safetensors", model)
    loaded, meta = checkpoints.load(path)
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), loaded(x))
    assert meta["arch"] == arch and meta["config"] == model.config and meta["task"] == "autoencode"
    assert not loaded.training


def test_metadata_is_complete(saved):
    model, path = saved
    loaded, meta = checkpoints.load(path, device="auto")
    for key in ("arch", "config", "task", "class_names", "normalization", "history", "parent",
                "versions", "content_hash", "created"):  # fmt: skip
        assert key in meta
    assert meta["class_names"] == ["cytoplasm", "membrane", "mitochondrion"]
    assert meta["normalization"]["mode"] == "percentile"
    assert meta["note"] == "extra keys are kept"
    assert meta["versions"]["torch"] == torch.__version__
    assert meta["content_hash"] == checkpoints.content_hash(model.state_dict())
    assert checkpoints.read_metadata(path) == meta
    for name, tensor in model.state_dict().items():  # BN statistics included
        assert torch.equal(tensor, loaded.state_dict()[name])
    assert all(p.requires_grad for p in loaded.parameters())  # ready for fine-tuning


def test_loading_leaves_the_global_rng_alone(saved):
    _, path = saved
    state = torch.random.get_rng_state()
    checkpoints.load(path)
    assert torch.equal(state, torch.random.get_rng_state())


def test_parent_is_recorded_with_its_hash(saved, tmp_path):
    model, parent = saved
    child = checkpoints.save(tmp_path / "child.safetensors", model, {"parent": parent})
    meta = checkpoints.read_metadata(child)
    assert meta["parent"] == {
        "path": str(parent),
        "content_hash": checkpoints.read_metadata(parent)["content_hash"],
    }


def test_computed_keys_cannot_be_overridden(saved, tmp_path):
    model, _ = saved
    path = checkpoints.save(
        tmp_path / "x.safetensors", model, {"arch": "fcn8s", "content_hash": "0"}
    )
    meta = checkpoints.read_metadata(path)
    assert meta["arch"] == "unet" and meta["content_hash"] != "0"


def test_failed_save_keeps_the_old_file(saved):
    model, path = saved
    before = path.read_bytes()
    with pytest.raises(InputError, match="JSON"):
        checkpoints.save(path, model, {"history": [object()]})
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left behind
    with pytest.raises(InputError, match="napari-segnets models"):
        checkpoints.save(path, torch.nn.Conv2d(1, 1, 3))


def test_torch_save_pickle_is_refused(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(_trained_unet().state_dict(), path)
    with pytest.raises(CheckpointError, match="pickle"):
        checkpoints.load(path)


class _Payload:
    """Unpickling this creates a marker file: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    data = pickle.dumps(_Payload(marker), protocol=2)
    # The payload is live: unpickling it really does run code.
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Payload(probe), protocol=2))
    assert probe.exists()
    for name in ("evil.safetensors", "evil.pt", "evil.ckpt"):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError, match="Refusing"):
            checkpoints.load(tmp_path / name)
    assert not marker.exists()
    # A pickle disguised behind a plausible safetensors length prefix is refused too.
    disguised = struct.pack("<Q", len(data) - 8) + data
    (tmp_path / "disguised.safetensors").write_bytes(disguised)
    with pytest.raises(CheckpointError):
        checkpoints.load(tmp_path / "disguised.safetensors")
    assert not marker.exists()


def test_tampered_weights_are_refused(saved):
    _, path = saved
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0xFF  # a bit pattern inside the last tensor's data
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="content hash"):
        checkpoints.load(path)


def test_truncated_and_empty_files_are_refused(saved, tmp_path):
    _, path = saved
    raw = path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(raw[: len(raw) - 100])
    with pytest.raises(CheckpointError, match="truncated"):
        checkpoints.load(cut)
    cut.write_bytes(raw[:100])
    with pytest.raises(CheckpointError):
        checkpoints.load(cut)
    cut.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty or truncated"):
        checkpoints.load(cut)
    with pytest.raises(CheckpointError, match="No checkpoint file"):
        checkpoints.load(tmp_path / "missing.safetensors")


def _rewrite_metadata(path, change):
    from safetensors.torch import load, save

    tensors = load(path.read_bytes())
    meta = checkpoints.read_metadata(path)
    change(meta)
    path.write_bytes(
        save(tensors, metadata={"format": checkpoints.FORMAT, "napari_segnets": json.dumps(meta)})
    )


def test_unknown_architecture_is_refused(saved):
    _, path = saved
    _rewrite_metadata(path, lambda m: m["config"].update(arch="resnet50"))
    with pytest.raises(CheckpointError, match="unknown architecture 'resnet50'"):
        checkpoints.load(path)


def test_incompatible_config_is_refused(saved):
    _, path = saved
    _rewrite_metadata(path, lambda m: m["config"].update(depth=3))
    with pytest.raises(CheckpointError, match="do not fit"):
        checkpoints.load(path)
    _rewrite_metadata(path, lambda m: m["config"].update(exotic=1))
    with pytest.raises(CheckpointError, match="Cannot rebuild"):
        checkpoints.load(path)


def test_plain_safetensors_file_is_not_a_checkpoint(tmp_path):
    from safetensors.torch import save

    path = tmp_path / "plain.safetensors"
    path.write_bytes(save({"w": torch.zeros(3)}))
    with pytest.raises(CheckpointError, match="not a napari-segnets checkpoint"):
        checkpoints.load(path)


@pytest.mark.gpu
def test_load_onto_cuda_matches_cpu(saved):
    model, path = saved
    loaded, _ = checkpoints.load(path, device="cuda")
    assert next(loaded.parameters()).device.type == "cuda"
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x.cuda()).cpu(), model(x), rtol=0, atol=1e-4)
