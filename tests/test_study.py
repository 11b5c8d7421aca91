"""A tiny run of the autoencoder study (benchmarks/wavelet_study.py) on synthetic images, a few steps."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.wavelet_study import run_study, run_study_iter, sample_crops
from napari_segnets.errors import InputError


@pytest.fixture
def stacks(rng):
    from scipy.ndimage import gaussian_filter

    train = gaussian_filter(rng.random((3, 96, 96)), (0, 2, 2)) * 255
    test = gaussian_filter(rng.random((2, 80, 80)), (0, 1, 1)) * 255
    return train.astype(np.uint8), test.astype(np.uint8)


def _tiny(stacks, **kw):
    train, test = stacks
    opts = dict(
        archs=("unet",), baselines=(), budget=3000, steps=3, batch_size=2, crop=32,
        n_crops=4, test_crop=32, margin=16, minutes=None, train_images=train, test_images=test,
    )  # fmt: skip
    opts.update(kw)
    return opts


@pytest.mark.slow
def test_study_smoke_writes_table_and_figures(stacks, tmp_path):
    events = []
    result = run_study(
        callback=events.append,
        out_dir=tmp_path,
        **_tiny(stacks, baselines=("pca",)),
    )
    stages = {e.stage for e in events}
    assert {"data", "train unet", "reconstruct unet", "analyse"} <= stages
    table = result["table"]
    assert table.models == ["unet", "pca"] and table.n_images == 4
    assert table.labels == ["1", "2", "3", "4", "5", "A"]
    assert np.isfinite(table.ratio["unet"]).all()
    info = result["models"]["unet"]
    assert (
        info["trainer"] == "train_iter" and info["steps"] == 3 and 2500 < info["parameters"] < 3500
    )
    assert result["models"]["pca"]["trainer"] == "fit_pca"
    assert "| level | original | unet | unet / orig. |" in result["markdown"]
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["mosaics.png", "power.png", "study.json", "study.md"]
    record = json.loads((tmp_path / "study.json").read_text())
    assert record["settings"]["steps"] == 3 and "unet" in record["comparison"]["ratio"]


@pytest.mark.slow
def test_study_is_deterministic(stacks):
    a = run_study(out_dir=None, **_tiny(stacks))
    b = run_study(out_dir=None, **_tiny(stacks))
    assert a["models"]["unet"]["losses"] == b["models"]["unet"]["losses"]
    np.testing.assert_array_equal(a["table"].ratio["unet"], b["table"].ratio["unet"])


def test_study_can_be_cancelled(stacks, tmp_path):
    job = run_study_iter(out_dir=tmp_path, **_tiny(stacks, steps=500))
    for event in job:
        if event.stage.startswith("train"):
            break
    assert event.done == 1
    job.close()  # the consumer's cancel: stops at once, no exception, nothing written
    assert list(tmp_path.iterdir()) == []


def test_study_refuses_bad_settings(stacks, tmp_path):
    with pytest.raises(InputError, match="do not fit"):
        run_study(out_dir=None, **_tiny(stacks, test_crop=128))
    with pytest.raises(InputError, match="not found"):
        run_study(out_dir=None, data_root=tmp_path, archs=(), baselines=())


def test_sample_crops_is_seeded(rng):
    stack = rng.random((3, 40, 50))
    a, b = sample_crops(stack, 7, 16, seed=1), sample_crops(stack, 7, 16, seed=1)
    assert a.shape == (7, 16, 16)
    np.testing.assert_array_equal(a, b)
