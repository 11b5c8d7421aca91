"""`napari-segnets review`: the queue CSV and its labels, deterministic; bad input is one line, exit 2."""

import csv

import numpy as np
import pytest
import tifffile

from napari_segnets import checkpoints, models
from napari_segnets._cli import main


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    import torch

    root = tmp_path_factory.mktemp("review_cli")
    torch.manual_seed(0)
    net = models.build("unet", base=4, depth=2)
    checkpoints.save(root / "m.safetensors", net, {"normalization": {"mode": "percentile", "low": 1.0,
                                                                        "high": 99.8}})
    rng = np.random.default_rng(0)
    image = (rng.random((3, 16, 16)) * 60).astype(np.uint8)
    image[:, 4:10, 4:10] += 150  # something to segment
    tifffile.imwrite(root / "stack.tif", image)
    return root


def _run(files, name):
    args = ["review", "--checkpoint", str(files / "m.safetensors"), "--input", str(files / "stack.tif"),
            "--output", str(files / f"{name}.csv"), "--labels-out", str(files / f"{name}.tif"),
            "--views", "xy,flip_x", "--device", "cpu", "--threshold", "0.45", "--no-progress"]
    return main(args)


def test_review_writes_a_deterministic_queue(files, capsys):
    assert _run(files, "a") == 0
    assert _run(files, "b") == 0
    a = (files / "a.csv").read_text()
    assert a == (files / "b.csv").read_text()
    rows = list(csv.DictReader(a.splitlines()))
    assert rows  # the bright square is an object
    head = list(rows[0]) if rows else a.splitlines()[0].split(",")
    assert head[:6] == ["rank", "id", "score", "centroid_z_vox", "centroid_y_vox", "centroid_x_vox"]
    assert "mask_change" in head and "bbox_x1_vox" in head
    labels = tifffile.imread(files / "a.tif")
    assert sorted(int(r["id"]) for r in rows) == sorted(set(np.unique(labels).tolist()) - {0})
    assert [int(r["rank"]) for r in rows] == list(range(1, len(rows) + 1))
    assert "objects ranked" in capsys.readouterr().out


def test_review_refuses_bad_input(files, capsys):
    code = main(["review", "--checkpoint", str(files / "m.safetensors"), "--input", str(files / "stack.tif"),
                 "--output", str(files / "q.txt")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and ".csv" in err
    code = main(["review", "--checkpoint", str(files / "m.safetensors"), "--input", str(files / "stack.tif"),
                 "--output", str(files / "q.csv"), "--views", "xy,sideways", "--device", "cpu"])
    assert code == 2 and "Unknown view" in capsys.readouterr().err


def test_review_uses_decisions_for_error_bars(files, capsys):
    from napari_segnets.review import DecisionLog

    assert _run(files, "c") == 0
    rows = list(csv.DictReader((files / "c.csv").read_text().splitlines()))
    log = DecisionLog(files / "d.jsonl")
    for r in rows:
        log.append({"kind": "decision", "object": int(r["id"]), "decision": "accept", "count_after": 1,
                    "voxels_after": int(r["voxels"])})
    capsys.readouterr()
    args = ["review", "--checkpoint", str(files / "m.safetensors"), "--input", str(files / "stack.tif"),
            "--output", str(files / "c.csv"), "--views", "xy,flip_x", "--device", "cpu", "--threshold", "0.45",
            "--decisions", str(log.path), "--no-progress"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert ("count" in captured.out) and ("review at least" in captured.out or "interval" in captured.out)
    log.append({"kind": "decision", "object": 9999, "decision": "delete", "count_after": 0, "voxels_after": 0})
    assert main(args) == 2 and "does not have" in capsys.readouterr().err


def test_review_reads_a_log_of_several_queues_by_queue_id(files, capsys):
    from napari_segnets.review import DecisionLog, queue_fingerprint

    assert _run(files, "e") == 0
    rows = list(csv.DictReader((files / "e.csv").read_text().splitlines()))
    this = queue_fingerprint(tifffile.imread(files / "e.tif"))
    log = DecisionLog(files / "e-review.jsonl")  # as the widget writes it: every decision names its queue
    log.append({"kind": "decision", "object": 9999, "decision": "delete", "count_after": 0, "voxels_after": 0,
                "queue_id": "an-earlier-queue"})
    args = ["review", "--checkpoint", str(files / "m.safetensors"), "--input", str(files / "stack.tif"),
            "--output", str(files / "e.csv"), "--views", "xy,flip_x", "--device", "cpu", "--threshold", "0.45",
            "--decisions", str(log.path), "--no-progress"]
    capsys.readouterr()
    assert main(args) == 0  # another queue's object 9999 is not this queue's
    assert "none of the decisions" in capsys.readouterr().err
    for r in rows:
        log.append({"kind": "decision", "object": int(r["id"]), "decision": "accept", "count_after": 1,
                    "voxels_after": int(r["voxels"]), "queue_id": this})
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "none of the decisions" not in captured.err and "count" in captured.out


def test_review_adds_novelty_with_an_autoencoder_and_its_reference(files, capsys):
    from napari_segnets.models import fit_pca

    rng = np.random.default_rng(5)
    reference = (rng.random((2, 16, 16)) * 60).astype(np.uint8)
    tifffile.imwrite(files / "reference.tif", reference)
    checkpoints.save(files / "ae.safetensors", fit_pca(reference / 60.0, patch=4, components=3, seed=0))
    base = ["review", "--checkpoint", str(files / "m.safetensors"), "--input", str(files / "stack.tif"),
            "--views", "xy,flip_x", "--device", "cpu", "--threshold", "0.45", "--no-progress"]
    novelty = ["--autoencoder", str(files / "ae.safetensors"), "--reference", str(files / "reference.tif")]
    assert main([*base, "--out", str(files / "n1.csv"), *novelty]) == 0
    assert main([*base, "--out", str(files / "n2.csv"), *novelty]) == 0
    assert main([*base, "--out", str(files / "plain.csv")]) == 0
    n1 = (files / "n1.csv").read_text()
    assert n1 == (files / "n2.csv").read_text()
    rows = list(csv.DictReader(n1.splitlines()))
    plain = list(csv.DictReader((files / "plain.csv").read_text().splitlines()))
    assert rows and "novelty" in rows[0] and "novelty_level1" in rows[0] and "novelty" not in plain[0]
    assert [(r["id"], r["score"]) for r in rows] == [(r["id"], r["score"]) for r in plain]  # not scored
    capsys.readouterr()
    assert main([*base, "--out", str(files / "n3.csv"), novelty[0], novelty[1]]) == 2
    assert "--reference" in capsys.readouterr().err
    assert main([*base, "--out", str(files / "n3.csv"), "--autoencoder", str(files / "m.safetensors"),
                 novelty[2], novelty[3]]) == 2
    assert "--task autoencode" in capsys.readouterr().err
