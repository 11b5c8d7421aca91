"""The functions napari.yaml points at: reader, label writer and sample data (npe2 contributions).

Only translation happens here: core calls in, napari layer data tuples out.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError


def _contrast_limits(array, meta: dict) -> list[float] | None:
    """Display range: the full range for 8-bit, robust percentiles (on a bounded sample) otherwise."""
    dtype = np.dtype(array.dtype)
    if dtype == np.uint8:
        return [0.0, 255.0]
    from .io.normalize import fit_normalization, normalization_spec

    try:
        fitted = fit_normalization(array, normalization_spec("percentile", low=0.1, high=99.9))
    except InputError:  # all NaN: let napari pick
        return None
    return [fitted["vmin"], fitted["vmax"]]


def layer_tuple(array, meta: dict, name: str | None = None) -> tuple[Any, dict, str]:
    """A napari layer data tuple for an array returned by :func:`napari_segnets.io.read`.

    Masks (see :func:`napari_segnets.io.layer_kind`) become Labels layers, the rest Image layers.
    """
    from .io import layer_kind

    name = name or Path(meta.get("path", "stack")).name
    kwargs: dict[str, Any] = {"name": name, "metadata": {"segnets": dict(meta)}}
    voxel = meta.get("voxel_size")
    full = voxel is not None and None not in voxel
    # A partial calibration (XY without z) is not guessed into a scale: tools that read the
    # layer's scale as nm would measure with the guess. It stays in metadata["segnets"].
    scale = voxel if full else meta.get("scale")
    if scale is not None and len(scale) == array.ndim:
        kwargs["scale"] = tuple(float(s) for s in scale)
        if full:
            kwargs["units"] = ("nm",) * array.ndim
    if layer_kind(array, meta) == "labels":
        return array, kwargs, "labels"
    limits = _contrast_limits(array, meta)
    if limits is not None:
        kwargs["contrast_limits"] = limits
    return array, kwargs, "image"


def get_reader(path: str | list[str]):
    """npe2 reader: a function for paths napari-segnets can read, else None (napari falls back)."""
    from .io import sniff

    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not paths or any(sniff(p) is None for p in paths):
        return None
    return _read_layers


def _notify(message: str) -> None:
    """Show a note in napari (the status notification), or warn when napari is not running."""
    try:
        from napari.utils.notifications import show_info
    except ImportError:  # the core used without napari
        import warnings

        warnings.warn(message, UserWarning, stacklevel=3)
        return
    show_info(message)


def read_all(path) -> list[tuple[Any, dict]]:
    """Every image in ``path``: one (array, meta), or one per dataset of an HDF5/Zarr container.

    A container with several candidate datasets opens them all (instead of asking for a key
    nobody can give in napari); those that cannot be read are skipped with a note, unless
    none can.
    """
    from .io import AmbiguousInputError, read

    try:
        return [read(path)]
    except AmbiguousInputError as exc:
        choices = exc.choices
    opened, failed = [], []
    for key in choices:
        try:
            opened.append(read(path, key=key))
        except InputError as err:
            failed.append(err)
    if not opened:
        raise failed[0]
    for err in failed:
        opened[0][1].setdefault("notes", []).append(f"Skipped: {err}")
    return opened


def _read_layers(path: str | list[str]) -> list[tuple]:
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    layers = []
    for p in paths:
        found = read_all(p)
        for array, meta in found:
            name = Path(str(p)).name
            if len(found) > 1 and meta.get("key"):
                name = f"{name} [{meta['key']}]"
            notes = list(meta.get("notes", []))
            voxel = meta.get("voxel_size")
            if voxel and None in voxel:
                missing = ", ".join(a.upper() for a, v in zip(meta["axes"], voxel) if v is None)
                notes.append(
                    f"The file does not calibrate {missing}; the layer is shown in pixels (the "
                    "known sizes are kept in its metadata)."
                )
            for note in notes:
                _notify(f"{name}: {note}")
            layers.append(layer_tuple(array, meta, name=name))
    return layers


def write_labels(path: str, data: Any, attributes: dict) -> list[str]:
    """npe2 single-layer writer: save a Labels layer as compressed OME-TIFF or OME-Zarr."""
    from .io import write_labels as _write

    meta = dict((attributes.get("metadata") or {}).get("segnets") or {})
    voxel = meta.get("voxel_size")
    scale = attributes.get("scale")
    ndim = getattr(data, "ndim", None)
    if (
        (voxel is None or len(voxel) != ndim)
        and scale is not None
        and any(float(s) != 1.0 for s in scale)
    ):
        voxel = tuple(float(s) for s in scale)  # the layer's scale, which our reader sets in nm
    return _write(path, data, {"voxel_size": voxel})


def sample_synthetic() -> list[tuple]:
    """The synthetic EM stack with its class labels (0 cytoplasm, 1 membrane, 2 mitochondrion)."""
    from .sample_data import synthetic_stack

    image, labels = synthetic_stack((16, 256, 256), seed=0)
    return [
        (image, {"name": "synthetic EM", "contrast_limits": [0, 255]}, "image"),
        (labels["classes"], {"name": "synthetic classes", "opacity": 0.4}, "labels"),
    ]


def _public(name: str, title: str, target: str) -> list[tuple]:
    from .sample_data import load_public

    image, labels, meta = load_public(name)
    scale = meta.get("voxel_size")
    common = {"scale": scale} if scale else {}
    layers = [(image, {"name": title, "contrast_limits": [0, 255], **common}, "image")]
    if labels is not None:
        layers.append((labels, {"name": f"{title} {target}", "opacity": 0.4, **common}, "labels"))
    return layers


def sample_isbi2012() -> list[tuple]:
    """ISBI 2012 training stack with membrane labels (1 = membrane), from a local copy."""
    return _public("isbi2012", "ISBI 2012", "membranes")


def sample_lucchi() -> list[tuple]:
    """EPFL/Lucchi FIB-SEM slices with mitochondria labels (1 = mitochondrion), from a local copy."""
    return _public("lucchi", "Lucchi", "mitochondria")
