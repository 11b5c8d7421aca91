"""Synthetic EM stacks: deterministic, consistent ground truth, EM-like statistics; the committed sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_segnets.errors import InputError
from napari_segnets.sample_data import SAMPLE_SHAPE, main, synthetic_stack, write_sample

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sample():
    return synthetic_stack((8, 256, 256), seed=0)


def test_shapes_dtypes_and_label_keys(sample):
    image, labels = sample
    assert image.shape == (8, 256, 256) and image.dtype == np.uint8
    assert set(labels) == {"membranes", "mitochondria", "classes"}
    for arr in labels.values():
        assert arr.shape == image.shape and arr.dtype == np.uint8
    assert set(np.unique(labels["membranes"])) == {0, 1}
    assert set(np.unique(labels["mitochondria"])) == {0, 1}
    assert set(np.unique(labels["classes"])) == {0, 1, 2}


def test_classes_agree_with_the_masks(sample):
    _, labels = sample
    classes = labels["classes"]
    np.testing.assert_array_equal(classes == 1, labels["membranes"] == 1)
    np.testing.assert_array_equal(classes == 2, labels["mitochondria"] == 1)
    assert not np.any((labels["membranes"] == 1) & (labels["mitochondria"] == 1))


def test_deterministic_per_seed(sample):
    image, labels = synthetic_stack((8, 256, 256), seed=0)
    np.testing.assert_array_equal(image, sample[0])
    np.testing.assert_array_equal(labels["classes"], sample[1]["classes"])
    other, _ = synthetic_stack((8, 256, 256), seed=1)
    assert np.mean(other != image) > 0.5


def test_em_like_statistics(sample):
    image, labels = sample
    membrane_fraction = labels["membranes"].mean()
    mito_fraction = labels["mitochondria"].mean()
    assert 0.05 < membrane_fraction < 0.3  # ISBI 2012 has about 22 % membrane
    assert 0.01 < mito_fraction < 0.15  # Lucchi has about 8 % mitochondria
    cyto = image[labels["classes"] == 0].astype(float)
    memb = image[labels["classes"] == 1].astype(float)
    mito = image[labels["classes"] == 2].astype(float)
    # Dark membranes and mitochondria on a light cytoplasm, separable but not trivially.
    for dark in (memb, mito):
        assert cyto.std() < cyto.mean() - dark.mean() < 4 * cyto.std()
    assert cyto.std() > 10  # shot noise and texture, not flat shading
    assert (image == 0).mean() < 0.01 and (image == 255).mean() < 0.01  # not clipped


def test_slices_are_correlated_through_z(sample):
    image, labels = sample
    m = labels["membranes"].astype(bool)
    neighbour_iou = [(m[z] & m[z + 1]).sum() / (m[z] | m[z + 1]).sum() for z in range(7)]
    assert min(neighbour_iou) > 0.3  # slow drift: neighbouring sections look alike
    far = (m[0] & m[7]).sum() / (m[0] | m[7]).sum()
    assert far < max(neighbour_iou)  # but the stack does move


def test_noise_is_shot_noise_like(sample):
    # Brighter regions are noisier (Poisson), unlike additive Gaussian noise.
    image, labels = sample
    from scipy import ndimage

    img = image.astype(float)
    residual = img - ndimage.uniform_filter(img, (1, 5, 5))
    bright = labels["classes"] == 0
    dark = ndimage.binary_erosion(labels["mitochondria"].astype(bool), iterations=1)
    assert residual[bright].std() > residual[dark].std()


def test_2d_and_bad_shapes():
    image, labels = synthetic_stack((64, 80), seed=3)
    assert image.shape == (64, 80) and labels["classes"].shape == (64, 80)
    for bad in [(4, 8, 8), (1, 2, 3, 4), (0, 64, 64)]:
        with pytest.raises(InputError, match="shape must be"):
            synthetic_stack(bad)


def test_write_sample_and_cli(tmp_path, capsys):
    from napari_segnets.io import read

    assert main(["--out", str(tmp_path), "--shape", "2", "48", "40", "--seed", "5"]) == 0
    image, labels = synthetic_stack((2, 48, 40), seed=5)
    back, meta = read(tmp_path / "synthetic_image.tif")
    np.testing.assert_array_equal(back, image)
    assert meta["voxel_size"] == pytest.approx((40.0, 5.0, 5.0))
    for key, arr in labels.items():
        np.testing.assert_array_equal(read(tmp_path / f"synthetic_{key}.tif")[0], arr)
    assert "synthetic_classes.tif" in capsys.readouterr().out
    assert len(write_sample(tmp_path, (2, 48, 40), 5)) == 4


def test_committed_sample_matches_the_generator():
    folder = REPO / "sample_data"
    if not (folder / "synthetic_image.tif").exists():
        pytest.fail(
            "sample_data/synthetic_image.tif is missing: run python -m napari_segnets.sample_data"
        )
    from napari_segnets.io import read

    image, labels = synthetic_stack(SAMPLE_SHAPE, seed=0)
    committed, _ = read(folder / "synthetic_image.tif")
    # Floating point may differ by a hair across platforms; rounding can then move a pixel by 1.
    assert committed.shape == image.shape
    assert np.mean(np.abs(committed.astype(int) - image.astype(int)) > 1) < 1e-3
    committed_classes, _ = read(folder / "synthetic_classes.tif")
    assert np.mean(committed_classes != labels["classes"]) < 1e-3
    total = sum(p.stat().st_size for p in folder.iterdir())
    assert total < 5 * 1024**2


def test_long_stacks_stay_covered_by_cells():
    # The stage drift must never carry the cell network out of view, however long the stack.
    _, labels = synthetic_stack((60, 96, 96), seed=4)
    per_slice = labels["membranes"].mean(axis=(1, 2))
    assert per_slice.min() > 0.05 and per_slice.max() < 0.3


def test_data_root_is_the_first_folder_holding_a_dataset(tmp_path, monkeypatch):
    from napari_segnets.io import public

    empty, real, beside = tmp_path / "empty", tmp_path / "real", tmp_path / "beside"
    for folder in (empty, real / "epfl_lucchi_mitochondria", beside / "isbi2012_em_segmentation"):
        folder.mkdir(parents=True)
    monkeypatch.setattr(public, "download_cache", lambda: tmp_path / "no-cache")
    monkeypatch.setattr(public, "beside_repo", lambda: beside)
    monkeypatch.setenv("SEGNETS_DATA", str(real))
    assert public.data_root() == real
    monkeypatch.setenv("SEGNETS_DATA", str(empty))  # no dataset folder in it: look further
    assert public.data_root() == beside
    assert public.data_root(real) == real
    assert public.data_root(empty) is None
    monkeypatch.setattr(public, "beside_repo", lambda: tmp_path / "absent")
    assert public.data_root() is None
