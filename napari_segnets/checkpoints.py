"""Checkpoints: weights in safetensors, metadata as JSON in its header; loading never unpickles.

A checkpoint is one ``.safetensors`` file. Its header metadata holds
``{"format": "napari-segnets/1", "napari_segnets": "<JSON>"}`` where the JSON has
``arch``, ``config``, ``task``, ``class_names``, ``normalization``, ``history``,
``parent``, ``versions``, ``content_hash`` and ``created`` (plus any extra keys the
caller gave). Models are rebuilt through :func:`napari_segnets.models.build` from
``config``, so a file can only ever describe architectures the registry knows.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import sys
from pathlib import Path

from .errors import CheckpointError, InputError
from .export import export_onnx, export_torchscript
from .io.atomic import atomic_write_bytes

FORMAT = "napari-segnets/1"
META_KEY = "napari_segnets"
# Keys save() computes itself; values passed in for them are replaced.
COMPUTED = ("arch", "config", "task", "versions", "content_hash", "created")
_MAX_HEADER = 100 * 1024 * 1024

__all__ = ["content_hash", "export_onnx", "export_torchscript", "load", "read_metadata", "save", "strokes_note"]


def content_hash(tensors: dict) -> str:
    """SHA-256 over the names, dtypes, shapes and raw bytes of ``tensors`` (sorted by name)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(_raw(t))
    return h.hexdigest()


def _raw(t) -> bytes:
    import torch

    return t.reshape(-1).view(torch.uint8).numpy().tobytes()


def _versions() -> dict:
    import numpy
    import safetensors
    import torch

    from . import __version__

    return {
        "napari_segnets": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "safetensors": safetensors.__version__,
        "python": sys.version.split()[0],
    }


def _parent_entry(parent) -> dict | None:
    if parent is None:
        return None
    if isinstance(parent, dict):
        if "path" not in parent:
            raise InputError(
                "metadata['parent'] must be a path or a dict with 'path' and 'content_hash'."
            )
        return {"path": str(parent["path"]), "content_hash": parent.get("content_hash")}
    path = Path(parent)
    digest = None
    if path.is_file():
        digest = read_metadata(path).get("content_hash")
    return {"path": str(path), "content_hash": digest}


def save(path, model, metadata: dict | None = None) -> Path:
    """Write ``model`` and ``metadata`` to a safetensors checkpoint, atomically.

    Parameters
    ----------
    path : path-like
        Destination (``.safetensors`` suggested). Replaced atomically if it exists.
    model : torch.nn.Module
        A model from :func:`napari_segnets.models.build`.
    metadata : dict, optional
        ``class_names``, ``normalization`` (a spec from :mod:`napari_segnets.io.normalize`),
        ``history`` (training log), ``parent`` (a checkpoint path, or a dict with ``path``
        and ``content_hash``) and any other JSON-serialisable keys. ``arch``, ``config``,
        ``task``, ``versions``, ``content_hash`` and ``created`` are computed here.

    Returns
    -------
    Path
        The written file.
    """
    from safetensors.torch import save as st_save

    if not hasattr(model, "config") or not hasattr(model, "arch"):
        raise InputError(
            "Only napari-segnets models (made by models.build) can be saved as checkpoints."
        )
    meta = {k: v for k, v in dict(metadata or {}).items() if k not in COMPUTED}
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta.setdefault("class_names", None)
    meta.setdefault("normalization", None)
    meta.setdefault("history", [])
    meta["parent"] = _parent_entry(meta.get("parent"))
    meta.update(
        arch=model.arch,
        config=model.config,
        task=model.task,
        versions=_versions(),
        content_hash=content_hash(tensors),
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )
    try:
        text = json.dumps(meta)
    except (TypeError, ValueError) as exc:
        raise InputError(f"Checkpoint metadata must be JSON-serialisable: {exc}.") from exc
    data = st_save(tensors, metadata={"format": FORMAT, META_KEY: text})
    return atomic_write_bytes(path, data)


def _describe_non_safetensors(head: bytes) -> str:
    if head[:1] == b"\x80" or head[:2] == b"PK":
        return (
            "it is a Python pickle / torch.save file, which napari-segnets never loads because "
            "unpickling can run arbitrary code; re-save the weights as a napari-segnets checkpoint"
        )
    return "it is not a complete safetensors file (truncated, or another format)"


def _read_header(path: Path) -> tuple[dict, int]:
    """Parse and sanity-check the safetensors header; return it and the data-section length."""
    if not path.is_file():
        raise CheckpointError(f"No checkpoint file at {path}: check the path.")
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise CheckpointError(f"Cannot load {path}: the file is empty or truncated.")
        n = int.from_bytes(head, "little")
        if n < 2 or n > min(size - 8, _MAX_HEADER):
            raise CheckpointError(f"Refusing to load {path}: {_describe_non_safetensors(head)}.")
        raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(
            f"Refusing to load {path}: {_describe_non_safetensors(head)}."
        ) from None
    if not isinstance(header, dict):
        raise CheckpointError(f"Refusing to load {path}: its header is not a safetensors header.")
    data_len = size - 8 - n
    ends = [v.get("data_offsets", [0, 0])[1] for k, v in header.items() if k != "__metadata__"]
    if max(ends, default=0) != data_len:
        raise CheckpointError(
            f"Cannot load {path}: the file is truncated or has extra bytes "
            f"({data_len} bytes of weights, {max(ends, default=0)} expected); use an intact copy."
        )
    return header, data_len


def read_metadata(path) -> dict:
    """The checkpoint's metadata dict, reading only the file header (no weights, no hash check).

    For a zoo package: what its ``rdf.yaml`` says, in the same shape.
    """
    path = Path(path)
    if _is_zoo_package(path):
        from .bioimageio._import import package_metadata

        return package_metadata(path)
    header, _ = _read_header(path)
    info = header.get("__metadata__") or {}
    if info.get("format") != FORMAT or META_KEY not in info:
        raise CheckpointError(
            f"{path} is a safetensors file but not a napari-segnets checkpoint (no {FORMAT} metadata)."
        )
    try:
        meta = json.loads(info[META_KEY])
    except json.JSONDecodeError as exc:
        raise CheckpointError(
            f"The metadata in {path} is not valid JSON: the file is damaged."
        ) from exc
    if not isinstance(meta, dict) or "config" not in meta:
        raise CheckpointError(f"The metadata in {path} has no model config: the file is damaged.")
    return meta


def strokes_note(meta: dict) -> str:
    """A sentence for whoever predicts with a model trained on sparse strokes (from its metadata), or "".

    Strokes placed away from the boundaries (as a user paints them: through objects and background)
    do not show where a boundary lies. On the EPFL strokes of ``benchmarks/sparse_start.py`` eight such
    models counted the objects well once fragments were dropped (20-24 for 20), but the total volume of
    their objects was 0.84-1.22 of the truth's (a 15-minute model on full masks: 1.02); see
    ``benchmarks/RESULTS.md``.
    """
    training = (meta or {}).get("training") or {}
    if training.get("annotation") != "sparse":
        return ""
    painted = training.get("painted")
    share = f" ({painted:.1%} of the pixels painted)" if isinstance(painted, int | float) else ""
    return (f"This model learnt from strokes{share}, which do not show where a boundary lies: its objects "
            "can be too big or too small (in the project's benchmark their total volume was 16% low to 22% "
            "high). Check the boundaries, or paint strokes along them and train again, before publishing "
            "volumes or surfaces.")


def _is_zoo_package(path: Path) -> bool:
    if path.is_file() and path.suffix.lower() == ".safetensors":
        return False
    from .bioimageio import is_package

    return is_package(path)


def load(path, *, device="cpu", allow_torchscript: bool = False):
    """Rebuild a model from a checkpoint or a BioImage Model Zoo package; never unpickles anything.

    Parameters
    ----------
    path : path-like
        A file written by :func:`save`, or a zoo package (``.zip``, folder or its ``rdf.yaml``:
        see :func:`napari_segnets.bioimageio.load_package`).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``, ... (see :func:`napari_segnets.devices.resolve_device`).
    allow_torchscript : bool
        Zoo packages only: run TorchScript weights (programs) when no other format can run.

    Returns
    -------
    (torch.nn.Module, dict)
        The model in eval mode on ``device``, and its metadata.

    Raises
    ------
    CheckpointError
        For pickles and other non-safetensors files, truncated or tampered files
        (weights that do not match the recorded content hash) and unknown architectures.
    """
    import torch
    from safetensors.torch import load_file

    from .devices import resolve_device
    from .models import available, build

    path = Path(path)
    if _is_zoo_package(path):
        from .bioimageio import load_package

        return load_package(path, device=device, allow_torchscript=allow_torchscript)
    meta = read_metadata(path)
    config = dict(meta["config"])
    arch = config.get("arch")
    if arch not in available():
        raise CheckpointError(
            f"{path} holds an unknown architecture {arch!r}: this version knows {', '.join(available())}."
        )
    try:
        tensors = load_file(path)  # the header was checked above; never a pickle
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise CheckpointError(
            f"Cannot read the weights in {path}: the file is damaged ({exc})."
        ) from exc
    if content_hash(tensors) != meta.get("content_hash"):
        raise CheckpointError(
            f"The weights in {path} do not match their recorded content hash: the file was modified "
            "or corrupted; use an intact copy."
        )
    try:
        with torch.device("meta"):  # no initialisation work and no use of the global RNG
            model = build(**config)
    except (InputError, TypeError, ValueError) as exc:
        raise CheckpointError(f"Cannot rebuild the model described in {path}: {exc}") from exc
    try:
        model.load_state_dict(tensors, strict=True, assign=True)
    except RuntimeError as exc:
        raise CheckpointError(f"The weights in {path} do not fit its architecture: {exc}") from exc
    return model.to(resolve_device(device)).eval(), meta
