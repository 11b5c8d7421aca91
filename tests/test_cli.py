"""The `napari-segnets` command line, end to end on the synthetic sample with tiny nets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from _model_helpers import calibrated_unet  # noqa: E402

from napari_segnets._cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """Synthetic stack and mitochondria masks as TIFFs, plus a tiny random-weight U-Net checkpoint."""
    import tifffile

    from napari_segnets import checkpoints
    from napari_segnets.io.normalize import normalization_spec
    from napari_segnets.sample_data import synthetic_stack

    root = tmp_path_factory.mktemp("cli")
    image, labels = synthetic_stack((4, 64, 64), seed=0)
    tifffile.imwrite(root / "img.tif", image, photometric="minisblack")
    tifffile.imwrite(root / "mito.tif", labels["mitochondria"], photometric="minisblack")
    tifffile.imwrite(root / "mito_small.tif", labels["mitochondria"][:, :32], photometric="minisblack")
    checkpoints.save(root / "seg.safetensors", calibrated_unet(image), {"normalization": normalization_spec()})
    ae = calibrated_unet(image, task="autoencode")
    checkpoints.save(root / "ae.safetensors", ae, {"normalization": normalization_spec()})
    return root


def run(argv, capsys):
    """main(argv) in this process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert "Traceback" not in err
    return lines[0]


# ----------------------------------------------------------------------------- the viewer path
def test_no_arguments_calls_the_launcher_not_a_window(monkeypatch):
    calls = []
    widgets = types.ModuleType("napari_segnets._widgets")
    launch = types.ModuleType("napari_segnets._widgets._launch")
    launch.run_viewer = lambda: calls.append("run_viewer")
    widgets._launch = launch
    monkeypatch.setitem(sys.modules, "napari_segnets._widgets", widgets)
    monkeypatch.setitem(sys.modules, "napari_segnets._widgets._launch", launch)
    assert main([]) == 0
    assert calls == ["run_viewer"]


def test_subcommands_do_not_import_napari():
    code = (
        "import sys; from napari_segnets._cli import main\n"
        "main(['evaluate', '--help'])\n"
        "print('napari' in sys.modules, 'torch' in sys.modules)"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False False"


@pytest.mark.parametrize(
    "command",
    ["train", "finetune", "predict", "autoencode", "wavelets", "evaluate", "bench", "export",
     "curate add", "curate list", "curate check"],
)
def test_every_subcommand_has_help(command, capsys):
    code, out, _ = run([*command.split(), "--help"], capsys)
    assert code == 0
    assert f"napari-segnets {command}" in out and "--config" in out


# ----------------------------------------------------------------------------- train / predict / evaluate
@pytest.mark.slow
def test_train_predict_evaluate_end_to_end(sample, tmp_path, capsys):
    from napari_segnets import checkpoints

    ckpt = tmp_path / "model.safetensors"
    code, out, err = run(
        ["train", "--images", sample / "img.tif", "--masks", sample / "mito.tif", "--val-slices", "3:4",
         "--arch", "unet", "--base", 8, "--option", "depth=2", "--epochs", 2, "--steps-per-epoch", 2,
         "--crop", 32, "--batch-size", 2, "--out", ckpt, "--no-progress"],
        capsys,
    )
    assert code == 0, err
    model, meta = checkpoints.load(ckpt)
    assert meta["arch"] == "unet" and model.config["depth"] == 2 and len(meta["history"]) >= 1
    assert "epoch 2" in err and f"checkpoint: {ckpt}" in out
    effective = Path(str(ckpt) + ".config.yaml")
    assert "val_slices: '3:4'" in effective.read_text()

    pred = tmp_path / "pred.zarr"
    code, out, err = run(["predict", "--checkpoint", ckpt, "--input", sample / "img.tif", "--out", pred,
                          "--chunks", "2,32,64"], capsys)
    assert code == 0, err
    assert "4/4 chunks" in out
    import zarr

    labels = zarr.open_array(str(pred), mode="r")[...]
    assert labels.shape == (4, 64, 64) and labels.dtype == np.uint8

    code, out, err = run(["evaluate", "--prediction", pred, "--truth", sample / "mito.tif", "--json",
                          "--slices", "3:4", "--per-slice"], capsys)
    assert code == 0, err
    scores = json.loads(out)
    assert set(scores["overall"]) >= {"iou", "dice"} and scores["per_slice"][0]["index"] == 3
    code, out, _ = run(["evaluate", "--prediction", pred, "--truth", sample / "mito.tif"], capsys)
    assert code == 0 and "iou:" in out and "dice:" in out


def test_minutes_stop_training_and_keep_the_best_checkpoint(sample, tmp_path, capsys):
    from napari_segnets import checkpoints

    ckpt = tmp_path / "m.safetensors"
    code, _, err = run(["train", "--images", sample / "img.tif", "--masks", sample / "mito.tif",
                        "--val-slices", "3:4", "--arch", "unet", "--base", 8, "--option", "depth=2",
                        "--epochs", 10000, "--steps-per-epoch", 1, "--crop", 32, "--batch-size", 1,
                        "--minutes", 0.01, "--out", ckpt, "--no-progress"], capsys)
    assert code == 0, err
    _, meta = checkpoints.load(ckpt)
    assert 1 <= len(meta["history"]) < 10000


def test_evaluate_scores_match_the_metrics(sample, tmp_path, capsys):
    import tifffile

    from napari_segnets.metrics import dice, iou

    truth = tifffile.imread(sample / "mito.tif")
    pred = np.roll(truth, 3, axis=2)
    tifffile.imwrite(tmp_path / "p.tif", pred)
    code, out, err = run(["evaluate", "--prediction", tmp_path / "p.tif", "--truth", sample / "mito.tif",
                          "--json"], capsys)
    assert code == 0, err
    overall = json.loads(out)["overall"]
    assert overall["iou"] == pytest.approx(iou(pred, truth))
    assert overall["dice"] == pytest.approx(dice(pred, truth))


def test_evaluate_a_prediction_of_the_selected_slices_only(sample, tmp_path, capsys):
    """`predict --slices 1:3` writes 2 slices; `evaluate --slices 1:3` scores them against truth slices
    1-2 (and says so) instead of refusing the depth mismatch; a mismatch that --slices does not explain
    is refused with one sentence."""
    import tifffile

    from napari_segnets.metrics import iou

    out = tmp_path / "part.tif"
    code, _, err = run(["predict", "--checkpoint", sample / "seg.safetensors", "--input", sample / "img.tif",
                        "--slices", "1:3", "--out", out, "--output", "labels", "--no-progress"], capsys)
    assert code == 0, err
    pred, truth = tifffile.imread(out), tifffile.imread(sample / "mito.tif")
    assert pred.shape[0] == 2
    code, out_text, err = run(["evaluate", "--prediction", out, "--truth", sample / "mito.tif",
                               "--slices", "1:3", "--json", "--per-slice"], capsys)
    assert code == 0, err
    result = json.loads(out_text)
    assert result["overall"]["iou"] == pytest.approx(iou(pred != 0, truth[1:3] != 0))
    assert [e["index"] for e in result["per_slice"]] == [1, 2]
    assert "ground-truth slices 1-2" in err
    code, out_text, _ = run(["evaluate", "--prediction", out, "--truth", sample / "mito.tif", "--slices", "1:3"],
                            capsys)
    assert code == 0 and "ground-truth slices 1-2" in out_text.splitlines()[0]
    for argv, expected in ((["--slices", "0:3"], "exactly the selected slices"), ([], "--slices A:B")):
        code, _, err = run(["evaluate", "--prediction", out, "--truth", sample / "mito.tif", *argv], capsys)
        assert code == 2 and expected in one_line_error(err)
    # two planes that sum to 1 everywhere may be class probabilities of one slice: refused
    probs = np.stack([np.full(truth.shape[1:], 0.25, np.float32), np.full(truth.shape[1:], 0.75, np.float32)])
    tifffile.imwrite(tmp_path / "probs.tif", probs, photometric="minisblack")
    code, _, err = run(["evaluate", "--prediction", tmp_path / "probs.tif", "--truth", sample / "mito.tif",
                        "--slices", "1:3"], capsys)
    assert code == 2 and "class probabilities" in one_line_error(err)


def test_evaluate_mode_with_the_old_kind_spelling_accepted_quietly(sample, tmp_path, capsys):
    """`evaluate --mode` names the scoring mode as metrics.score_stack(mode=) does; the old `--kind`
    (flag or config key) still works, unlisted and without a warning."""
    args = ["evaluate", "--prediction", sample / "mito.tif", "--truth", sample / "mito.tif", "--json"]
    code, new, err = run([*args, "--mode", "membrane"], capsys)
    assert code == 0 and err == "" and "rand_error" in json.loads(new)["overall"]
    code, old, err = run([*args, "--kind", "membrane"], capsys)
    assert code == 0 and err == "" and old == new
    (tmp_path / "e.yaml").write_text("kind: membrane\n")
    code, from_config, err = run([*args, "--config", tmp_path / "e.yaml"], capsys)
    assert code == 0 and err == "" and from_config == new
    code, _, err = run([*args, "--mode", "binary", "--kind", "membrane"], capsys)
    assert code == 2 and "disagree" in one_line_error(err)
    code, text, _ = run(["evaluate", "--help"], capsys)
    assert "--mode" in text and "--kind" not in text


def test_config_files_yaml_and_toml_with_flags_overriding(sample, tmp_path, capsys):
    import tifffile

    truth = tifffile.imread(sample / "mito.tif")
    pred = truth.copy()
    pred[0] = 0  # slice 0 wrong, slices 1-3 perfect
    tifffile.imwrite(tmp_path / "p.tif", pred)
    toml = tmp_path / "eval.toml"
    toml.write_text(f'prediction = "{tmp_path / "p.tif"}"\ntruth = "{sample / "mito.tif"}"\njson = true\n'
                    '[evaluate]\nslices = "1:4"\n')
    code, out, err = run(["evaluate", "--config", toml], capsys)
    assert code == 0, err
    assert json.loads(out)["overall"]["iou"] == pytest.approx(1.0)
    code, out, _ = run(["evaluate", "--config", toml, "--slices", "0:1"], capsys)  # the flag wins
    assert json.loads(out)["overall"]["iou"] == pytest.approx(0.0)
    yml = tmp_path / "eval.yaml"
    yml.write_text(f"prediction: {tmp_path / 'p.tif'}\ntruth: {sample / 'mito.tif'}\nslices: '1:4'\njson: true\n")
    code, out, _ = run(["evaluate", "--config", yml], capsys)
    assert code == 0 and json.loads(out)["overall"]["iou"] == pytest.approx(1.0)


def test_effective_config_repeats_a_predict_run(sample, tmp_path, capsys, monkeypatch):
    import zarr

    out_path = tmp_path / "p.zarr"
    argv = ["predict", "--checkpoint", sample / "seg.safetensors", "--input", sample / "img.tif",
            "--out", out_path, "--output", "probabilities", "--chunks", "2,64,64"]
    code, _, err = run(argv, capsys)
    assert code == 0, err
    first = zarr.open_array(str(out_path), mode="r")[...]
    effective = Path(str(out_path) + ".config.yaml")
    text = effective.read_text()
    assert "command: predict" in text and "output: probabilities" in text
    monkeypatch.chdir(tmp_path.parent)  # absolute paths in the file: works from anywhere
    code, out, err = run(["predict", "--config", effective], capsys)
    assert code == 0, err
    assert "0/2 chunks computed, 2 resumed" in out
    np.testing.assert_array_equal(zarr.open_array(str(out_path), mode="r")[...], first)
    code, _, err = run(["evaluate", "--config", effective], capsys)  # written for predict, not evaluate
    assert code == 2 and "was written for `predict`" in one_line_error(err)


# ----------------------------------------------------------------------------- other subcommands
@pytest.mark.slow
def test_finetune_from_a_curated_store(sample, tmp_path, capsys):
    from napari_segnets import checkpoints

    store = tmp_path / "store"
    for z, split in ((0, "train"), (1, "train"), (2, "val")):
        code, out, err = run(["curate", "add", "--store", store, "--image", sample / "img.tif", "--mask",
                              sample / "mito.tif", "--slice", z, "--split", split, "--changed-pixels", 10], capsys)
        assert code == 0, err
        assert "added sample" in out
    code, out, _ = run(["curate", "list", "--store", store, "--json"], capsys)
    listing = json.loads(out)
    assert listing["counts"]["train"] == 2 and listing["counts"]["val"] == 1
    code, out, _ = run(["curate", "check", "--store", store], capsys)
    assert code == 0 and out.strip().endswith("ok")

    child = tmp_path / "child.safetensors"
    code, out, err = run(["finetune", "--checkpoint", sample / "seg.safetensors", "--store", store,
                          "--epochs", 1, "--steps-per-epoch", 2, "--crop", 32, "--batch-size", 2,
                          "--out", child, "--no-progress"], capsys)
    assert code == 0, err
    _, meta = checkpoints.load(child)
    assert meta["parent"]["path"] == str((sample / "seg.safetensors").resolve())

    record = listing["samples"][0]
    (store / record["mask"]).write_bytes(b"not a tiff any more")
    code, out, err = run(["curate", "check", "--store", store], capsys)
    assert code == 1 and "corrupt" in out


def test_autoencode_to_tiff_then_wavelets(sample, tmp_path, capsys):
    import tifffile

    recon = tmp_path / "recon.tif"
    code, out, err = run(["autoencode", "--checkpoint", sample / "ae.safetensors", "--input",
                          sample / "img.tif", "--out", recon], capsys)
    assert code == 0, err
    data = tifffile.imread(recon)
    assert data.shape == (4, 64, 64) and data.dtype == np.float32
    assert not Path(str(recon) + ".partial.zarr").exists()
    plot = tmp_path / "power.png"
    code, out, err = run(["wavelets", "--input", sample / "img.tif", "--reconstruction", f"ae={recon}",
                          "--slices", "0:2", "--plot", plot, "--json"], capsys)
    assert code == 0, err
    table = json.loads(out)
    assert table["n_images"] == 2 and "ae" in table["ratio"] and plot.is_file()
    assert sum(table["power"]["original"]["mean"]) == pytest.approx(1.0)
    code, out, _ = run(["wavelets", "--input", sample / "img.tif"], capsys)
    assert code == 0 and out.splitlines()[0].split() == ["level", "power", "std"]
    code, _, err = run(["autoencode", "--checkpoint", sample / "ae.safetensors", "--input",
                        sample / "img.tif", "--out", recon], capsys)
    assert code == 2 and "--overwrite" in one_line_error(err)
    # a reconstruction made from the same --slices is taken as is; another shape is refused
    tifffile.imwrite(tmp_path / "part.tif", data[:2])
    code, out, err = run(["wavelets", "--input", sample / "img.tif", "--reconstruction",
                          f"ae={tmp_path / 'part.tif'}", "--slices", "0:2", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["ratio"]["ae"]
    code, _, err = run(["wavelets", "--input", sample / "img.tif", "--reconstruction",
                        f"ae={tmp_path / 'part.tif'}", "--slices", "0:3"], capsys)
    assert code == 2 and "must match" in one_line_error(err)


def test_export_torchscript_gives_the_same_output(sample, tmp_path, capsys):
    import torch

    from napari_segnets import checkpoints

    out_file = tmp_path / "seg.pt"
    code, out, err = run(["export", "--checkpoint", sample / "seg.safetensors", "--out", out_file,
                          "--tile", 64], capsys)
    assert code == 0, err
    model, _ = checkpoints.load(sample / "seg.safetensors")
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.load(str(out_file))(x), model(x))


def test_bench_reports_megapixels_per_second(capsys):
    code, out, err = run(["bench", "--arch", "atrous", "--base", 8, "--size", 64, "--repeats", 1,
                          "--device", "cpu", "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["mp_per_s_median"] > 0 and result["device"].startswith("cpu")


# ----------------------------------------------------------------------------- bad input: exit 2, one line
BAD = {
    "missing input file": (["predict", "--checkpoint", "{s}/seg.safetensors", "--input", "{s}/nope.tif",
                            "--out", "{t}/o.zarr"], "does not exist"),
    "missing checkpoint": (["predict", "--checkpoint", "{s}/nope.safetensors", "--input", "{s}/img.tif",
                            "--out", "{t}/o.zarr"], "does not exist"),
    "bad slice range": (["evaluate", "--prediction", "{s}/mito.tif", "--truth", "{s}/mito.tif",
                         "--slices", "3:1"], "does not fit the stack of 4"),
    "slice range not numbers": (["evaluate", "--prediction", "{s}/mito.tif", "--truth", "{s}/mito.tif",
                                 "--slices", "a:b"], "not a range"),
    "unknown arch": (["train", "--images", "{s}/img.tif", "--masks", "{s}/mito.tif", "--arch", "resnet",
                      "--out", "{t}/m.safetensors"], "Unknown architecture 'resnet'"),
    "mismatched shapes": (["train", "--images", "{s}/img.tif", "--masks", "{s}/mito_small.tif", "--arch",
                           "unet", "--out", "{t}/m.safetensors"], "must match pixel for pixel"),
    "mismatched eval shapes": (["evaluate", "--prediction", "{s}/mito_small.tif", "--truth", "{s}/mito.tif"],
                               "must match"),
    "val holds every slice": (["train", "--images", "{s}/img.tif", "--masks", "{s}/mito.tif", "--arch", "unet",
                               "--val-slices", "0:4", "--out", "{t}/m.safetensors"], "leave some to train on"),
    "missing required": (["train", "--images", "{s}/img.tif"], "missing --arch, --out"),
    "unknown flag": (["predict", "--frobnicate"], "unrecognized arguments"),
    "bad chunks": (["predict", "--checkpoint", "{s}/seg.safetensors", "--input", "{s}/img.tif", "--out",
                    "{t}/o.zarr", "--chunks", "1,x,2"], "--chunks"),
    "bad output suffix": (["predict", "--checkpoint", "{s}/seg.safetensors", "--input", "{s}/img.tif",
                           "--out", "{t}/o.h5"], "must end in .zarr"),
    "workers and scheduler": (["predict", "--checkpoint", "{s}/seg.safetensors", "--input", "{s}/img.tif",
                               "--out", "{t}/o.zarr", "--workers", "2", "--scheduler", "tcp://x:1"], "not both"),
    "autoencoder asked for labels": (["predict", "--checkpoint", "{s}/ae.safetensors", "--input", "{s}/img.tif",
                                      "--out", "{t}/o.zarr", "--output", "labels"], "cannot produce 'labels'"),
    "not a checkpoint": (["export", "--checkpoint", "{s}/img.tif", "--out", "{t}/m.pt"], "not a complete safetensors file"),
    "a path given as --output": (["predict", "--checkpoint", "{s}/seg.safetensors", "--input", "{s}/img.tif",
                                  "--output", "{t}/o.zarr"], "the path goes in --out"),
    "unknown config key": (["evaluate", "--config", "{t}/bad.yaml"], "Unknown option(s) slicez"),
    "missing config": (["evaluate", "--config", "{t}/none.yaml"], "does not exist"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_exits_2_with_one_line(case, sample, tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text("slicez: '1:2'\n")
    argv, expected = BAD[case]
    argv = [a.format(s=sample, t=tmp_path) for a in argv]
    code, _, err = run(argv, capsys)
    line = one_line_error(err)
    assert code == 2, line
    assert line.startswith("napari-segnets")
    assert expected in line
    assert not (tmp_path / "o.zarr").exists()


def test_console_entry_in_a_subprocess(sample, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "napari_segnets"]
    ok = subprocess.run([*cmd, "evaluate", "--prediction", str(sample / "mito.tif"), "--truth",
                         str(sample / "mito.tif"), "--json"], capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["overall"]["iou"] == 1.0
    bad = subprocess.run([*cmd, "evaluate", "--prediction", str(tmp_path / "none.tif"), "--truth",
                          str(sample / "mito.tif")], capture_output=True, text=True, env=env)
    assert bad.returncode == 2
    assert "does not exist" in one_line_error(bad.stderr)
