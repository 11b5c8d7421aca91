"""`napari-segnets objects`, `measure` and `evaluate --objects` on the sample stack."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from napari_segnets._cli import main

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"


def test_objects_then_measure(tmp_path, capsys):
    labels = tmp_path / "mito_objects.tif"
    assert main(["objects", "--input", str(SAMPLE / "synthetic_mitochondria.tif"), "--output", str(labels),
                 "--min-size", "1e6", "--split", "--no-progress"]) == 0
    assert "objects ->" in capsys.readouterr().out
    from napari_segnets.io import read

    arr, meta = read(labels)
    assert arr.max() > 5 and tuple(meta["voxel_size"]) == (40.0, 5.0, 5.0)  # kept from the input
    table, summary = tmp_path / "objects.csv", tmp_path / "summary.json"
    assert main(["measure", "--labels", str(labels), "--image", str(SAMPLE / "synthetic_image.tif"),
                 "--output", str(table), "--summary", str(summary), "--no-progress"]) == 0
    rows = list(csv.DictReader(open(table)))
    assert len(rows) == arr.max() and {"volume_nm3", "surface_nm2", "intensity_mean"} <= set(rows[0])
    assert all(float(r["volume_nm3"]) >= 1e6 for r in rows)
    s = json.loads(summary.read_text())
    assert s["count"] == len(rows) and 0 < s["volume_fraction"] < 1
    assert "density_per_um3" in capsys.readouterr().out


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    mask = str(SAMPLE / "synthetic_mitochondria.tif")
    assert main(["measure", "--labels", mask, "--output", str(tmp_path / "o.csv")]) == 2
    err = capsys.readouterr().err
    assert "is a mask" in err and err.count("\n") == 1
    assert main(["objects", "--input", mask, "--output", str(tmp_path / "o.png")]) == 2
    assert main(["objects", "--input", mask, "--output", str(tmp_path / "o.tif"), "--voxel-size", "1,2"]) == 2
    assert "3 positive numbers" in capsys.readouterr().err
    assert not (tmp_path / "o.tif").exists() and not (tmp_path / "o.csv").exists()


def test_lazy_input_is_labelled_block_wise(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGNETS_LAZY_BYTES", "1000")  # read the sample as larger than memory
    out = tmp_path / "lab.zarr"
    mask = str(SAMPLE / "synthetic_mitochondria.tif")
    assert main(["objects", "--input", mask, "--output", str(out), "--no-progress"]) == 0
    assert main(["objects", "--input", mask, "--output", str(tmp_path / "x.tif"), "--no-progress"]) == 2
    monkeypatch.delenv("SEGNETS_LAZY_BYTES")
    assert main(["objects", "--input", mask, "--output", str(tmp_path / "mem.tif"), "--no-progress"]) == 0
    from napari_segnets.io import read

    np.testing.assert_array_equal(np.asarray(read(out)[0]), read(tmp_path / "mem.tif")[0])


def test_evaluate_prints_object_scores(tmp_path, capsys):
    truth = str(SAMPLE / "synthetic_mitochondria.tif")
    assert main(["evaluate", "--prediction", truth, "--truth", truth, "--objects", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["overall"]["iou"] == pytest.approx(1.0)
    assert result["objects"]["f1"] == 1.0 and result["objects"]["count_error"] == 0
    assert main(["evaluate", "--prediction", truth, "--truth", truth, "--objects"]) == 0
    out = capsys.readouterr().out
    assert "objects (IoU >= 0.5)" in out and "f1: 1.0000" in out
    assert "smaller than a tenth" not in out  # no specks: no note


def test_evaluate_drops_fragments_as_objects_does_and_says_what_they_were_worth(tmp_path, capsys):
    """A prediction with many fragments beside the right objects: the prediction is numbered as `objects`
    numbers it (fragments under a tenth of the typical object dropped), the truth whole; a sentence gives the
    fragments' number and the scores with them; --min-fraction 0 scores them all."""
    import tifffile

    truth = np.zeros((4, 64, 64), np.uint8)
    for cy, cx in ((12, 12), (12, 44), (44, 12), (44, 44)):
        truth[:, cy - 6:cy + 6, cx - 6:cx + 6] = 255  # four 576-voxel objects, 0/255 as labs keep masks
    truth[0, 62:64, 0:4] = 255  # and a true piece of 8 voxels at the edge: the truth keeps it
    pred = truth.copy()
    for k in range(8):  # eight 16-voxel fragments (over 2x2x2) far from the objects
        pred[k % 4, 28 + (k // 4) * 4:32 + (k // 4) * 4, 2 + 7 * k:6 + 7 * k] = 255
    tifffile.imwrite(tmp_path / "truth.tif", truth)
    tifffile.imwrite(tmp_path / "pred.tif", pred)
    args = ["evaluate", "--prediction", str(tmp_path / "pred.tif"), "--truth", str(tmp_path / "truth.tif"),
            "--objects", "--json"]
    assert main(args) == 0
    obj = json.loads(capsys.readouterr().out)["objects"]
    assert obj["n_truth"] == 5 and obj["n_pred"] == 4 and obj["count_error"] == -1  # the edge piece went too
    assert obj["f1"] == pytest.approx(2 * 4 / (4 + 5))
    assert obj["note"] == ("9 fragments under a tenth of the typical object (58 voxels) dropped; "
                           "`objects --min-fraction 0` keeps them. With them: 13 objects, F1 0.556, "
                           "count error +8.")
    assert main([*args, "--min-fraction", "0"]) == 0
    obj = json.loads(capsys.readouterr().out)["objects"]
    assert obj["n_pred"] == 13 and obj["count_error"] == 8 and "note" not in obj


def test_objects_drops_fragments_by_default_and_says_so(tmp_path, capsys):
    import tifffile

    from napari_segnets.io import read

    mask = np.zeros((4, 64, 64), np.uint8)
    for cy, cx in ((12, 12), (12, 44), (44, 12), (44, 44)):
        mask[:, cy - 6:cy + 6, cx - 6:cx + 6] = 255
    for k in range(8):
        mask[k % 4, 28 + (k // 4) * 4:32 + (k // 4) * 4, 2 + 7 * k:6 + 7 * k] = 255
    tifffile.imwrite(tmp_path / "pred.tif", mask)
    out = tmp_path / "objects.tif"
    assert main(["objects", "--input", str(tmp_path / "pred.tif"), "--out", str(out), "--voxel-size", "5,5,5"]) == 0
    captured = capsys.readouterr()
    assert "4 objects" in captured.out
    assert "8 fragments under a tenth of the typical object (58 voxels, 7.2e3 nm^3) dropped" in captured.err
    assert int(np.asarray(read(out)[0]).max()) == 4
    assert main(["objects", "--input", str(tmp_path / "pred.tif"), "--out", str(out), "--min-fraction", "0"]) == 0
    assert "12 objects" in capsys.readouterr().out
