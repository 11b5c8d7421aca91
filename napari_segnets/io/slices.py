"""MRC/REC volumes and folders of PNG/TIFF slices (plus single PNG files)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import InputError
from ._common import as_dask, slice_chunks, token, want_lazy

SLICE_SUFFIXES = (".png", ".tif", ".tiff")


# ------------------------------------------------------------------------------------------ MRC
def read_mrc(path: Path, *, lazy: bool | None):
    """Read an MRC/REC/ST/MAP volume; voxel size from the header (Å -> nm)."""
    import mrcfile

    notes = []
    try:
        mrc = mrcfile.mmap(path, mode="r")
    except Exception as exc:  # mrcfile raises ValueError for bad headers and short data blocks
        mrc = _permissive(path, exc, notes)
    data = mrc.data
    if data is None:
        mrc.close()
        raise InputError(f"{path.name} has an MRC header but no data; the file is incomplete.")
    axes = _mrc_axes(mrc.header, data.ndim, notes)
    vs = mrc.voxel_size
    per_letter = {"x": float(vs.x) / 10.0, "y": float(vs.y) / 10.0, "z": float(vs.z) / 10.0}
    voxel = [per_letter[a] for a in axes]
    meta = {"format": "mrc", "voxel_size": voxel, "notes": notes}
    if want_lazy(lazy, data.shape, data.dtype):
        # The memmap keeps the file open for as long as the dask array lives.
        from ._sources import memmap_recipe, open_memmap, reopenable

        source = reopenable(
            open_memmap, memmap_recipe(data), data, label=path.name, what="MRC file"
        )
        array = as_dask(source, chunks=slice_chunks(data.shape), name=token(path, "mrc"))
    else:
        array = np.array(data)
        mrc.close()
    return array, meta, axes, False


def _mrc_axes(header, ndim: int, notes: list[str]) -> str:
    """Letters of the stored axes (sections, rows, columns) from MAPS/MAPR/MAPC."""
    order = (int(header.maps), int(header.mapr), int(header.mapc))
    if sorted(order) != [1, 2, 3]:
        notes.append(
            f"The MRC header's axis fields MAPC/MAPR/MAPS are {order[::-1]}, not a permutation "
            "of 1, 2, 3; the standard order (columns = X, rows = Y, sections = Z) was assumed."
        )
        order = (3, 2, 1)
    letters = "".join("xyz"[i - 1] for i in order)
    return letters[-ndim:]


def _permissive(path: Path, exc: Exception, notes: list[str]):
    """Old MRC writers omit the 'MAP ' stamp: read those leniently, refuse anything else."""
    import warnings

    import mrcfile

    if "Map ID string" not in str(exc):
        raise InputError(
            f"{path.name} is not a readable MRC file ({exc}); it may be corrupt or truncated."
        ) from exc
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mrc = mrcfile.mmap(path, mode="r", permissive=True)
    except Exception:  # garbage header: not an MRC file
        mrc = None
    if mrc is None or mrc.data is None:  # dimensions that do not match the file: not an MRC
        if mrc is not None:
            mrc.close()
        raise InputError(
            f"{path.name} is not a readable MRC file ({exc}); it may be corrupt or truncated."
        ) from exc
    notes.append(
        "The MRC header lacks the 'MAP ' stamp (an old writer); the data were read anyway."
    )
    return mrc


# --------------------------------------------------------------------------------------- slices
def natural_key(name: str):
    """Sort key that puts slice_2 before slice_10."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _header(path: Path) -> tuple[tuple[int, ...], str, bool]:
    """(shape, dtype, rgb) of one slice, read from its header only."""
    if path.suffix.lower() == ".png":
        from PIL import Image

        with Image.open(path) as im:
            mode, (w, h) = im.mode, im.size
        if mode in ("RGB", "RGBA", "CMYK", "YCbCr"):
            return (h, w, 4 if mode == "RGBA" else 3), "uint8", True
        dtype = {
            "1": "uint8",
            "L": "uint8",
            "LA": "uint8",
            "I;16": "uint16",
            "I;16B": "uint16",
            "I": "int32",
            "F": "float32",
        }.get(mode, "uint8")
        return (h, w), dtype, False
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        rgb = series.axes.endswith("S") and series.shape[-1] in (3, 4)
        return tuple(series.shape), str(series.dtype), rgb


def read_slice(path: Path) -> np.ndarray:
    """The pixels of one PNG/TIFF slice (RGB kept as a trailing axis)."""
    if path.suffix.lower() == ".png":
        from PIL import Image

        with Image.open(path) as im:
            if im.mode in ("CMYK", "YCbCr"):
                im = im.convert("RGB")
            elif im.mode in ("P", "PA"):
                # a grey palette maps to its grey values; a colour palette is a label image,
                # whose indices are the labels (as tifffile reads palette TIFFs)
                im = im.convert("L") if _grey_palette(im) else im
            elif im.mode == "LA":
                im = im.convert("L")
            arr = np.asarray(im)
        if arr.ndim == 3 and im.mode == "PA":
            arr = arr[..., 0]
        return arr.astype(np.uint8) if arr.dtype == bool else arr
    import tifffile

    return tifffile.imread(path)


def _grey_palette(im) -> bool:
    palette = np.asarray(im.getpalette() or [], dtype=np.int32)
    rgb = palette[: len(palette) // 3 * 3].reshape(-1, 3)
    return bool(rgb.size) and bool((rgb == rgb[:, :1]).all())


def png_notes(path: Path) -> list[str]:
    """What reading a PNG of this mode drops or reinterprets (alpha, palette), for the notes."""
    from PIL import Image

    with Image.open(path) as im:
        mode = im.mode
        colour_palette = mode in ("P", "PA") and not _grey_palette(im)
    notes = []
    if mode in ("LA", "PA"):
        notes.append("Grey + alpha image: the alpha (transparency) samples were dropped.")
    if colour_palette:
        notes.append("Colour-palette image: its palette indices were read (as for a label image).")
    return notes
    import tifffile

    return tifffile.imread(path)


class SliceStack:
    """An array-like over a list of slice files that reads only the slices asked for."""

    def __init__(self, files: list[Path], shape: tuple[int, ...], dtype):
        self.files, self.shape, self.dtype = files, (len(files), *shape), np.dtype(dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, key):
        try:
            return self._get(key)
        except InputError:
            raise
        except Exception as exc:  # a slice that cannot be decoded (corrupt, removed, codec)
            from ._sources import failure_sentence

            raise InputError(failure_sentence(self._label(key), exc, "slice")) from exc

    def _label(self, key) -> str:
        if len(self.files) == 1:  # a single PNG read on demand
            return self.files[0].name
        first = key[0] if isinstance(key, tuple) else key
        folder = self.files[0].resolve().parent.name
        if isinstance(first, (int, np.integer)):
            return f"Slice {self.files[int(first)].name} in {folder}"
        return f"A slice in {folder}"

    def _get(self, key):
        key = key if isinstance(key, tuple) else (key,)
        zs = range(self.shape[0])[key[0]]
        rest = key[1:]
        if isinstance(zs, int):
            return read_slice(self.files[zs])[rest]
        out = np.empty((len(zs), *self.shape[1:]), self.dtype)[(slice(None), *rest)]
        for i, z in enumerate(zs):
            try:
                out[i] = read_slice(self.files[z])[rest]
            except Exception as exc:
                from ._sources import failure_sentence

                label = (
                    self.files[z].name
                    if len(self.files) == 1
                    else f"Slice {self.files[z].name} in {self.files[z].resolve().parent.name}"
                )
                raise InputError(failure_sentence(label, exc, "slice")) from exc
        return out


def list_slices(folder: Path) -> list[Path]:
    """Image files (PNG/TIFF) in ``folder``, sorted naturally."""
    files = [
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in SLICE_SUFFIXES and not p.name.startswith(".")
    ]
    return sorted(files, key=lambda p: natural_key(p.name))


def read_folder(folder: Path, *, lazy: bool | None):
    """Read a folder of PNG/TIFF slices as a (Z, Y, X) stack."""
    files = list_slices(folder)
    if not files:
        raise InputError(
            f"The folder {folder.name} contains no PNG or TIFF slices; choose a folder of .png/.tif images."
        )
    headers = []
    for f in files:
        try:
            headers.append(_header(f))
        except Exception as exc:
            raise InputError(
                f"Slice {f.name} in {folder.name} cannot be read ({exc}); it may be corrupt."
            ) from exc
    shape, dtype, rgb = headers[0]
    if len(shape) > (3 if rgb else 2):
        raise InputError(
            f"Slice {files[0].name} in {folder.name} is itself a stack {shape}; a folder must hold 2D slices."
        )
    for f, (s, d, _) in zip(files[1:], headers[1:]):
        if s != shape:
            raise InputError(
                f"Slices of different shapes in {folder.name}: {files[0].name} is {shape} but {f.name} is {s}; "
                "all slices must have the same size."
            )
        if d != dtype:
            raise InputError(
                f"Slices of different types in {folder.name}: {files[0].name} is {dtype} but {f.name} is {d}."
            )
    stack = SliceStack(files, shape, dtype)
    meta = {"format": "folder", "files": [f.name for f in files], "voxel_size": None}
    if files[0].suffix.lower() == ".png":
        meta["notes"] = png_notes(files[0])
    if want_lazy(lazy, stack.shape, dtype):
        array = as_dask(
            stack,
            chunks=slice_chunks(stack.shape, rgb=rgb),
            name=token(folder, "folder", len(files), files[-1].name),
        )
    else:
        try:
            array = stack[:]
        except InputError:
            raise
        except Exception as exc:
            raise InputError(
                f"A slice in {folder.name} could not be decoded ({exc}); it may be corrupt."
            ) from exc
    return array, meta, "zyxs" if rgb else "zyx", rgb


def read_png(path: Path, *, lazy: bool | None):
    """Read one PNG image (2D); PNG cannot be read in parts, so lazy means "decoded on demand"."""
    try:
        shape, dtype, rgb = _header(path)
        if want_lazy(lazy, shape, dtype):
            # A one-file stack: the decode happens when dask asks for the pixels.
            array = as_dask(
                SliceStack([path], shape, dtype), chunks=(1, *shape), name=token(path, "png")
            )[0]
        else:
            array = read_slice(path)
    except Exception as exc:
        raise InputError(
            f"{path.name} is not a readable PNG ({exc}); it may be corrupt or truncated."
        ) from exc
    meta = {"format": "png", "voxel_size": None, "notes": png_notes(path)}
    return array, meta, "yxs" if rgb else "yx", rgb
