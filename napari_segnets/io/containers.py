"""Chunked containers: Zarr v2/v3 (plain, OME-Zarr multiscales, bioformats2raw) and HDF5."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import InputError
from ._common import (
    AmbiguousInputError,
    as_dask,
    short_list,
    slice_chunks,
    token,
    unit_to_nm,
    want_lazy,
)

_LETTERS = {
    "z": "z",
    "y": "y",
    "x": "x",
    "c": "c",
    "t": "t",
    "channel": "c",
    "channels": "c",
    "time": "t",
    "s": "s",
    "sample": "s",
    "rgb": "s",
    "rgba": "s",
}


def axis_letters(names) -> str | None:
    """Letters (z, y, x, c, t, s, q = unnamed) for declared axis names, or None if undeclared."""
    if names is None:
        return None
    out = []
    for n in names:
        text = str(n or "").strip().lower()
        if not text:
            return None
        out.append(_LETTERS.get(text, "q"))
    return "".join(out)


def attrs_voxel_size(attrs, ndim: int, axes: str | None = None) -> list[float | None] | None:
    """Voxel size (nm, one entry per stored axis, None where unknown) from EM attributes, or None.

    ``voxel_size_nm`` (ours), ``resolution`` (CREMI, nm), ``element_size_um`` (ilastik/Fiji,
    PlantSeg, µm), ``voxel_size`` with an optional ``unit`` (default nm). Fewer values than axes
    belong to the spatial axes (``axes``) or else to the trailing ones.
    """
    for key, factor in (("voxel_size_nm", 1.0), ("resolution", 1.0), ("element_size_um", 1e3)):
        if key in attrs:
            return _per_axis(attrs[key], factor, ndim, axes)
    if "voxel_size" in attrs:
        factor = unit_to_nm(attrs.get("unit", "nm"))
        return _per_axis(attrs["voxel_size"], factor, ndim, axes) if factor else None
    return None


def _per_axis(values, factor: float, ndim: int, axes: str | None) -> list[float | None] | None:
    try:
        vals = [float(v) * factor for v in np.atleast_1d(np.asarray(values, dtype=float))]
    except (TypeError, ValueError):
        return None
    if len(vals) == ndim:
        return vals
    if axes and len(axes) == ndim:
        spatial = [i for i, a in enumerate(axes) if a in "zyx"]
        if len(vals) == len(spatial):
            out: list[float | None] = [None] * ndim
            for i, v in zip(spatial, vals):
                out[i] = v
            return out
    if len(vals) > ndim:
        return vals[-ndim:]  # trailing spatial axes
    return [None] * (ndim - len(vals)) + vals


def _pick(name: str, candidates: dict[str, tuple], what: str) -> str:
    """The one image-like node: the only 3D one, else the only 2D one; several -> ambiguous."""
    for ndim in (3, 2):
        found = sorted(
            k for k, shape in candidates.items() if len([s for s in shape if s > 1]) == ndim
        )
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            listing = short_list(f"{k} {candidates[k]}" for k in found)
            raise AmbiguousInputError(
                f"{name} holds several {ndim}D {what}s ({listing}); choose one "
                "(key= in Python, --key on the command line; napari opens them all).",
                choices=found,
            )
    if not candidates:
        raise InputError(f"{name} holds no {what}s; choose a file that contains an image stack.")
    listing = short_list(f"{k} {v}" for k, v in sorted(candidates.items()))
    raise InputError(
        f"{name} has no 2D or 3D {what} ({listing}); choose a file with an image stack."
    )


# ----------------------------------------------------------------------------------------- Zarr
def _multiscales(attrs) -> list | None:
    ms = attrs.get("multiscales")
    if ms is None and isinstance(attrs.get("ome"), dict):  # OME-Zarr 0.5 (Zarr v3)
        ms = attrs["ome"].get("multiscales")
    return ms if isinstance(ms, list) and ms and isinstance(ms[0], dict) else None


def _level0_path(ms: dict, name: str) -> str:
    datasets = ms.get("datasets") or []
    if not datasets:
        raise InputError(
            f"{name} has OME-Zarr multiscales metadata without datasets; the store is incomplete, "
            "so re-export or re-copy it."
        )
    first = datasets[0]
    if not isinstance(first, dict) or not isinstance(first.get("path"), str):
        raise InputError(
            f"{name}: the first OME-Zarr dataset entry has no path; the metadata are malformed, "
            "so re-export the store."
        )
    return first["path"]


def _ome_axes(axes_meta, ndim: int) -> tuple[str | None, list]:
    if axes_meta and isinstance(axes_meta[0], dict):
        letters = []
        for a in axes_meta:
            kind = str(a.get("type") or "").lower()
            letter = axis_letters([a.get("name")]) or "q"
            if kind == "channel":
                letter = "c"
            elif kind == "time":
                letter = "t"
            letters.append(letter)
        return "".join(letters), [a.get("unit") for a in axes_meta]
    if axes_meta:
        return axis_letters(axes_meta), [None] * len(axes_meta)
    return "tczyx"[-ndim:], [None] * ndim  # OME-Zarr 0.1/0.2: always t, c, z, y, x


def _ome_level0(group, ms: dict, name: str):
    """Level 0 of an OME-Zarr multiscale image with its axes and voxel size (nm)."""
    level0 = _level0_path(ms, name)
    try:
        arr = group[level0]
    except KeyError:
        arr = None
    if arr is None or not hasattr(arr, "dtype"):
        raise InputError(
            f"{name}: its OME-Zarr metadata list the level {level0!r}, but the store has no such "
            "array; the store is incomplete, so re-copy or re-export it."
        )
    axes, units = _ome_axes(ms.get("axes"), arr.ndim)
    if axes is None or len(axes) != arr.ndim:
        axes, units = None, [None] * arr.ndim
    scale = np.ones(arr.ndim)
    for transforms in (
        ms["datasets"][0].get("coordinateTransformations"),
        ms.get("coordinateTransformations"),
    ):
        for t in transforms or []:
            if (
                isinstance(t, dict)
                and t.get("type") == "scale"
                and len(t.get("scale", [])) == arr.ndim
            ):
                scale = scale * np.asarray(t["scale"], dtype=float)
    voxel = []
    for ax, s, unit in zip(axes or "?" * arr.ndim, scale, units):
        factor = unit_to_nm(unit)
        voxel.append(float(s) * factor if factor and ax in "zyx" else None)
    return arr, axes, voxel, [float(s) for s in scale], level0


def _zarr_candidates(group, name: str) -> dict[str, tuple]:
    """Image-like nodes of a group: OME-Zarr images (as their group) and free arrays."""
    import zarr

    images: dict[str, tuple] = {}
    arrays: dict[str, tuple] = {}
    for path, node in group.members(max_depth=None):
        if isinstance(node, zarr.Group):
            ms = _multiscales(node.attrs)
            if ms is not None:
                try:
                    images[path] = tuple(node[_level0_path(ms[0], name)].shape)
                except (KeyError, InputError):
                    images[path] = ()  # broken image: reported when it is chosen
        elif isinstance(node, zarr.Array):
            arrays[path] = tuple(node.shape)
    free = {p: s for p, s in arrays.items() if not any(p.startswith(g + "/") for g in images)}
    return {**images, **free}


def read_zarr(path: Path, *, key: str | None, lazy: bool | None):
    """Read a Zarr array or group (OME-Zarr level 0); returns (array, meta, axes, rgb)."""
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:
        raise InputError(f"{path.name} is not a readable Zarr store ({exc}).") from exc
    meta: dict = {"format": "zarr", "key": key}
    if key is not None:
        try:
            node = node[key.strip("/")] if isinstance(node, zarr.Group) else None
        except KeyError:
            node = None
        if node is None:
            raise InputError(f"{path.name} has no array {key!r}; {_zarr_listing(path)}.")
    elif isinstance(node, zarr.Group) and _multiscales(node.attrs) is None:
        key = _pick(path.name, _zarr_candidates(node, path.name), "image")
        node = node[key]
    return _read_zarr_node(path, node, key, meta, lazy)


def _read_zarr_node(path: Path, node, key: str | None, meta: dict, lazy: bool | None):
    import zarr

    axes = None
    if isinstance(node, zarr.Group):
        if node.attrs.get("napari-segnets", {}).get("layer_type") == "labels":
            meta["kind"] = "labels"
        ms = _multiscales(node.attrs)
        if ms is None:  # a key that names a plain group
            raise InputError(
                f"{path.name}: {key!r} is a group, not an image; {_zarr_listing(path)}."
            )
        node, axes, voxel, scale, level0 = _ome_level0(node, ms[0], path.name)
        meta.update(
            format="ome-zarr",
            voxel_size=voxel,
            scale=scale,
            key=f"{key.strip('/')}/{level0}" if key else level0,
        )
    else:
        meta["key"] = key.strip("/") if key else None
        axes = axis_letters(node.attrs.get("_ARRAY_DIMENSIONS"))  # xarray's dimension names
        meta["voxel_size"] = attrs_voxel_size(node.attrs, node.ndim, axes)
        if node.attrs.get("napari-segnets", {}).get("layer_type") == "labels":
            meta["kind"] = "labels"
    meta["zarr_format"] = node.metadata.zarr_format
    if want_lazy(lazy, node.shape, node.dtype):
        from ._sources import open_zarr, reopenable

        source = reopenable(
            open_zarr, (str(path), meta["key"]), node, label=path.name, what="store"
        )
        array = as_dask(source, chunks=node.chunks, name=token(path, "zarr", meta["key"]))
    else:
        try:
            array = np.asarray(node[...])
        except Exception as exc:  # a missing or undecodable chunk file
            from ._sources import failure_sentence

            raise InputError(failure_sentence(path.name, exc, "store")) from exc
    return array, meta, axes, False


def _zarr_listing(path: Path) -> str:
    import zarr

    try:
        group = zarr.open_group(str(path), mode="r")
        names = list(_zarr_candidates(group, path.name))
    except Exception:  # the store itself is a single array
        return "it is a single array, so leave key unset"
    return "its images are: " + short_list(sorted(names))


# ----------------------------------------------------------------------------------------- HDF5
def _hdf5_axes(ds) -> str | None:
    """Axis letters from ilastik's ``axistags`` or h5py dimension labels, or None."""
    tags = ds.attrs.get("axistags")
    if tags is not None:
        try:
            text = tags.decode() if isinstance(tags, bytes) else str(tags)
            keys = [a["key"] for a in json.loads(text)["axes"]]
        except (ValueError, KeyError, TypeError):
            keys = None
        letters = axis_letters(keys)
        if letters and len(letters) == ds.ndim:
            return letters
    try:
        labels = [d.label for d in ds.dims]
    except Exception:  # dimension scales unsupported for this dataset
        return None
    letters = axis_letters(labels) if any(labels) else None
    return letters if letters and len(letters) == ds.ndim else None


def hdf5_datasets(fh) -> dict[str, tuple]:
    import h5py

    datasets: dict[str, tuple] = {}
    fh.visititems(
        lambda n, o: datasets.__setitem__(n, o.shape) if isinstance(o, h5py.Dataset) else None
    )
    return datasets


def read_hdf5(path: Path, *, key: str | None, lazy: bool | None):
    """Read one dataset of an HDF5 file; returns (array, meta, axes, rgb)."""
    import h5py

    try:
        fh = h5py.File(path, "r")
    except Exception as exc:
        raise InputError(
            f"{path.name} is not a readable HDF5 file ({exc}); it may be corrupt or truncated."
        ) from exc
    try:
        datasets = hdf5_datasets(fh)
        if key is None:
            key = _pick(path.name, datasets, "dataset")
        elif key.strip("/") not in datasets:
            listing = short_list(sorted(datasets))
            raise InputError(f"{path.name} has no dataset {key!r}; its datasets are: {listing}.")
        ds = fh[key]
        from .axes import check_dtype

        check_dtype(ds.dtype, f"{path.name} ({key.strip('/')})")
        axes = _hdf5_axes(ds)
        meta = {
            "format": "hdf5",
            "key": key.strip("/"),
            "voxel_size": attrs_voxel_size(ds.attrs, ds.ndim, axes),
        }
        if want_lazy(lazy, ds.shape, ds.dtype):
            # The dataset keeps the file open for as long as the dask array lives.
            native = ds.chunks
            if native and axes is None and tuple(native[-2:]) != tuple(ds.shape[-2:]):
                chunks = tuple(native)  # tiles smaller than a plane: the file's own
            else:
                chunks = slice_chunks(ds.shape, axes=axes)
            from ._sources import open_hdf5, reopenable

            source = reopenable(open_hdf5, (str(path), ds.name), ds, label=path.name)
            array = as_dask(source, chunks=chunks, name=token(path, "hdf5", key))
        else:
            array = ds[()]
            fh.close()
    except InputError:
        fh.close()
        raise
    except Exception as exc:
        fh.close()
        from ._sources import failure_sentence

        raise InputError(failure_sentence(f"{path.name} ({key})", exc, "file")) from exc
    return array, meta, axes, False
