"""Masks as they come (issue 13): every usual encoding trains the intended classes; nothing is dropped."""

from __future__ import annotations

import numpy as np
import pytest
from _blobs import blobs as _blobs
from _blobs import grey_image as _grey
from _blobs import label_image

from napari_segnets.errors import InputError
from napari_segnets.training import SliceDataset, make_loss, train
from napari_segnets.training.masks import IGNORE, to_targets
from napari_segnets.training.validate import score

torch = pytest.importorskip("torch")

FAST = dict(crop=32, batch_size=2, device="cpu", augment=False, schedule="none", epochs=1,
            steps_per_epoch=2)


def blobs(n=2, size=48, seed=0):
    return _blobs(n, size, seed, value=1, discs=4, rmax=7)


def tiny(classes=1):
    from napari_segnets.models import build

    torch.manual_seed(0)
    return build("unet", classes=classes, base=4, depth=2)


def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


_, M01 = blobs()
ENCODINGS = {
    "0/255": M01 * 255,
    "bool": M01.astype(bool),
    "0/65535": M01.astype(np.uint16) * 65535,
    "0/max int32": M01.astype(np.int32) * np.iinfo(np.int32).max,
    "float 0/1": M01.astype(np.float32),
}


@pytest.mark.parametrize("name", list(ENCODINGS))
def test_binary_encodings_read_as_0_1(name):
    t = to_targets(ENCODINGS[name])
    assert t.classes == 2 and t.note == ""
    np.testing.assert_array_equal(t.labels, M01)


def test_binary_encodings_train_exactly_like_0_1():
    """The same seed on a 0/255, bool or 16-bit mask gives the weights a 0/1 mask gives."""
    image, mask = blobs()
    reference = _weights(train(tiny(), (image, mask), **FAST).model)
    for name in ("0/255", "bool", "0/65535"):
        got = _weights(train(tiny(), (image, ENCODINGS[name]), **FAST).model)
        assert torch.equal(got, reference), name


def test_label_image_is_foreground_with_a_note():
    _, mask = _blobs(1, 96, 0, value=1, discs=12, rmax=12)
    cells = label_image(400, mask.shape, borders=False)  # ids constant over regions, as instances are
    ids = (mask.astype(bool) * cells).astype(np.uint16)
    assert len(np.unique(ids)) > 17  # more ids than a multi-class mask holds
    t = to_targets(ids)
    np.testing.assert_array_equal(t.labels, mask)
    assert t.classes == 2 and "label image" in t.note
    ds = SliceDataset(np.zeros(mask.shape, np.float32), ids)
    assert ds.notes and ds.classes == 2


def test_multiclass_mask_needs_its_classes_and_trains_them():
    image, mask = blobs()
    labels = mask.copy()
    labels[:, :, :10][labels[:, :, :10] == 1] = 2
    with pytest.raises(InputError, match="pass classes=3"):
        to_targets(labels)  # 0/1/2: three classes or one object class? refuse, saying what to pass
    t = to_targets(labels, classes=3)
    np.testing.assert_array_equal(t.labels, labels)
    result = train(tiny(classes=3), (image, labels), loss="ce", **FAST)  # the model says 3 classes
    assert np.isfinite(result.history[0]["loss"])
    # a binary model reads every nonzero value as its object class (and says so)
    assert "one foreground class" in to_targets(labels, classes=1).note
    with pytest.raises(InputError, match="classes=3 allows 0..2"):
        to_targets(labels * 100, classes=3)  # 0/100/200: values that are not classes


def test_ignore_only_when_named():
    mask = np.array([[0, 255, 7]], np.uint8)
    with pytest.raises(InputError, match="values 0, 7, 255"):
        to_targets(mask)
    t = to_targets(mask, ignore_index=7)
    assert t.labels.tolist() == [[0, 1, IGNORE]]


def test_data_without_objects_or_background_is_refused_before_any_work(tmp_path):
    image, mask = blobs()
    out = tmp_path / "m.safetensors"
    with pytest.raises(InputError, match="no object pixels"):
        train(tiny(), (image, np.zeros_like(mask)), checkpoint=out, **FAST)
    with pytest.raises(InputError, match="no background"):
        train(tiny(), (image, np.full_like(mask, 255)), checkpoint=out, **FAST)
    assert not list(tmp_path.iterdir())  # nothing saved


def test_empty_truth_is_undefined_not_perfect():
    empty = [np.zeros((8, 8), np.float32)]
    result = score(empty, [np.zeros((8, 8), np.int8)], n_classes=2, ignore_index=IGNORE)
    assert np.isnan(result["score"]) and np.isnan(result["iou"]["1"])
    from napari_segnets.training.validate import epoch_message as _epoch_message

    msg = _epoch_message({"epoch": 1, "loss": 0.1, "val": result}, 1)
    assert "undefined" in msg and "1.000" not in msg


def test_sparse_strokes_give_exactly_zero_gradient_on_unpainted_pixels():
    strokes = np.zeros((2, 16, 16), np.uint8)
    strokes[:, 2, 2:12] = 1  # background stroke
    strokes[:, 9, 3:9] = 2  # object stroke
    t = to_targets(strokes, annotation="sparse")
    assert t.classes == 2
    target = torch.from_numpy(t.labels.astype(np.int64))
    painted = torch.from_numpy(strokes != 0)
    for name in ("bce_dice", "focal", "bce"):
        logits = torch.randn(2, 1, 16, 16, requires_grad=True)
        make_loss(name)(logits, target).backward()
        assert torch.all(logits.grad[:, 0][~painted] == 0), name
        assert torch.any(logits.grad[:, 0][painted] != 0), name


def _strokes(mask):
    """Strokes on ``blobs()``: a background row and every third row of the objects."""
    strokes = np.zeros_like(mask)
    strokes[:, 4, :] = 1
    strokes[mask.astype(bool) & (np.arange(mask.shape[1])[None, :, None] % 3 == 0)] = 2
    return strokes


def test_sparse_training_runs_and_refuses_strokes_of_one_class():
    image, mask = blobs()
    strokes = _strokes(mask)
    result = train(tiny(), (image, strokes), annotation="sparse", **FAST)
    assert np.isfinite(result.history[0]["loss"])
    with pytest.raises(InputError, match="no object strokes"):
        train(tiny(), (image, np.where(strokes == 2, 0, strokes)), annotation="sparse", **FAST)
    with pytest.raises(InputError, match="leave ignore_index unset"):
        to_targets(strokes, annotation="sparse", ignore_index=0)


def test_cli_trains_on_0_255_masks_and_refuses_an_all_background_mask(tmp_path, capsys):
    import tifffile

    from napari_segnets import checkpoints
    from napari_segnets._cli import main

    image, mask = blobs(4)
    for name, data in (("img", image), ("mask255", mask * 255), ("empty", np.zeros_like(mask))):
        tifffile.imwrite(tmp_path / f"{name}.tif", data, photometric="minisblack")
    common = ["train", "--images", tmp_path / "img.tif", "--arch", "unet", "--base", 4,
              "--option", "depth=2", "--epochs", 1, "--steps-per-epoch", 1, "--crop", 32,
              "--batch-size", 1, "--val-slices", "3:4", "--no-progress", "--device", "cpu"]
    out = tmp_path / "m.safetensors"
    assert main([str(a) for a in [*common, "--masks", tmp_path / "mask255.tif", "--out", out]]) == 0
    model, meta = checkpoints.load(out)
    assert model.out_channels == 1  # 0/255 is binary
    assert meta["training"]["annotation"] == "full" and "painted" not in meta["training"]
    assert checkpoints.strokes_note(meta) == ""
    capsys.readouterr()
    bad = tmp_path / "bad.safetensors"
    assert main([str(a) for a in [*common, "--masks", tmp_path / "empty.tif", "--out", bad]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no object pixels" in err[0]
    assert not bad.exists()


def test_cli_trains_on_sparse_strokes(tmp_path, capsys):
    import tifffile

    from napari_segnets import checkpoints
    from napari_segnets._cli import main

    image, mask = blobs(2)
    strokes = np.zeros_like(mask)
    strokes[:, 3, :] = 1
    strokes[mask.astype(bool) & (np.arange(48)[None, :, None] % 3 == 0)] = 2
    tifffile.imwrite(tmp_path / "img.tif", image, photometric="minisblack")
    tifffile.imwrite(tmp_path / "strokes.tif", strokes, photometric="minisblack")
    out = tmp_path / "s.safetensors"
    argv = ["train", "--images", tmp_path / "img.tif", "--masks", tmp_path / "strokes.tif", "--sparse",
            "--arch", "unet", "--base", 4, "--option", "depth=2", "--epochs", 1,
            "--steps-per-epoch", 1, "--crop", 32, "--batch-size", 1, "--device", "cpu",
            "--out", out, "--no-progress"]
    assert main([str(a) for a in argv]) == 0 and out.is_file()
    # the checkpoint records the strokes, and predicting with it says what strokes do not teach
    training = checkpoints.read_metadata(out)["training"]
    assert training["annotation"] == "sparse"
    assert training["painted"] == pytest.approx(np.count_nonzero(strokes) / strokes.size, rel=1e-4)
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(out), "--input", str(tmp_path / "img.tif"),
                 "--out", str(tmp_path / "p.tif"), "--no-progress", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "note: This model learnt from strokes (" in err and "where a boundary lies" in err


def test_evaluate_reports_an_empty_truth_as_undefined(tmp_path, capsys):
    import json

    import tifffile

    from napari_segnets._cli import main

    empty = np.zeros((2, 16, 16), np.uint8)
    tifffile.imwrite(tmp_path / "p.tif", empty, photometric="minisblack")
    tifffile.imwrite(tmp_path / "t.tif", empty, photometric="minisblack")
    args = ["evaluate", "--prediction", str(tmp_path / "p.tif"), "--truth", str(tmp_path / "t.tif")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "iou: undefined" in out and "1.0000" not in out.split("pixel_accuracy")[0]
    assert main([*args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["overall"]["iou"] is None


def test_a_grey_image_as_mask_is_refused_and_a_label_image_is_not():
    """Issue 13: a grey EM image picked as the mask used to read as a label image (>16 values ->
    foreground) and train noise; it is refused with one sentence. Instance ids (300) still train."""
    for grey in (_grey((3, 96, 96)), _grey((3, 96, 96), dtype=np.uint16), _grey((3, 96, 96)).astype(np.float32)):
        with pytest.raises(InputError, match="The mask looks like a grey image .*give a mask"):
            to_targets(grey)
        with pytest.raises(InputError, match="looks like a grey image"):
            to_targets(grey, annotation="sparse")
    with pytest.raises(InputError, match="mask 'em' looks like a grey image"):
        SliceDataset(np.zeros((3, 96, 96), np.float32), _grey((3, 96, 96)), name="em")
    ids = label_image(300, (3, 160, 160))
    assert len(np.unique(ids)) == 301
    t = to_targets(ids)
    assert t.classes == 2 and "300 distinct ids read as a label image" in t.note
    np.testing.assert_array_equal(t.labels, ids > 0)
    many = label_image(3000, (2, 400, 400))  # thousands of ids
    assert to_targets(many).classes == 2


def test_the_epfl_image_as_mask_is_refused(shared_data):
    from napari_segnets.io import read

    image, _ = read(shared_data / "epfl_lucchi_mitochondria" / "training_slices000-029.tif")
    with pytest.raises(InputError, match="looks like a grey image"):
        to_targets(np.asarray(image[:4]))
    mask, _ = read(shared_data / "epfl_lucchi_mitochondria" / "training_groundtruth_slices000-029.tif")
    assert to_targets(np.asarray(mask[:4])).classes == 2  # its 0/255 mask is read as 0/1


def test_cli_train_refuses_a_grey_image_as_masks(tmp_path, capsys):
    import tifffile

    from napari_segnets._cli import main

    image = _grey((4, 64, 64))
    tifffile.imwrite(tmp_path / "em.tif", image, photometric="minisblack")
    out = tmp_path / "m.safetensors"
    assert main(["train", "--images", str(tmp_path / "em.tif"), "--masks", str(tmp_path / "em.tif"),
                 "--arch", "unet", "--epochs", "1", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "looks like a grey image" in err and err.strip().count("\n") == 0 and not out.exists()


def test_edge_smoothness_prefers_a_cut_along_the_image_edge():
    from napari_segnets.training.losses import edge_smoothness

    gen = torch.Generator().manual_seed(0)
    image = torch.zeros(2, 1, 32, 32)
    image[..., 16:] = 1.0
    image = image + 0.05 * torch.randn(image.shape, generator=gen)
    along = torch.full((2, 1, 32, 32), -8.0)
    along[..., 16:] = 8.0  # the classes change where the image does
    across = torch.full((2, 1, 32, 32), -8.0)
    across[..., :8] = 8.0  # a cut through a uniform region
    unsure = torch.zeros(2, 1, 32, 32)
    values = [float(edge_smoothness(lg, image)) for lg in (along, across, unsure)]
    assert values[0] < 0.5 * values[1] < values[2]
    # two classes as softmax give the same value as one sigmoid channel
    two = torch.cat([torch.zeros_like(across), across], dim=1)
    assert float(edge_smoothness(two, image)) == pytest.approx(values[1], rel=1e-4)
    # it reads no labels: every pixel, painted or not, gets a gradient through it
    logits = torch.randn(2, 1, 32, 32, generator=gen, requires_grad=True)
    edge_smoothness(logits, image).backward()
    assert (logits.grad != 0).float().mean() > 0.99


def test_smoothness_default_by_annotation_and_crops_centred_on_objects_for_both():
    from napari_segnets.training import setup

    image, mask = blobs()
    strokes = _strokes(mask)
    result = train(tiny(), (image, strokes), annotation="sparse", smoothness=1.0, **FAST)  # the loss term trains
    assert np.isfinite(result.history[0]["loss"])
    kw = dict(task=None, epochs=1, batch_size=1, crop=32, loss=None, optimizer="adam",
              schedule="cosine", device="cpu", amp=None, ignore_index=None, resume=None, parent=None,
              augment=False, early_stopping=None, class_weights=None, foreground_crop=0.5,
              normalization=None, lr=1e-3, weight_decay=0.0, minutes=None, denoise=0.0)
    sparse = setup.prepare_run(tiny(), (image, strokes), None, annotation="sparse", **kw)
    full = setup.prepare_run(tiny(), (image, mask), None, annotation="full", **kw)
    on = setup.prepare_run(tiny(), (image, strokes), None, annotation="sparse", smoothness=2.0, **kw)
    assert sparse.smoothness == setup.SPARSE_SMOOTHNESS and on.smoothness == 2.0
    assert full.smoothness == 0.0
    assert sparse.sampler.foreground_crop == full.sampler.foreground_crop == 0.5
    kw["foreground_crop"] = 0.25  # an explicit value wins
    assert setup.prepare_run(tiny(), (image, strokes), None, annotation="sparse", **kw).sampler.foreground_crop == 0.25
    with pytest.raises(InputError, match="smoothness"):
        setup.prepare_run(tiny(), (image, strokes), None, annotation="sparse", smoothness=-1.0, **kw)
