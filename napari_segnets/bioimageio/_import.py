"""Run a BioImage Model Zoo package (format 0.5, zip or folder) like a napari-segnets checkpoint.

Loading never unpickles: a ``pytorch_state_dict`` is read with ``torch.load(weights_only=True)``
(plain tensors only) and only for the project's own architectures; ONNX graphs run in
onnxruntime. TorchScript is a program (TorchScript code runs when the model runs), so it is used
only with ``allow_torchscript=True`` (``--allow-torchscript``) and when no other format is there.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

from ..errors import CheckpointError
from ._ops import normalization_from_ops

DESCRIPTORS = ("rdf.yaml", "bioimageio.yaml")
ORDER = ("pytorch_state_dict", "onnx", "torchscript")


class _Files:
    """The files of a package (a zip or a folder), read on demand."""

    def __init__(self, path: Path):
        self.path = path
        if path.is_file() and path.suffix.lower() in (".yaml", ".yml"):
            self.root, self.zip, self.rdf_name = path.parent, None, path.name
            return
        if path.is_dir():
            self.root, self.zip = path, None
            names = [p.name for p in path.iterdir()]
        elif zipfile.is_zipfile(path):
            self.root, self.zip = None, zipfile.ZipFile(path)
            names = self.zip.namelist()
        else:
            raise CheckpointError(f"{path} is neither a zoo package (.zip or folder) nor a checkpoint.")
        found = [n for n in names if n in DESCRIPTORS or n.endswith(".bioimageio.yaml")]
        if not found:
            raise CheckpointError(f"{path} has no rdf.yaml or bioimageio.yaml: it is not a zoo package.")
        self.rdf_name = found[0]

    def read(self, name: str, sha256: str | None = None) -> bytes:
        name = str(name)
        if "://" in name:
            raise CheckpointError(
                f"The package refers to {name} on the web; napari-segnets reads only files inside "
                "the package: download the complete package (zip) from bioimage.io."
            )
        try:
            data = self.zip.read(name) if self.zip is not None else (self.root / name).read_bytes()
        except (KeyError, FileNotFoundError):
            raise CheckpointError(f"The package {self.path} lacks its file {name}.") from None
        if sha256 and hashlib.sha256(data).hexdigest() != sha256:
            raise CheckpointError(f"{name} in {self.path} does not match its sha256: the package is damaged.")
        return data


def is_package(path) -> bool:
    """True for a zoo package: a zip or folder holding ``rdf.yaml``/``bioimageio.yaml``, or such a file."""
    p = Path(path)
    if p.is_file() and (p.name in DESCRIPTORS or p.name.endswith(".bioimageio.yaml")):
        return True
    if p.is_dir():
        return any((p / n).is_file() for n in DESCRIPTORS) or any(p.glob("*.bioimageio.yaml"))
    if p.is_file() and zipfile.is_zipfile(p):
        with zipfile.ZipFile(p) as zf:
            return any(n in DESCRIPTORS or n.endswith(".bioimageio.yaml") for n in zf.namelist())
    return False


def read_description(path) -> tuple[dict, _Files]:
    import yaml

    files = _Files(Path(path))
    rdf = yaml.safe_load(files.read(files.rdf_name))
    if not isinstance(rdf, dict) or rdf.get("type") != "model":
        raise CheckpointError(f"{path} does not describe a model (type {rdf.get('type')!r}).")
    fv = str(rdf.get("format_version", ""))
    if not fv.startswith("0.5"):
        raise CheckpointError(
            f"{path} uses model description format {fv}; napari-segnets reads 0.5.x: update it with "
            "bioimageio.spec (`bioimageio update-format`) first."
        )
    return rdf, files


def _size_rule(axis) -> tuple[int, int]:
    """(min, step) of an input space axis; step 0 for a fixed size."""
    size = axis.get("size")
    if isinstance(size, int):
        return size, 0
    if isinstance(size, dict) and "min" in size:
        return int(size["min"]), int(size.get("step", 0) or 0)
    raise CheckpointError(f"Input axis {axis_id(axis)} has a size rule napari-segnets cannot tile: {size}.")


def _check_io(rdf) -> tuple[dict, dict, list[str], list[str]]:
    inputs, outputs = rdf.get("inputs") or [], rdf.get("outputs") or []
    if len(inputs) != 1:
        raise CheckpointError(f"The model takes {len(inputs)} input tensors; napari-segnets runs one-input models.")
    if not outputs:
        raise CheckpointError("The model declares no output tensor.")
    inp, out = inputs[0], outputs[0]
    kinds_in = [_axis_key(a) for a in inp["axes"]]
    kinds_out = [_axis_key(a) for a in out["axes"]]
    if "z" in kinds_in or "t" in kinds_in or not {"y", "x"} <= set(kinds_in):
        raise CheckpointError(
            f"The model's input axes are {kinds_in}: napari-segnets runs 2D (y, x) models only."
        )
    for a in inp["axes"]:
        if _axis_key(a) == "c" and len(a.get("channel_names") or [None] * int(a.get("size", 1))) != 1:
            raise CheckpointError("The model takes several input channels; images here have one.")
    for a in out["axes"]:
        if _axis_key(a) in "yx":
            size = a.get("size")
            ok = isinstance(size, dict) and size.get("tensor_id") == inp["id"] and not size.get("offset")
            if not ok or float(a.get("scale", 1) or 1) != 1:
                raise CheckpointError(
                    f"The output axis {axis_id(a)} is not the size of the input ({size}); "
                    "napari-segnets runs models whose output matches their input pixel for pixel."
                )
    return inp, out, kinds_in, kinds_out


def axis_id(axis) -> str:
    """The axis id, with the spec's defaults (a space axis without one is ``x``)."""
    defaults = {"batch": "batch", "channel": "channel", "space": "x", "time": "time", "index": "index"}
    return str(axis.get("id") or defaults.get(axis.get("type"), "?"))


def _axis_key(axis) -> str:
    kind = axis.get("type")
    return {"batch": "b", "channel": "c", "time": "t", "index": "i"}.get(kind) or axis_id(axis)


def load_package(path, *, device="cpu", weight_format: str | None = None, allow_torchscript: bool = False):
    """Load a zoo package as a model :func:`napari_segnets.inference.predict` runs, with its metadata.

    Parameters
    ----------
    path : path-like
        A ``.zip``, a folder, or its ``rdf.yaml``/``bioimageio.yaml``.
    device : str
        Where the model runs (ONNX: onnxruntime's CUDA provider when available, else the CPU).
    weight_format : str, optional
        ``pytorch_state_dict`` (napari-segnets architectures only), ``onnx`` or ``torchscript``;
        default the first of these that can run here.
    allow_torchscript : bool
        TorchScript weights are programs: use them only when you trust the package.

    Returns
    -------
    (model, dict)
        For the project's own packages with state-dict weights, the native model; else a
        :class:`ZooModel`. The metadata has ``normalization`` (from the preprocessing ops),
        ``class_names``, ``task``, ``content_hash`` and ``bioimageio`` (name, weights, tolerance).
    """
    from ..devices import resolve_device

    rdf, files = read_description(path)
    inp, out, kinds_in, kinds_out = _check_io(rdf)
    weights = rdf.get("weights") or {}
    ours = (rdf.get("config") or {}).get("napari_segnets") or {}
    order = [weight_format] if weight_format else list(ORDER)
    reasons = []
    dev = resolve_device(device)
    for fmt in order:
        entry = weights.get(fmt)
        if entry is None:
            reasons.append(f"no {fmt} weights")
            continue
        if fmt == "pytorch_state_dict":
            arch = entry.get("architecture") or {}
            if arch.get("import_from") != "napari_segnets.models" or arch.get("callable") != "build":
                reasons.append("pytorch_state_dict weights of an architecture from outside napari-segnets "
                               "(its Python code is never imported)")  # fmt: skip
                continue
            model = _native(files, entry, ours)
        elif fmt == "torchscript" and not allow_torchscript:
            reasons.append("torchscript weights, which run code: allow them explicitly "
                           "(allow_torchscript=True, --allow-torchscript) if you trust the package")  # fmt: skip
            continue
        else:
            if fmt not in ("onnx", "torchscript"):
                reasons.append(f"{fmt} weights (napari-segnets runs PyTorch and ONNX)")
                continue
            from ._runner import ZooModel

            model = ZooModel(rdf, files, fmt, entry, inp, out, kinds_in, kinds_out, dev)
        meta = _metadata(rdf, inp, out, model, fmt, files, entry, ours)
        return model.to(dev).eval() if fmt != "onnx" else model.eval(), meta
    present = ", ".join(weights) or "none"
    raise CheckpointError(
        f"Cannot run {path} here: it has {present} weights and napari-segnets found "
        f"{'; '.join(reasons)}."
    )


def _native(files, entry, ours):
    import torch

    from .. import checkpoints
    from ..models import build

    kwargs = dict(entry["architecture"].get("kwargs") or {})
    data = files.read(entry["source"], entry.get("sha256"))
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)  # never unpickles code
    except Exception as exc:
        raise CheckpointError(f"The state dict in the package cannot be read safely: {exc}") from exc
    if ours.get("content_hash") and checkpoints.content_hash(state) != ours["content_hash"]:
        raise CheckpointError("The package's weights do not match their recorded content hash.")
    with torch.device("meta"):
        model = build(**kwargs)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        raise CheckpointError(f"The package's weights do not fit its architecture: {exc}") from exc
    return model


def _metadata(rdf, inp, out, model, fmt, files, entry, ours) -> dict:
    names = next((a.get("channel_names") for a in out["axes"] if a.get("type") == "channel"), None)
    meta = {
        "normalization": ours.get("normalization") if fmt == "pytorch_state_dict" and ours
        else normalization_from_ops(inp.get("preprocessing") or []),
        "class_names": ours.get("class_names") if ours else names,
        "task": getattr(model, "task", "segment"),
        "history": ours.get("history", []), "parent": ours.get("parent"),
        "content_hash": ours.get("content_hash") if fmt == "pytorch_state_dict"
        else hashlib.sha256(files.read(entry["source"])).hexdigest(),
        "config": dict(getattr(model, "config", {}) or {}),
        "bioimageio": {"name": rdf.get("name"), "source": str(files.path), "weight_format": fmt,
                       "output": out.get("id"), "tolerance": _tolerance(rdf, fmt)},
    }  # fmt: skip
    if fmt == "pytorch_state_dict" and ours and not ours.get("normalization"):
        meta["normalization"] = normalization_from_ops(inp.get("preprocessing") or [])
    return meta


def _tolerance(rdf, fmt) -> dict:
    tol = {"relative_tolerance": 1e-3, "absolute_tolerance": 1e-3}
    for t in ((rdf.get("config") or {}).get("bioimageio") or {}).get("reproducibility_tolerance") or []:
        if not t.get("weights_formats") or fmt in t["weights_formats"]:
            tol.update({k: t[k] for k in tol if k in t})
            break
    return tol


def package_metadata(path) -> dict:
    """A package's metadata, in the shape of a checkpoint's, without reading its weights."""
    rdf, files = read_description(path)
    inp, out, _, _ = _check_io(rdf)
    ours = (rdf.get("config") or {}).get("napari_segnets") or {}
    names = next((a.get("channel_names") for a in out["axes"] if a.get("type") == "channel"), None)
    first = next(iter((rdf.get("weights") or {}).values()), {}) or {}
    return {
        "task": ours.get("task", "segment"), "arch": ours.get("arch", "bioimageio"),
        "config": ours.get("config") or {"arch": "bioimageio", "name": rdf.get("name")},
        "class_names": ours.get("class_names", names),
        "normalization": ours.get("normalization") or normalization_from_ops(inp.get("preprocessing") or []),
        "history": ours.get("history", []), "parent": ours.get("parent"),
        "content_hash": ours.get("content_hash") or first.get("sha256"),
        "bioimageio": {"name": rdf.get("name"), "source": str(files.path), "weights": list(rdf.get("weights") or {})},
    }  # fmt: skip
