"""What a stack holds (io.kind.content): masks, label images, probabilities and grey images are told
apart on real files, and a grey image is refused where objects need a mask or probabilities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_segnets import objects as ob
from napari_segnets._cli import main
from napari_segnets.errors import InputError
from napari_segnets.io import read
from napari_segnets.io.kind import content
from tests._blobs import grey_image as _grey
from tests._blobs import label_image as _label_image

REAL = Path(__file__).parent / "data" / "real"
SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
EPFL = "epfl_lucchi_mitochondria"


@pytest.mark.parametrize("rel, kind", [
    ("ilastik/3d.h5", "image"),
    ("ilastik/5t2d1c.h5", "image"),  # float32 holding whole grey values
    ("pillow/16bit.MM.cropped.tif", "image"),
    ("mrcfile/EMD-3197.map", "image"),  # float density map, outside [0, 1]
    ("ilastik/3d1c-synthetic.h5", "mask"),
    ("ilastik/2d3c_Binary_Segmentation.h5", "mask"),
    ("pillow/g4-fillorder-test.tif", "mask"),
])
def test_real_third_party_files(rel, kind):
    if not (REAL / rel).exists():
        pytest.skip(f"{rel} is not in tests/data/real")
    array, _ = read(REAL / rel)
    assert content(array).kind == kind


def test_epfl_image_mask_and_its_label_image(shared_data):
    folder = shared_data / EPFL
    image, _ = read(folder / "training_slices000-029.tif")
    mask, _ = read(folder / "training_groundtruth_slices000-029.tif")
    assert content(image).kind == "image"
    assert content(mask).kind == "mask"  # 0/255
    assert content(np.asarray(image, np.float32)).kind == "image"  # the same grey values as floats
    assert content(np.asarray(image, np.float32) / 255).kind == "image"  # ... scaled to 0-1
    labels = ob.label_objects(np.asarray(mask[:, :, :]), per_slice=True)  # many ids per plane
    assert content(labels).kind in ("labels", "mask")


def test_synthetic_kinds():
    assert content(_grey()).kind == "image"
    assert content(_grey(dtype=np.uint16)).kind == "image"
    assert content(_label_image(300)).kind == "labels"
    assert content(_label_image(300).astype(np.float32)).kind == "labels"
    assert content(np.zeros((3, 16, 16), bool)).kind == "mask"
    # probabilities: a trained model's (mostly near 0 or 1) and an untrained one's (~0.5, textured)
    rng = np.random.default_rng(0)
    mask = _label_image(30) > 0
    sharp = np.clip(np.where(mask, 0.97, 0.02) + rng.normal(0, 0.02, mask.shape), 0, 1).astype(np.float32)
    assert content(sharp).kind == "probabilities"
    assert content(0.5 + rng.normal(0, 0.01, (3, 64, 64)).astype(np.float32)).kind == "probabilities"
    assert content(np.stack([1 - sharp, sharp]), (1,)).kind == "probabilities"


def test_predicted_probability_tiff_is_probabilities(tmp_path, capsys):
    """A TIFF written by `predict --output probabilities` (a tiny random-weight U-Net: a rough map,
    few values near 0 or 1) is read as probabilities and turned into objects, not refused."""
    import tifffile

    from napari_segnets import checkpoints
    from napari_segnets.io.normalize import normalization_spec
    from tests._model_helpers import calibrated_unet

    image = tifffile.imread(SAMPLE / "synthetic_image.tif")[:2, :96, :96]
    tifffile.imwrite(tmp_path / "img.tif", image, photometric="minisblack")
    checkpoints.save(tmp_path / "m.safetensors", calibrated_unet(image), {"normalization": normalization_spec()})
    assert main(["predict", "--checkpoint", str(tmp_path / "m.safetensors"), "--input", str(tmp_path / "img.tif"),
                 "--out", str(tmp_path / "p.tif"), "--output", "probabilities", "--no-progress"]) == 0
    prob, _ = read(tmp_path / "p.tif")
    assert np.dtype(prob.dtype).kind == "f" and content(prob).kind == "probabilities"
    assert main(["objects", "--input", str(tmp_path / "p.tif"), "--output", str(tmp_path / "o.tif"),
                 "--no-progress"]) == 0


def test_objects_refuse_a_grey_image_with_one_sentence(tmp_path, capsys):
    for grey in (_grey(), _grey(dtype=np.uint16), _grey().astype(np.float32) / 255):
        with pytest.raises(InputError, match="looks like a grey image"):
            ob.label_objects(grey)
    ob.label_objects(_label_image(300))  # a label image is a mask of objects: accepted
    image = str(SAMPLE / "synthetic_image.tif")
    assert main(["objects", "--input", image, "--output", str(tmp_path / "o.tif"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "synthetic_image.tif looks like a grey image" in err and "predict --output probabilities" in err
    assert err.strip().count("\n") == 0 and not (tmp_path / "o.tif").exists()


def test_objects_refuse_the_epfl_image(shared_data, tmp_path, capsys):
    image = shared_data / EPFL / "training_slices000-029.tif"
    assert main(["objects", "--input", str(image), "--output", str(tmp_path / "o.tif"), "--no-progress"]) == 2
    assert "training_slices000-029.tif looks like a grey image (181 distinct values" in capsys.readouterr().err
    mask = shared_data / EPFL / "training_groundtruth_slices000-029.tif"
    assert main(["objects", "--input", str(mask), "--output", str(tmp_path / "o.tif"), "--voxel-size", "5,5,5",
                 "--no-progress"]) == 0


class _Recording:
    """A lazy stack that records what is read of it (like a zarr array or memmapped TIFF)."""

    def __init__(self, array):
        self._array, self.read = array, []
        self.shape, self.dtype, self.ndim = array.shape, array.dtype, array.ndim

    def __getitem__(self, key):
        part = self._array[key]
        self.read.append(part.size)
        return part


def test_layer_kind_opens_label_images_with_many_ids_as_labels(tmp_path):
    """The reader decides Image or Labels through content(): 300 instance ids in a uint16 TIFF named
    without a hint open as Labels (the old 16-value rule opened them as an image), grey images stay
    images, and a lazy stack is judged on patches, never read whole."""
    import tifffile

    from napari_segnets._napari import layer_tuple
    from napari_segnets.io import layer_kind

    ids = _label_image(300, shape=(6, 200, 200)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "cells.tif", ids, photometric="minisblack")
    tifffile.imwrite(tmp_path / "em.tif", _grey((6, 200, 200), dtype=np.uint16), photometric="minisblack")
    for lazy in (False, True):
        array, meta = read(tmp_path / "cells.tif", lazy=lazy)
        assert layer_tuple(array, meta)[2] == "labels"
        array, meta = read(tmp_path / "em.tif", lazy=lazy)
        assert layer_tuple(array, meta)[2] == "image"
    # masks (0/255, bool), a file-name hint, floats and probabilities keep their behaviour
    assert layer_kind(np.where(ids > 150, 255, 0).astype(np.uint8), {}) == "labels"
    assert layer_kind(ids > 0, {}) == "labels"
    assert layer_kind(_grey(), {"path": "x/cell_mask.tif"}) == "labels"
    assert layer_kind(ids.astype(np.float32), {}) == "image"
    assert layer_kind(np.zeros((3, 16, 16), np.uint8), {}) == "image"  # nothing to judge: as before
    # a blank middle section: the stack is judged on other planes (raw EM stays an image, a sparse
    # mask with an empty middle stays a mask)
    grey = _grey((9, 64, 64))
    grey[4] = 0
    assert layer_kind(grey, {}) == "image"
    sparse = np.zeros((9, 64, 64), np.uint8)
    sparse[:3, 10:20, 10:20] = 1  # objects in the first sections only
    assert layer_kind(sparse, {}) == "labels"
    # a large lazy stack: only central patches of single planes are read
    big = _Recording(np.broadcast_to(ids[:1, :1, :1], (40, 3000, 3000)))
    big._array = np.broadcast_to(_grey((1, 3000, 3000))[0], (40, 3000, 3000))
    assert layer_kind(big, {}) == "image"
    assert big.read and max(big.read) <= 1024 * 1024
