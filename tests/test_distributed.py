"""Scale-out: chunked prediction on a Dask LocalCluster, resuming killed runs, DDP training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _model_helpers import calibrated_unet  # noqa: E402

from napari_segnets._cli import main
from napari_segnets.distributed import predict_volume, shard_indices
from napari_segnets.distributed._chunks import chunk_grid
from napari_segnets.distributed.volume import PROGRESS_FILE
from napari_segnets.errors import InputError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """A synthetic stack as TIFF and a tiny random-weight U-Net checkpoint (its output is not trivial)."""
    import tifffile

    from napari_segnets import checkpoints
    from napari_segnets.io.normalize import normalization_spec
    from napari_segnets.sample_data import synthetic_stack

    root = tmp_path_factory.mktemp("dist")
    image, labels = synthetic_stack((3, 80, 72), seed=1)
    tifffile.imwrite(root / "img.tif", image, photometric="minisblack")
    tifffile.imwrite(root / "mito.tif", labels["mitochondria"], photometric="minisblack")
    checkpoints.save(root / "seg.safetensors", calibrated_unet(image), {"normalization": normalization_spec()})
    return root


def _read(path):
    import zarr

    return zarr.open_array(str(path), mode="r")[...]


def test_chunk_grid_tiles_the_volume_once():
    shape, chunks = (5, 70, 33), (2, 32, 16)
    cover = np.zeros(shape, int)
    for z0, z1, y0, y1, x0, x1 in chunk_grid(shape, chunks):
        cover[z0:z1, y0:y1, x0:x1] += 1
    assert (cover == 1).all()
    assert len(chunk_grid(shape, chunks)) == 3 * 3 * 3


@pytest.mark.parametrize("n, world", [(10, 2), (7, 3), (1, 2), (4, 4)])
def test_shards_are_equal_in_size_and_cover_every_slice(n, world):
    shards = [shard_indices(n, r, world) for r in range(world)]
    assert len({len(s) for s in shards}) == 1  # equal steps on every rank
    assert set().union(*map(set, shards)) == set(range(n))
    if n % world == 0:
        assert sorted(i for s in shards for i in s) == list(range(n))  # a partition


def test_chunked_prediction_equals_whole_volume_prediction(sample, tmp_path):
    import tifffile

    from napari_segnets import checkpoints
    from napari_segnets.inference import predict

    result = predict_volume(sample / "seg.safetensors", sample / "img.tif", tmp_path / "p.zarr",
                            output="probabilities", chunks=(2, 40, 32))
    assert result.chunks_total == 2 * 2 * 3 and result.chunks_computed == result.chunks_total
    model, meta = checkpoints.load(sample / "seg.safetensors")
    whole = predict(model, tifffile.imread(sample / "img.tif"), output="probabilities",
                    normalization=meta["normalization"])
    chunked = _read(tmp_path / "p.zarr")
    assert 0.05 < chunked.std()  # a non-trivial map
    np.testing.assert_allclose(chunked, whole, atol=1e-5)
    part = predict_volume(sample / "seg.safetensors", sample / "img.tif", tmp_path / "part.zarr",
                          output="probabilities", chunks=(1, 80, 72), slices=(1, 3))
    assert part.shape == (2, 80, 72)
    np.testing.assert_allclose(_read(tmp_path / "part.zarr"), whole[1:3], atol=1e-5)


@pytest.mark.slow
def test_two_worker_local_cluster_equals_single_process(sample, tmp_path, capsys):
    import torch

    # Workers get this process's torch thread count, so float sums round the same way and the
    # outputs are bit-identical (by default each worker takes cores / workers threads).
    threads = torch.get_num_threads()
    common = ["predict", "--checkpoint", sample / "seg.safetensors", "--input", sample / "img.tif",
              "--chunks", "1,40,72", "--output", "probabilities", "--no-progress"]
    assert main([str(a) for a in [*common, "--out", tmp_path / "single.zarr"]]) == 0
    argv = [*common, "--out", tmp_path / "cluster.zarr", "--workers", 2, "--torch-threads", threads]
    assert main([str(a) for a in argv]) == 0, capsys.readouterr().err
    assert "6/6 chunks computed" in capsys.readouterr().out
    single, cluster = _read(tmp_path / "single.zarr"), _read(tmp_path / "cluster.zarr")
    assert single.std() > 0.05
    np.testing.assert_array_equal(cluster, single)


# The CLI in a process that SIGKILLs itself once 4 chunks are recorded: a crash mid-run.
DIE_AFTER_4_CHUNKS = """
import os, signal, sys
from napari_segnets.distributed import volume
from napari_segnets._cli import main

mark, marked = volume._Journal.mark, []

def mark_then_die(self, index):
    mark(self, index)
    marked.append(index)
    if len(marked) == 4:
        self.flush(force=True)
        os.kill(os.getpid(), signal.SIGKILL)

volume._Journal.mark = mark_then_die
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_killed_predict_resumes_to_the_same_result(sample, tmp_path):
    argv = ["predict", "--checkpoint", sample / "seg.safetensors", "--input", sample / "img.tif",
            "--chunks", "1,40,40", "--output", "probabilities", "--no-progress"]
    killed = tmp_path / "killed.zarr"
    import torch

    # The same torch thread count in both processes: float sums then round identically.
    threads = str(torch.get_num_threads())
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS=threads)
    proc = subprocess.run([sys.executable, "-c", DIE_AFTER_4_CHUNKS, *map(str, argv), "--out", str(killed)],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    record = json.loads((killed / PROGRESS_FILE).read_text())
    assert len(record["done"]) == 4 and not record["complete"]

    resumed = predict_volume(sample / "seg.safetensors", sample / "img.tif", killed, output="probabilities",
                             chunks=(1, 40, 40))
    assert (resumed.chunks_skipped, resumed.chunks_computed) == (4, 12 - 4)
    whole = predict_volume(sample / "seg.safetensors", sample / "img.tif", tmp_path / "whole.zarr",
                           output="probabilities", chunks=(1, 40, 40))
    assert whole.chunks_skipped == 0
    np.testing.assert_array_equal(_read(killed), _read(tmp_path / "whole.zarr"))
    assert json.loads((killed / PROGRESS_FILE).read_text())["complete"]


def test_an_output_made_with_other_settings_is_never_mixed(sample, tmp_path, capsys):
    out = tmp_path / "p.zarr"
    base = ["predict", "--checkpoint", sample / "seg.safetensors", "--input", sample / "img.tif",
            "--out", out, "--chunks", "3,80,72"]
    assert main([str(a) for a in base]) == 0
    first = _read(out)
    code = main([str(a) for a in [*base, "--threshold", "0.3"]])
    err = capsys.readouterr().err
    assert code == 2 and "other settings" in err
    np.testing.assert_array_equal(_read(out), first)  # untouched
    assert main([str(a) for a in [*base, "--threshold", "0.3", "--overwrite"]]) == 0
    assert _read(out).sum() >= first.sum()
    (tmp_path / "foreign.zarr").mkdir()
    with pytest.raises(InputError, match="was not written by"):
        predict_volume(sample / "seg.safetensors", sample / "img.tif", tmp_path / "foreign.zarr")


def test_ddp_wrapper_looks_like_the_model(tmp_path):
    import gc

    import torch
    import torch.distributed as dist

    from napari_segnets.distributed.ddp import DDPEnv, unwrap, wrap
    from napari_segnets.models import build

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rdzv'}", rank=0, world_size=1)
    ddp = None
    try:
        torch.manual_seed(0)
        model = build("unet", base=8, depth=2)
        ddp = wrap(model, DDPEnv(0, 1, 0, "gloo", "cpu"))
        assert unwrap(ddp) is model
        assert ddp.arch == "unet" and ddp.halo == model.halo and ddp.config == model.config
        assert list(ddp.state_dict()) == list(model.state_dict())  # no "module." prefix
        x = torch.rand(2, 1, 32, 32)
        with torch.inference_mode():
            torch.testing.assert_close(ddp.eval()(x), model(x))
        ddp.train()
        ddp(x).sum().backward()
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    finally:
        # the DDP reducer must go before its process group: freed after destroy_process_group,
        # gloo's destructor waited forever on its threads (a hang seen once in a full run)
        del ddp
        gc.collect()
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_training_with_two_cpu_processes(sample, tmp_path):
    from napari_segnets import checkpoints

    ckpt = tmp_path / "ddp.safetensors"
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "napari_segnets", "train", "--images", str(sample / "img.tif"), "--masks",
           str(sample / "mito.tif"), "--val-slices", "2:3", "--arch", "unet", "--base", "8",
           "--option", "depth=2", "--epochs", "1000", "--minutes", "0.02", "--crop", "32",
           "--batch-size", "2", "--out", str(ckpt), "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    model, meta = checkpoints.load(ckpt)
    assert meta["arch"] == "unet" and model.config["depth"] == 2
    assert 1 <= len(meta["history"]) < 1000  # the time budget stopped it, on both ranks together
    assert proc.stdout.count("checkpoint:") == 1  # rank 0 alone reports (and writes)
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["ddp.last.optim.safetensors", "ddp.last.safetensors", "ddp.optim.safetensors",
                       "ddp.safetensors", "ddp.safetensors.config.yaml"]
