"""TIFF stacks (single page, multi-page, BigTIFF, ImageJ, OME) via tifffile."""

from __future__ import annotations

import contextlib
import logging
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from ..errors import InputError
from ._common import as_dask, token, unit_to_nm, want_lazy

_DEFAULT_DPI = {72.0, 96.0, 150.0, 300.0, 600.0}  # screen/print defaults, never an EM pixel size
_PAGE_CHUNK_LIMIT = 256 * 1024**2  # bytes; larger pages are read tile by tile
_MAX_PIXEL_NM = 1e5  # a "pixel" larger than 0.1 mm is a placeholder, not a calibration
# tifffile logs (rather than raises) these; they mean pages are missing or the shape is wrong.
_FATAL = re.compile(r"page offset|offset to first page|failed to reshape|truncat|corrupt", re.I)


def _ome_voxel(xml: str | None, axes: str) -> list[float | None] | None:
    """Physical sizes (nm) per axis from OME-XML, or None."""
    if not xml:
        return None
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    pixels = next((el for el in root.iter() if el.tag.endswith("Pixels")), None)
    if pixels is None:
        return None
    out: list[float | None] = []
    for ax in axes.lower():
        size = pixels.get(f"PhysicalSize{ax.upper()}") if ax in "zyx" else None
        factor = unit_to_nm(pixels.get(f"PhysicalSize{ax.upper()}Unit", "µm"))
        out.append(float(size) * factor if size is not None and factor else None)
    return out


def _resolution_nm(page, unit_nm: float | None, y_unit_nm: float | None = None):
    """(y, x) pixel size in nm from the X/YResolution tags (None per axis when unknown).

    ImageJ stores pixels per its own ``unit`` (and ``yunit`` when Y differs); other writers
    use the ResolutionUnit tag. Screen/print defaults and sizes above 0.1 mm mean "uncalibrated".
    """
    try:
        xres, yres = page.get_resolution()
        resunit = int(page.tags["ResolutionUnit"].value) if "ResolutionUnit" in page.tags else 2
    except Exception:  # missing or malformed tags: no calibration
        return None
    if xres <= 0 or yres <= 0:
        return None
    if unit_nm is not None:  # ImageJ: the unit in its description wins over the tag
        if xres == 1 and yres == 1:
            return None
        x_nm, y_nm = unit_nm, y_unit_nm or unit_nm
    elif resunit == 2:  # inch
        if xres in _DEFAULT_DPI and yres in _DEFAULT_DPI:
            return None
        x_nm = y_nm = 2.54e7
    elif resunit == 3:  # centimetre
        x_nm = y_nm = 1e7
    else:
        return None
    y, x = y_nm / yres, x_nm / xres
    out = tuple(v if v <= _MAX_PIXEL_NM else None for v in (y, x))
    return None if out == (None, None) else out


def _voxel_size(tif, series) -> list[float | None] | None:
    axes = series.axes.lower()
    if tif.is_ome:
        sizes = _ome_voxel(tif.ome_metadata, axes)
        if sizes and any(s is not None for s in sizes):
            return sizes
    ij = tif.imagej_metadata or {}
    unit_nm = unit_to_nm(ij.get("unit")) if ij else None
    y_unit_nm = unit_to_nm(ij.get("yunit")) if ij.get("yunit") else unit_nm
    z_unit_nm = unit_to_nm(ij.get("zunit")) if ij.get("zunit") else unit_nm
    page = series.pages[0] if series.pages else tif.pages[0]
    yx = _resolution_nm(page, unit_nm, y_unit_nm) or (None, None)
    z = float(ij["spacing"]) * z_unit_nm if ij.get("spacing") and z_unit_nm else None
    out = [{"y": yx[0], "x": yx[1], "z": z}.get(ax) for ax in axes]
    return out if any(v is not None for v in out) else None


class _LogCollector(logging.Handler):
    """Collects tifffile's error log lines: it logs (not raises) broken page chains and shapes."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _tifffile_errors():
    logger = logging.getLogger("tifffile")
    handler = _LogCollector()
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


def _check_logged(path: Path, logged: list[str]) -> None:
    """Refuse a file when tifffile logged that pages are missing or the shape is wrong."""
    fatal = [m for m in logged if _FATAL.search(m)]
    if fatal:
        reason = re.sub(r"^<[^>]*>\s*", "", fatal[0])  # drop tifffile's "<TiffPages @8>" prefix
        raise InputError(
            f"{path.name} is corrupt or truncated ({reason}); re-export or re-copy the file."
        )


def _ifd_chain_end(path: Path, tif) -> str | None:
    """Walk the IFD chain ourselves: why it breaks (a reason), or None when it ends cleanly.

    tifffile only logs a broken chain, and a host application may silence its logger, so a
    truncated stack would otherwise open as its first pages without a word. Reads a few bytes
    per page and does not make tifffile load pages it would skip (ImageJ hyperstacks).
    """
    import struct

    fmt = tif.tiff
    if fmt.is_ndpi:  # NDPI stores 64-bit offsets in a classic TIFF: leave it to tifffile
        return None
    size = path.stat().st_size
    offset_fmt = fmt.byteorder + fmt.offsetformat[-1]
    count_fmt = fmt.byteorder + fmt.tagnoformat[-1]
    seen: set[int] = set()
    with open(path, "rb") as fh:
        fh.seek(8 if fmt.is_bigtiff else 4)
        offset = struct.unpack(offset_fmt, fh.read(fmt.offsetsize))[0]
        while offset != 0 and offset not in seen:  # a loop is tifffile's to report
            if offset < 8 or offset + fmt.tagnosize > size:
                return "an image directory lies beyond the end of the file"
            seen.add(offset)
            fh.seek(offset)
            count = struct.unpack(count_fmt, fh.read(fmt.tagnosize))[0]
            fh.seek(offset + fmt.tagnosize + count * fmt.tagsize)
            raw = fh.read(fmt.offsetsize)
            if len(raw) < fmt.offsetsize:
                return "an image directory is cut off"
            offset = struct.unpack(offset_fmt, raw)[0]
    return None


def _check_structure(path: Path, tif, series, logged: list[str]) -> None:
    """Refuse files whose page chain broke or whose image data run past the end of the file."""
    _check_logged(path, logged)
    reason = _ifd_chain_end(path, tif)
    if reason:
        raise InputError(f"{path.name} is truncated: {reason}; re-export or re-copy the file.")
    size = path.stat().st_size
    if series.dataoffset is not None and series.dataoffset + series.nbytes > size:
        raise InputError(f"{path.name} is truncated: its image data run past the end of the file.")
    for page in series.pages:
        if page is None:
            continue
        offsets, counts = page.dataoffsets, page.databytecounts
        if offsets and max(o + c for o, c in zip(offsets, counts)) > size:
            raise InputError(
                f"{path.name} is truncated: its image data run past the end of the file."
            )


def decode_error(name: str, exc: Exception, what: str = "TIFF") -> InputError:
    """Our sentence for a decoding failure: a missing codec is named, never called corruption."""
    from ._sources import failure_sentence

    return InputError(failure_sentence(name, exc, what))


def _samples(tif, series, axes: str, notes: list[str]) -> tuple[str, bool, bool]:
    """(axes, rgb, alpha): what the sample axis (``s``) of the first series holds."""
    if "s" not in axes:
        return axes, False, False
    page = series.keyframe
    n = series.shape[axes.index("s")]
    extra = tuple(int(e) for e in (page.extrasamples or ()))
    if (
        axes.startswith("s")
        and page.software == "tifffile.py"
        and tif.is_shaped
        and not any("axes" in m for m in tif.shaped_metadata or ())
    ):
        # tifffile used to write any (3, Y, X) array as planar RGB: a z-stack saved without axes
        notes.append(
            f"The file is stored as planar RGB (tifffile's old default for {n} planes) without "
            "axes; its planes are read as z slices."
        )
        return "q" + axes[1:], False, False
    if int(page.photometric) in (2, 6) and n in (3, 4):  # RGB, YCbCr (decoded to RGB)
        return axes, True, False
    if n == 2 and extra[:1] in ((1,), (2,)):  # grey (or palette index) + alpha
        return axes, False, True
    return axes, False, False


def read_tiff(path: Path, *, lazy: bool | None):
    """Read a TIFF; returns (array, meta, axes, rgb, alpha) for :func:`finalize`."""
    import tifffile

    with _tifffile_errors() as logged:
        try:
            tif = tifffile.TiffFile(path)
        except Exception as exc:  # tifffile raises TiffFileError, ValueError, struct errors...
            raise InputError(
                f"{path.name} is not a readable TIFF ({exc}); the file may be corrupt or truncated."
            ) from exc
        try:
            if not tif.series:
                raise InputError(
                    f"{path.name} contains no images; the TIFF may be corrupt or truncated."
                )
            series = tif.series[0]
            _check_structure(path, tif, series, logged)
            shape, dtype = tuple(series.shape), series.dtype
            notes: list[str] = []
            axes, rgb, alpha = _samples(tif, series, series.axes.lower(), notes)
            meta = {
                "format": "bigtiff" if tif.is_bigtiff else "tiff",
                "voxel_size": _voxel_size(tif, series),
                "kind": _kind(tif),
                "notes": notes,
            }
            if len(tif.series) > 1:
                notes.append(f"The file holds {len(tif.series)} image series; the first was read.")
            if want_lazy(lazy, shape, dtype):
                array = _lazy(path, tif, series)
            else:
                array = _eager(path, tif, series)
                _check_logged(path, logged)  # errors logged while decoding
            notes.extend(f"tifffile: {m}" for m in dict.fromkeys(logged))
        except InputError:
            tif.close()
            raise
        except Exception as exc:
            tif.close()
            raise decode_error(path.name, exc) from exc
    return array, meta, axes, rgb, alpha


def _plane_chunks(series) -> tuple[int, ...]:
    """One (Y, X) plane with all its samples per chunk, wherever the sample axis is stored."""
    return tuple(int(n) if a in "YXS" else 1 for a, n in zip(series.axes, series.shape))


def _kind(tif) -> str | None:
    """Return "labels" when our label writer made the file (OME Image Name), else None."""
    if tif.is_ome and tif.ome_metadata and 'Name="napari-segnets labels"' in tif.ome_metadata:
        return "labels"
    return None


def _eager(path: Path, tif, series) -> np.ndarray:
    try:
        with tif:
            data = series.asarray()
    except Exception as exc:
        raise decode_error(path.name, exc) from exc
    expected = int(np.prod(series.shape))
    if data.size != expected:
        raise InputError(
            f"{path.name} is truncated: expected {expected} pixels, decoded {data.size}."
        )
    return data


def _lazy(path: Path, tif, series):
    """Memory-map uncompressed contiguous data; otherwise read pages/tiles through tifffile's zarr store."""
    import tifffile

    from ._sources import memmap_recipe, open_memmap, open_tiff_zarr, reopenable

    name = token(path, "tiff")
    if series.dataoffset is not None:
        tif.close()
        try:
            mm = tifffile.memmap(path, series=0, mode="r")
        except ValueError as exc:  # mmap length beyond the end of the file
            raise InputError(
                f"{path.name} is truncated: the image data run past the end of the file."
            ) from exc
        mm = mm.reshape(series.shape)
        source = reopenable(open_memmap, memmap_recipe(mm), mm, label=path.name, what="TIFF")
        return as_dask(source, chunks=_plane_chunks(series), name=name)
    import zarr

    # One chunk per page (a slice) unless a page is huge: then the file's own tiles/strips.
    page_bytes = int(np.prod(series.shape[-2:])) * series.dtype.itemsize
    mode = tifffile.CHUNKMODE.PAGE if page_bytes <= _PAGE_CHUNK_LIMIT else None
    # The store keeps the TiffFile open for as long as the dask array lives.
    z = zarr.open(series.aszarr(chunkmode=mode), mode="r")
    if isinstance(z, zarr.Group):  # pyramidal TIFF: level 0
        z = z["0"]
    source = reopenable(open_tiff_zarr, (str(path), mode), z, label=path.name, what="TIFF")
    return as_dask(source, chunks=z.chunks, name=name)
