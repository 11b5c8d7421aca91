"""Chunked containers: Zarr v2/v3 (plain and OME-Zarr multiscales) and HDF5."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from ._common import as_dask, slice_chunks, token, unit_to_nm, want_lazy


def attrs_voxel_size(attrs, ndim: int) -> list[float] | None:
    """Voxel size (nm, one per axis) from common EM attribute conventions, or None.

    ``voxel_size_nm`` (ours), ``resolution`` (CREMI, nm), ``element_size_um`` (ilastik/Fiji, µm),
    ``voxel_size`` with an optional ``unit`` (default nm).
    """
    for key, factor in (("voxel_size_nm", 1.0), ("resolution", 1.0), ("element_size_um", 1e3)):
        if key in attrs:
            return _per_axis(attrs[key], factor, ndim)
    if "voxel_size" in attrs:
        factor = unit_to_nm(attrs.get("unit", "nm"))
        return _per_axis(attrs["voxel_size"], factor, ndim) if factor else None
    return None


def _per_axis(values, factor: float, ndim: int) -> list[float] | None:
    try:
        vals = [float(v) * factor for v in np.atleast_1d(np.asarray(values, dtype=float))]
    except (TypeError, ValueError):
        return None
    if len(vals) < ndim:
        return None
    return vals[-ndim:]  # trailing spatial axes


def _pick(name: str, candidates: dict[str, tuple], what: str) -> str:
    """The one image-like node: the only 3D one, else the only 2D one; several -> ask for a key."""
    for ndim in (3, 2):
        found = [k for k, shape in candidates.items() if len([s for s in shape if s > 1]) == ndim]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            listing = ", ".join(f"{k} {candidates[k]}" for k in sorted(found))
            raise InputError(
                f"{name} holds several {ndim}D {what}s ({listing}); pass key= to choose one."
            )
    if not candidates:
        raise InputError(f"{name} holds no {what}s; choose a file that contains an image stack.")
    listing = ", ".join(f"{k} {v}" for k, v in sorted(candidates.items()))
    raise InputError(f"{name} has no 2D or 3D {what} ({listing}); pass key= to choose one.")


# ----------------------------------------------------------------------------------------- Zarr
def _multiscales(attrs) -> list | None:
    ms = attrs.get("multiscales")
    if ms is None and isinstance(attrs.get("ome"), dict):  # OME-Zarr 0.5 (Zarr v3)
        ms = attrs["ome"].get("multiscales")
    return ms if isinstance(ms, list) and ms else None


def _ome_level0(group, ms: dict, name: str):
    """Level 0 of an OME-Zarr multiscale image with its axes and voxel size (nm)."""
    datasets = ms.get("datasets") or []
    if not datasets:
        raise InputError(
            f"{name} has OME-Zarr multiscales metadata without datasets; the store is incomplete."
        )
    arr = group[datasets[0]["path"]]
    axes_meta = ms.get("axes")
    if axes_meta and isinstance(axes_meta[0], dict):
        axes = "".join(a.get("name", "?")[0] for a in axes_meta)
        units = [a.get("unit") for a in axes_meta]
    elif axes_meta:
        axes, units = "".join(str(a)[0] for a in axes_meta), [None] * len(axes_meta)
    else:  # OME-Zarr 0.1/0.2: always t, c, z, y, x
        axes, units = "tczyx"[-arr.ndim :], [None] * arr.ndim
    scale = np.ones(arr.ndim)
    for transforms in (
        datasets[0].get("coordinateTransformations"),
        ms.get("coordinateTransformations"),
    ):
        for t in transforms or []:
            if t.get("type") == "scale" and len(t.get("scale", [])) == arr.ndim:
                scale = scale * np.asarray(t["scale"], dtype=float)
    voxel = []
    for ax, s, unit in zip(axes.lower(), scale, units):
        factor = unit_to_nm(unit)
        voxel.append(float(s) * factor if factor and ax in "zyx" else None)
    return arr, axes.lower(), voxel, [float(s) for s in scale]


def read_zarr(path: Path, *, key: str | None, lazy: bool | None):
    """Read a Zarr array or group (OME-Zarr level 0); returns (array, meta, axes, rgb)."""
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:
        raise InputError(f"{path.name} is not a readable Zarr store ({exc}).") from exc
    meta: dict = {"format": "zarr", "key": key}
    axes = None
    if key is not None:
        try:
            node = node[key] if isinstance(node, zarr.Group) else None
        except KeyError:
            node = None
        if node is None:
            raise InputError(f"{path.name} has no array {key!r}; {_zarr_listing(path)}.")
    if (
        isinstance(node, zarr.Group)
        and node.attrs.get("napari-segnets", {}).get("layer_type") == "labels"
    ):
        meta["kind"] = "labels"
    if isinstance(node, zarr.Group):
        ms = _multiscales(node.attrs)
        if ms is not None:
            node, axes, voxel, scale = _ome_level0(node, ms[0], path.name)
            level0 = ms[0]["datasets"][0]["path"]
            meta.update(
                format="ome-zarr",
                voxel_size=voxel,
                scale=scale,
                key=f"{key.strip('/')}/{level0}" if key else level0,
            )
        else:
            arrays = {
                p: tuple(a.shape)
                for p, a in node.members(max_depth=None)
                if isinstance(a, zarr.Array)
            }
            meta["key"] = _pick(path.name, arrays, "array")
            node = node[meta["key"]]
    if isinstance(node, zarr.Group):  # a key that names a group
        raise InputError(f"{path.name}: {key!r} is a group, not an array; {_zarr_listing(path)}.")
    meta["zarr_format"] = node.metadata.zarr_format
    if "voxel_size" not in meta:
        meta["voxel_size"] = attrs_voxel_size(node.attrs, node.ndim)
    if node.attrs.get("napari-segnets", {}).get("layer_type") == "labels":
        meta["kind"] = "labels"
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
            raise InputError(
                f"{path.name}: the array could not be read ({exc}); the store may be corrupt."
            ) from exc
    return array, meta, axes, False


def _zarr_listing(path: Path) -> str:
    import zarr

    try:
        group = zarr.open_group(str(path), mode="r")
        names = [p for p, a in group.members(max_depth=None) if isinstance(a, zarr.Array)]
    except Exception:  # the store itself is a single array
        return "it is a single array, so leave key unset"
    return "its arrays are: " + (", ".join(sorted(names)) or "none")


# ----------------------------------------------------------------------------------------- HDF5
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
        datasets: dict[str, tuple] = {}
        fh.visititems(
            lambda n, o: datasets.__setitem__(n, o.shape) if isinstance(o, h5py.Dataset) else None
        )
        if key is None:
            key = _pick(path.name, datasets, "dataset")
        elif key.strip("/") not in datasets:
            listing = ", ".join(sorted(datasets)) or "none"
            raise InputError(f"{path.name} has no dataset {key!r}; its datasets are: {listing}.")
        ds = fh[key]
        meta = {
            "format": "hdf5",
            "key": key.strip("/"),
            "voxel_size": attrs_voxel_size(ds.attrs, ds.ndim),
        }
        if want_lazy(lazy, ds.shape, ds.dtype):
            # The dataset keeps the file open for as long as the dask array lives.
            native = ds.chunks if ds.chunks else None
            chunks = slice_chunks(
                ds.shape, native if native and native[-2:] != ds.shape[-2:] else None
            )
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
        raise InputError(
            f"{path.name}: the dataset could not be read ({exc}); the file may be corrupt."
        ) from exc
    return array, meta, None, False
