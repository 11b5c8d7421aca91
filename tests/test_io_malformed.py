"""Generated malformed inputs: the project's own one-sentence error everywhere.

Every case is refused by ``io.read`` eagerly, by a lazy read at the latest when pixels are
computed, by the napari reader, and by the command line (exit 2, one line on stderr).
"""

from __future__ import annotations

import logging
import os
import types

import numpy as np
import pytest
import tifffile

from napari_segnets import _napari
from napari_segnets._cli import main
from napari_segnets.errors import InputError
from napari_segnets.io import read


def _png_bytes(plane) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(plane).save(buf, format="PNG")
    return buf.getvalue()


def fifo(tmp_path, monkeypatch):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes on this platform")
    os.mkfifo(tmp_path / "pipe.tif")
    return tmp_path / "pipe.tif"


def zarr_1d(tmp_path, monkeypatch):
    import zarr

    zarr.open_array(str(tmp_path / "line.zarr"), mode="w", shape=(100,), dtype="u1")[:] = 1
    return tmp_path / "line.zarr"


def h5_bytes(tmp_path, monkeypatch):
    import h5py

    with h5py.File(tmp_path / "text.h5", "w") as f:
        f["raw"] = np.array([[b"abc", b"de"], [b"f", b"gh"]] * 4, dtype="S3").reshape(4, 4)
    return tmp_path / "text.h5"


def h5_compound(tmp_path, monkeypatch):
    import h5py

    with h5py.File(tmp_path / "table.h5", "w") as f:
        f["raw"] = np.zeros((8, 8), dtype=[("a", "u1"), ("b", "f4")])
    return tmp_path / "table.h5"


def truncated_silenced(tmp_path, monkeypatch):
    # A host application (napari, a notebook) may silence tifffile's logger: the truncation
    # must still be found.
    monkeypatch.setattr(logging.getLogger("tifffile"), "disabled", True)
    data = np.random.default_rng(0).integers(0, 255, (6, 64, 64), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "full.tif", data, compression="zlib", photometric="minisblack")
    raw = (tmp_path / "full.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(raw[: int(len(raw) * 0.6)])
    return tmp_path / "cut.tif"


def missing_codec(tmp_path, monkeypatch):
    import tifffile.tifffile as tt

    data = np.arange(2 * 32 * 32, dtype=np.uint16).reshape(2, 32, 32)
    tifffile.imwrite(tmp_path / "lzw.tif", data, compression="lzw", photometric="minisblack")
    # imagecodecs as if not installed: tifffile resolves codecs through this module attribute
    monkeypatch.setattr(tt, "imagecodecs", types.SimpleNamespace())
    codecs = tifffile.TIFF.DECOMPRESSORS._codecs
    monkeypatch.setattr(
        tifffile.TIFF.DECOMPRESSORS, "_codecs", {k: v for k, v in codecs.items() if k != 5}
    )
    return tmp_path / "lzw.tif"


def _ome_zarr(path, datasets):
    import zarr

    g = zarr.open_group(str(path), mode="w", zarr_format=2)
    g.create_array("1", shape=(4, 16, 16), dtype="u1")
    axes = [{"name": a, "type": "space", "unit": "nanometer"} for a in "zyx"]
    g.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": datasets}]
    return path


def ome_missing_level(tmp_path, monkeypatch):
    scale = [{"type": "scale", "scale": [1.0, 1.0, 1.0]}]
    return _ome_zarr(
        tmp_path / "gone.ome.zarr", [{"path": "0", "coordinateTransformations": scale}]
    )


def ome_dataset_without_path(tmp_path, monkeypatch):
    return _ome_zarr(tmp_path / "nopath.ome.zarr", [{"coordinateTransformations": []}])


def corrupt_png_slice(tmp_path, monkeypatch):
    folder = tmp_path / "slices"
    folder.mkdir()
    plane = np.random.default_rng(1).integers(0, 255, (32, 32), dtype=np.uint8)
    good = _png_bytes(plane)
    for i in range(4):
        (folder / f"s{i}.png").write_bytes(good)
    start = good.index(b"IDAT") + 8  # keep the header, garble the compressed pixels
    bad = good[:start] + bytes(b ^ 0x5A for b in good[start : start + 40]) + good[start + 40 :]
    (folder / "s2.png").write_bytes(bad)
    return folder


def long_dataset_list(tmp_path, monkeypatch):
    import h5py

    with h5py.File(tmp_path / "many.h5", "w") as f:
        for i in range(30):
            f.create_dataset(f"volume_with_a_long_name_{i:02d}", shape=(2, 8, 8), dtype="u1")
    return tmp_path / "many.h5"


CASES = {
    "fifo": (fifo, r"pipe.tif is not a regular file"),
    "1d zarr": (zarr_1d, r"holds a 1D array \(shape \(100,\)\), not an image"),
    "byte strings": (h5_bytes, r"holds \|S3 values \(text, records or objects\)"),
    "compound dtype": (h5_compound, r"values \(text, records or objects\)"),
    "truncated, logger silenced": (truncated_silenced, r"cut.tif is (truncated|corrupt)"),
    "missing codec": (missing_codec, r"compressed with LZW, whose decoder is not installed"),
    "OME-Zarr level missing": (ome_missing_level, r"list the level '0', but the store has no"),
    "OME-Zarr dataset without path": (ome_dataset_without_path, r"dataset entry has no path"),
    "corrupt PNG slice": (corrupt_png_slice, r"Slice s2.png in slices .*could not be read"),
    "long dataset list": (long_dataset_list, r"several 3D datasets .* and 24 more\); choose one"),
}


def _sentence(err: BaseException) -> str:
    text = str(err)
    assert "\n" not in text and "Traceback" not in text and len(text) < 400, text
    return text


@pytest.mark.timeout(60)
@pytest.mark.parametrize("where", ["eager", "lazy", "napari", "cli"])
@pytest.mark.parametrize("case", list(CASES))
def test_malformed_input_gives_our_sentence(case, where, tmp_path, monkeypatch, capsys):
    build, expected = CASES[case]
    path = build(tmp_path, monkeypatch)
    if where == "cli":
        code = main(["evaluate", "--prediction", str(path), "--truth", str(path)])
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert code == 2 and len(lines) == 1, err
        import re

        assert re.search(expected, lines[0]), lines[0]
        return
    if where == "napari" and case == "long dataset list":
        layers = _napari.get_reader(str(path))(str(path))  # napari opens them all instead
        assert len(layers) == 30
        return
    with pytest.raises(InputError, match=expected) as info:
        if where == "napari":
            reader = _napari.get_reader(str(path))
            assert reader is not None
            for data, _, _ in reader(str(path)):
                np.asarray(data)
        else:
            array, _ = read(path, lazy=where == "lazy")
            np.asarray(array)  # lazy: the chunk that fails must fail with our sentence
    _sentence(info.value)


@pytest.mark.timeout(120)
def test_predict_on_a_lazy_folder_with_a_corrupt_slice_exits_2(tmp_path, monkeypatch, capsys):
    from _model_helpers import calibrated_unet

    from napari_segnets import checkpoints
    from napari_segnets.io.normalize import normalization_spec

    folder = corrupt_png_slice(tmp_path, monkeypatch)
    image = np.random.default_rng(0).integers(0, 255, (2, 32, 32), dtype=np.uint8)
    checkpoints.save(
        tmp_path / "m.safetensors", calibrated_unet(image), {"normalization": normalization_spec()}
    )
    code = main(
        [
            "predict",
            "--checkpoint",
            str(tmp_path / "m.safetensors"),
            "--input",
            str(folder),
            "--out",
            str(tmp_path / "o.zarr"),
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip() and "warning" not in ln.lower()]
    assert code == 2, err
    assert len(lines) == 1 and "Slice s2.png in slices" in lines[0], err


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from _model_helpers import calibrated_unet

    from napari_segnets import checkpoints
    from napari_segnets.io.normalize import normalization_spec

    path = tmp_path_factory.mktemp("ckpt") / "m.safetensors"
    image = np.random.default_rng(0).integers(0, 255, (2, 32, 32), dtype=np.uint8)
    checkpoints.save(path, calibrated_unet(image), {"normalization": normalization_spec()})
    return path


SUBCOMMANDS = {
    "train": ["train", "--images", "{bad}", "--masks", "{bad}", "--arch", "unet", "--out", "{t}/m.st"],
    "finetune": ["finetune", "--checkpoint", "{ckpt}", "--images", "{bad}", "--masks", "{bad}",
                 "--out", "{t}/m.st"],
    "predict": ["predict", "--checkpoint", "{ckpt}", "--input", "{bad}", "--out", "{t}/o.zarr"],
    "evaluate": ["evaluate", "--prediction", "{bad}", "--truth", "{bad}"],
    "wavelets": ["wavelets", "--input", "{bad}"],
    "curate add": ["curate", "add", "--store", "{t}/store", "--image", "{bad}", "--mask", "{bad}",
                   "--slice", "0"],
}  # fmt: skip


@pytest.mark.timeout(60)
@pytest.mark.parametrize("command", list(SUBCOMMANDS))
def test_every_subcommand_refuses_a_bad_file_in_one_line(
    command, checkpoint, tmp_path, monkeypatch, capsys
):
    bad = h5_compound(tmp_path, monkeypatch)
    argv = [a.format(bad=bad, ckpt=checkpoint, t=tmp_path) for a in SUBCOMMANDS[command]]
    code = main(argv + ["--no-progress"])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1, err
    assert "table.h5 (raw) holds" in lines[0] and "Traceback" not in err
