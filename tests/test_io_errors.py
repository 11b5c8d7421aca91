"""Bad input to read(): one clear InputError sentence each, never a raw traceback."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_segnets.errors import InputError
from napari_segnets.io import read


@pytest.fixture
def tiff_bytes(tmp_path, rng):
    def make(compression=None):
        path = tmp_path / f"src_{compression}.tif"
        tifffile.imwrite(
            path,
            rng.integers(0, 255, (6, 64, 64), dtype=np.uint8),
            compression=compression,
            photometric="minisblack",
        )
        return path.read_bytes()

    return make


def _one_sentence(err: InputError) -> None:
    text = str(err)
    assert text and "\n" not in text and "Traceback" not in text


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="does not exist") as info:
        read(tmp_path / "nope.tif")
    _one_sentence(info.value)


def test_unknown_format(tmp_path):
    (tmp_path / "stack.xyz").write_text("hello")
    with pytest.raises(InputError, match=r"unknown format '\.xyz'.*reads TIFF, MRC/REC"):
        read(tmp_path / "stack.xyz")


def test_not_a_tiff(tmp_path):
    (tmp_path / "bad.tif").write_bytes(b"hello world" * 20)
    with pytest.raises(InputError, match="not a readable TIFF") as info:
        read(tmp_path / "bad.tif")
    _one_sentence(info.value)


@pytest.mark.parametrize("compression", [None, "zlib"])
@pytest.mark.parametrize("keep", [0.4, 0.9])
@pytest.mark.parametrize("lazy", [False, True])
def test_truncated_tiff(tmp_path, tiff_bytes, compression, keep, lazy):
    data = tiff_bytes(compression)
    (tmp_path / "cut.tif").write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(InputError, match="corrupt|truncated") as info:
        arr, _ = read(tmp_path / "cut.tif", lazy=lazy)
        np.asarray(arr)  # a lazy read must fail at the latest when pixels are fetched
    _one_sentence(info.value)


def test_more_than_three_dimensions(tmp_path):
    tifffile.imwrite(
        tmp_path / "4d.tif",
        np.zeros((2, 3, 16, 16), np.uint8),
        imagej=True,
        metadata={"axes": "TZYX"},
    )
    with pytest.raises(InputError, match=r"4 dimensions \(2, 3, 16, 16\).*only 2D \(Y, X\) or 3D"):
        read(tmp_path / "4d.tif")


def test_singleton_axes_do_not_count_as_dimensions(tmp_path):
    tifffile.imwrite(
        tmp_path / "4d1.tif",
        np.zeros((1, 3, 16, 16), np.uint8),
        imagej=True,
        metadata={"axes": "TZYX"},
    )
    assert read(tmp_path / "4d1.tif")[0].shape == (3, 16, 16)


def test_several_channels_refused(tmp_path):
    tifffile.imwrite(
        tmp_path / "c.tif",
        np.zeros((1, 2, 16, 16), np.uint8),
        imagej=True,
        metadata={"axes": "ZCYX"},
    )
    with pytest.raises(InputError, match="2 channels"):
        read(tmp_path / "c.tif")


def test_empty_array(tmp_path):
    import h5py

    with h5py.File(tmp_path / "e.h5", "w") as f:
        f.create_dataset("raw", shape=(0, 32, 32), dtype="u1")
    with pytest.raises(InputError, match="empty array"):
        read(tmp_path / "e.h5", key="raw")


def test_hdf5_several_candidates_without_key(tmp_path):
    import h5py

    with h5py.File(tmp_path / "two.h5", "w") as f:
        f.create_dataset("raw", shape=(4, 16, 16), dtype="u1")
        f.create_dataset("pred/membranes", shape=(4, 16, 16), dtype="f4")
    with pytest.raises(
        InputError, match=r"several 3D datasets \(pred/membranes .*raw .*\); choose one \(key="
    ) as info:
        read(tmp_path / "two.h5")
    _one_sentence(info.value)


def test_hdf5_missing_key_lists_datasets(tmp_path):
    import h5py

    with h5py.File(tmp_path / "k.h5", "w") as f:
        f.create_dataset("raw", shape=(4, 16, 16), dtype="u1")
    with pytest.raises(InputError, match="no dataset 'data'; its datasets are: raw"):
        read(tmp_path / "k.h5", key="data")


def test_hdf5_corrupt(tmp_path):
    (tmp_path / "c.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(InputError, match="not a readable HDF5"):
        read(tmp_path / "c.h5")


def test_mrc_truncated(tmp_path):
    import mrcfile

    with mrcfile.new(tmp_path / "v.mrc") as mrc:
        mrc.set_data(np.zeros((4, 32, 32), np.float32))
    data = (tmp_path / "v.mrc").read_bytes()
    (tmp_path / "cut.mrc").write_bytes(data[:-2000])
    with pytest.raises(InputError, match="not a readable MRC"):
        read(tmp_path / "cut.mrc")


def test_folder_without_images(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(InputError, match="contains no PNG or TIFF slices"):
        read(tmp_path / "empty")


def test_folder_slices_of_different_shapes(tmp_path):
    from PIL import Image

    (tmp_path / "mixed").mkdir()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "mixed" / "s1.png")
    Image.fromarray(np.zeros((16, 20), np.uint8)).save(tmp_path / "mixed" / "s2.png")
    with pytest.raises(
        InputError, match=r"different shapes.*s1.png is \(16, 16\) but s2.png is \(16, 20\)"
    ):
        read(tmp_path / "mixed")


def test_folder_with_a_corrupt_slice(tmp_path):
    from PIL import Image

    (tmp_path / "bad").mkdir()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "bad" / "s1.png")
    (tmp_path / "bad" / "s2.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="s2.png .*cannot be read"):
        read(tmp_path / "bad")


def test_key_for_a_tiff_is_refused(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((8, 8), np.uint8))
    with pytest.raises(InputError, match="key='raw' only applies to HDF5"):
        read(tmp_path / "a.tif", key="raw")


def test_empty_zarr_folder(tmp_path):
    (tmp_path / "x.zarr").mkdir()
    with pytest.raises(InputError, match="not a readable Zarr store"):
        read(tmp_path / "x.zarr")


def test_zarr_with_a_corrupt_chunk(tmp_path):
    import zarr

    z = zarr.create_array(
        str(tmp_path / "c.zarr"), shape=(4, 16, 16), chunks=(1, 16, 16), dtype="u1", zarr_format=2
    )
    z[:] = 7
    (tmp_path / "c.zarr" / "1.0.0").write_bytes(b"garbage")
    with pytest.raises(InputError, match="could not be read .*the store may be corrupt"):
        read(tmp_path / "c.zarr")


def test_mrc_garbage_refused_and_old_header_read_with_a_note(tmp_path, rng):
    import mrcfile

    (tmp_path / "junk.mrc").write_bytes(rng.integers(0, 255, 3000, dtype=np.uint8).tobytes())
    with pytest.raises(InputError, match="not a readable MRC"):
        read(tmp_path / "junk.mrc")
    data = rng.standard_normal((2, 16, 16)).astype(np.float32)
    with mrcfile.new(tmp_path / "old.mrc") as mrc:
        mrc.set_data(data)
    raw = bytearray((tmp_path / "old.mrc").read_bytes())
    raw[208:212] = b"\0\0\0\0"  # pre-2000 writers leave the 'MAP ' stamp out
    (tmp_path / "old.mrc").write_bytes(bytes(raw))
    arr, meta = read(tmp_path / "old.mrc")
    np.testing.assert_array_equal(arr, data)
    assert "MAP " in meta["notes"][0]
