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
