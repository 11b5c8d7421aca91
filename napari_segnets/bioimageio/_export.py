"""Write a checkpoint as a BioImage Model Zoo package (model description format 0.5)."""

from __future__ import annotations

import hashlib
import io
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from ..errors import InputError, SegnetsError

FORMAT_VERSION = "0.5.4"  # what ilastik, deepImageJ and bioimageio.core >= 0.7 all read
INPUT_ID = "raw"
WEIGHTS = ("pytorch_state_dict", "torchscript", "onnx")
PROJECT_CITE = {
    "text": "napari-segnets: U-Net, atrous and FCN segmentation of electron-microscopy stacks in napari",
    "url": "https://github.com/napari-segnets/napari-segnets",
}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def preprocessing_ops(normalization: dict | None) -> list[dict]:
    """The zoo's preprocessing ops for a normalisation spec of :mod:`napari_segnets.io.normalize`.

    Percentile and min-max scaling become ``scale_range`` per sample over y and x (the zoo's
    percentiles are computed on the whole image, as ``predict`` does), fixed scaling becomes
    ``scale_linear``; then ``clip`` to [-0.5, 1.5], as :func:`~napari_segnets.io.normalize.apply_normalization`.
    """
    from ..io.normalize import normalization_spec

    spec = dict(normalization or normalization_spec())
    mode = spec.get("mode", "percentile")
    ensure = {"id": "ensure_dtype", "kwargs": {"dtype": "float32"}}
    clip = {"id": "clip", "kwargs": {"min": -0.5, "max": 1.5}}
    if mode == "none":
        return [ensure]
    if mode in ("percentile", "minmax"):
        low, high = (spec.get("low", 1.0), spec.get("high", 99.8)) if mode == "percentile" else (0, 100)
        scale = {"id": "scale_range", "kwargs": {"axes": ["y", "x"], "min_percentile": float(low),
                                                 "max_percentile": float(high), "eps": 1e-6}}  # fmt: skip
        return [ensure, scale, clip]
    if mode == "fixed":
        vmin, vmax = float(spec["vmin"]), float(spec["vmax"])
        gain = 1.0 / (vmax - vmin)
        return [ensure, {"id": "scale_linear", "kwargs": {"gain": gain, "offset": -vmin * gain}}, clip]
    raise InputError(f"The normalisation mode {mode!r} has no BioImage Model Zoo equivalent.")


def _test_image(test_image, side: int, seed: int = 0) -> np.ndarray:
    """A (side, side) float32 test input: the given 2D image (centre crop / mirror pad) or synthetic EM."""
    if test_image is None:
        from ..sample_data import synthetic_stack

        image, _ = synthetic_stack((side, side), seed=seed)
        return np.asarray(image, dtype=np.float32)
    img = np.asarray(test_image)
    if img.ndim == 3:
        img = img[img.shape[0] // 2]
    if img.ndim != 2:
        raise InputError(f"The test image must be 2D (Y, X) or a (Z, Y, X) stack, got shape {img.shape}.")
    for axis in (0, 1):
        n = img.shape[axis]
        if n >= side:
            start = (n - side) // 2
            img = np.take(img, range(start, start + side), axis=axis)
        else:
            pad = [(0, 0), (0, 0)]
            pad[axis] = ((side - n) // 2, side - n - (side - n) // 2)
            img = np.pad(img, pad, mode="symmetric")
    return img.astype(np.float32)


def _cover(inp: np.ndarray, out: np.ndarray) -> bytes:
    """A 2:1 PNG: the test input beside the first foreground channel (or the reconstruction)."""
    from PIL import Image

    def grey(a):
        lo, hi = np.percentile(a, [0.5, 99.5])
        return (np.clip((a - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)

    shown = out[-1] if out.shape[0] > 1 else out[0]
    img = Image.fromarray(np.concatenate([grey(inp), grey(shown)], axis=1))
    if img.width > 1024:
        img = img.resize((1024, 512))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a, dtype=np.float32))
    return buf.getvalue()


def _axes_in(side_min: int, step: int) -> list[dict]:
    return [
        {"type": "batch"},
        {"type": "channel", "channel_names": ["em"]},
        {"type": "space", "id": "y", "size": {"min": side_min, "step": step}},
        {"type": "space", "id": "x", "size": {"min": side_min, "step": step}},
    ]


def _axes_out(channel_names: list[str], halo: int) -> list[dict]:
    space = [{"type": "space", "id": a, "size": {"tensor_id": INPUT_ID, "axis_id": a}} for a in "yx"]
    if halo:
        for ax in space:
            ax["halo"] = int(halo)
    return [{"type": "batch"}, {"type": "channel", "channel_names": channel_names}, *space]


def export_package(
    checkpoint,
    out,
    *,
    license: str,
    authors: list[str] | None = None,
    name: str | None = None,
    description: str | None = None,
    test_image=None,
    data_name: str | None = None,
    data_citation: str | None = None,
    data_url: str | None = None,
    weights: tuple[str, ...] = WEIGHTS,
    validate: bool = True,
) -> Path:
    """Write ``checkpoint`` as a BioImage Model Zoo package (a ``.zip``), atomically.

    Parameters
    ----------
    checkpoint : path-like or (model, metadata)
        A napari-segnets checkpoint, or a model with its metadata dict.
    out : path-like
        Destination ``.zip``.
    license : str
        SPDX licence identifier for the weights, e.g. ``"CC-BY-4.0"`` or ``"MIT"``.
    authors : list of str, optional
        Author names (default: "napari-segnets user").
    name, description : str, optional
        Default: from the checkpoint's file name and architecture.
    test_image : array, optional
        A 2D image (or stack: its middle slice) for the test tensors and the cover, cropped or
        mirror-padded to the model's smallest valid size; default a synthetic EM image.
    data_name, data_citation, data_url : str, optional
        The training data's name and citation (also read from ``metadata["training_data"]``).
    weights : tuple of str
        Among ``pytorch_state_dict`` (always), ``torchscript`` and ``onnx`` (derived from it).
    validate : bool
        Check the written package with ``bioimageio.spec`` when it is installed.

    Returns
    -------
    Path
        The package. Its test output is computed by :func:`napari_segnets.inference.predict` (one
        window, no padding: what the zoo's own test recomputes with a plain forward pass).
    """
    import torch
    import yaml

    from .. import checkpoints
    from ..inference import predict
    from ..inference.tiling import align_up
    from ..io.atomic import atomic_path

    out = Path(out)
    if out.suffix.lower() != ".zip":
        raise InputError(f"A BioImage Model Zoo package is a .zip file: name it e.g. {out.stem}.zip.")
    if not license or not str(license).strip():
        raise InputError("Give the licence of the weights (an SPDX id such as CC-BY-4.0 or MIT).")
    unknown = set(weights) - set(WEIGHTS)
    if unknown or "pytorch_state_dict" not in weights:
        raise InputError(f"weights must include pytorch_state_dict and be among {', '.join(WEIGHTS)}.")
    if "onnx" in weights:
        try:
            import onnx  # noqa: F401
            import onnxscript  # noqa: F401
        except ImportError:
            raise InputError(
                "ONNX weights need the onnx and onnxscript packages: install napari-segnets[bioimageio], "
                "or leave ONNX out (weights without 'onnx'; CLI --weights pytorch_state_dict,torchscript)."
            ) from None
    if isinstance(checkpoint, tuple):
        model, meta = checkpoint
        source = None
    else:
        source = Path(checkpoint)
        model, meta = checkpoints.load(source)
    meta = dict(meta or {})
    model = model.cpu().eval()
    if not hasattr(model, "config"):
        raise InputError("Only napari-segnets models (made by models.build) can be exported.")
    mult, halo, task = int(model.size_multiple), int(model.halo), model.task
    side = max(align_up(2 * halo + mult, mult), align_up(64, mult))
    image = _test_image(test_image, side)
    normalization = meta.get("normalization")
    pre = preprocessing_ops(normalization)
    what = "logits" if task == "autoencode" else "probabilities"
    result = predict(model, image, device="cpu", amp=False, tile=(side, side), halo=0, blend="none",
                     output=what, normalization=normalization)  # fmt: skip
    result = np.asarray(result, dtype=np.float32)
    result = result[None] if result.ndim == 2 else result
    channels = int(model.out_channels)
    if task == "autoencode":
        out_id, names, post, data = "reconstruction", ["em"], [], {"type": "float32"}
    else:
        out_id, data = "probabilities", {"type": "float32", "range": [0.0, 1.0]}
        given = meta.get("class_names") or []
        names = [str(n) for n in given] if len(given) == channels else (
            ["foreground"] if channels == 1 else [f"class{i}" for i in range(channels)])
        post = [{"id": "sigmoid"}] if channels == 1 else [
            {"id": "softmax", "kwargs": {"axis": "channel"}}]
    names = [_identifier(n, i) for i, n in enumerate(names)]

    files: dict[str, bytes] = {}
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, buf)
    files["weights.pt"] = buf.getvalue()
    with tempfile.TemporaryDirectory() as tmp:
        if "torchscript" in weights:
            checkpoints.export_torchscript(model, Path(tmp) / "ts.pt", tile=side)
            files["weights_torchscript.pt"] = (Path(tmp) / "ts.pt").read_bytes()
        if "onnx" in weights:
            checkpoints.export_onnx(model, Path(tmp) / "m.onnx", tile=side)
            files["weights.onnx"] = (Path(tmp) / "m.onnx").read_bytes()
            opset = _onnx_opset(Path(tmp) / "m.onnx")
    files["test_input.npy"] = _npy(image[None, None])
    files["test_output.npy"] = _npy(result[None])
    files["cover.png"] = _cover(_normalised(image, normalization), result)
    data_info = _training_data(meta, data_name, data_citation, data_url)
    title = name or (f"{source.stem} (napari-segnets {model.arch})" if source else f"napari-segnets {model.arch}")
    if not 5 <= len(title) <= 128:
        raise InputError(f"The model name must have 5 to 128 characters, got {title!r}.")
    files["README.md"] = _readme(title, model, meta, data_info, halo, mult, side).encode()
    files["environment.yaml"] = _environment().encode()

    def ref(fname):
        return {"source": fname, "sha256": _sha256(files[fname])}

    version = torch.__version__.split("+")[0]
    wdesc = {"pytorch_state_dict": {
        **ref("weights.pt"),
        "architecture": {"callable": "build", "import_from": "napari_segnets.models",
                         "kwargs": dict(model.config)},
        "pytorch_version": version, "dependencies": ref("environment.yaml"),
    }}  # fmt: skip
    if "weights_torchscript.pt" in files:
        wdesc["torchscript"] = {**ref("weights_torchscript.pt"), "parent": "pytorch_state_dict",
                                "pytorch_version": version}  # fmt: skip
    if "weights.onnx" in files:
        wdesc["onnx"] = {**ref("weights.onnx"), "parent": "pytorch_state_dict", "opset_version": opset}
    cite = [PROJECT_CITE]
    if data_info.get("citation") or data_info.get("url"):
        entry = {"text": f"Training data: {data_info.get('citation') or data_info['name']}"}
        entry["url" if not _is_doi(data_info.get("url")) else "doi"] = data_info.get("url") or PROJECT_CITE["url"]
        cite.append(entry)
    rdf = {
        "type": "model",
        "format_version": FORMAT_VERSION,
        "name": title,
        "description": description or _description(model, data_info),
        "authors": [{"name": a} for a in (authors or ["napari-segnets user"])],
        "cite": cite,
        "license": str(license).strip(),
        "tags": ["napari-segnets", model.arch, "electron-microscopy", "2d", "pytorch",
                 "segmentation" if task == "segment" else "denoising"],
        "documentation": "README.md",
        "covers": ["cover.png"],
        "inputs": [{
            "id": INPUT_ID, "description": "one EM image (greyscale)",
            "axes": _axes_in(side, mult), "test_tensor": ref("test_input.npy"),
            "data": {"type": "float32"}, "preprocessing": pre,
        }],
        "outputs": [{
            "id": out_id,
            "description": "class probabilities" if task == "segment"
            else "reconstruction in normalised intensity units",
            "axes": _axes_out(names, halo), "test_tensor": ref("test_output.npy"), "data": data,
            "postprocessing": post,
        }],
        "weights": wdesc,
        "attachments": [ref("environment.yaml")],
        "config": {"napari_segnets": _config(model, meta, data_info)},
    }  # fmt: skip
    files["rdf.yaml"] = yaml.safe_dump(rdf, sort_keys=False, allow_unicode=True).encode()
    with atomic_path(out) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for fname in ["rdf.yaml", *[f for f in files if f != "rdf.yaml"]]:
                zf.writestr(fname, files[fname])
        if validate:
            _validate(tmp)
    return out


def _identifier(name: str, i: int) -> str:
    import re

    text = re.sub(r"\W", "_", str(name)).strip("_") or f"class{i}"
    return text if not text[0].isdigit() else f"c{text}"


def _is_doi(url) -> bool:
    return bool(url) and str(url).startswith("10.")


def _onnx_opset(path: Path) -> int:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return int(next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")))


def _normalised(image, normalization):
    from ..io.normalize import apply_normalization, fit_normalization

    return apply_normalization(image, fit_normalization(image, normalization))


def _training_data(meta, name, citation, url) -> dict:
    given = dict(meta.get("training_data") or {})
    info = {"name": name or given.get("name"), "citation": citation or given.get("citation"),
            "url": url or given.get("url")}  # fmt: skip
    return {k: v for k, v in info.items() if v}


def _description(model, data_info) -> str:
    what = "segments" if model.task == "segment" else "reconstructs (autoencoder)"
    data = f", trained on {data_info['name']}" if data_info.get("name") else ""
    return f"A napari-segnets {model.arch} that {what} 2D electron-microscopy images{data}."


def _config(model, meta, data_info) -> dict:
    keep = ("class_names", "normalization", "history", "parent", "content_hash", "versions", "created")
    cfg = {k: meta.get(k) for k in keep if meta.get(k) is not None}
    cfg.update(arch=model.arch, config=dict(model.config), task=model.task,
               size_multiple=int(model.size_multiple), halo=int(model.halo))  # fmt: skip
    if data_info:
        cfg["training_data"] = data_info
    return _jsonable(cfg)


def _jsonable(obj):
    import json

    return json.loads(json.dumps(obj, default=str))


def _readme(title, model, meta, data_info, halo, mult, side) -> str:
    lines = [f"# {title}", "", _description(model, data_info), "",
             "Exported by napari-segnets from its checkpoint format; the weights come as a PyTorch "
             "state dict (architecture `napari_segnets.models.build` with the kwargs in rdf.yaml), "
             "TorchScript and ONNX.", "",
             f"- input: one greyscale image, y and x any multiple of {mult} from {side}",
             f"- halo: {halo} pixels per side (crop them from each tile's output)",
             f"- normalisation: {meta.get('normalization') or 'percentile 1-99.8 (default)'}",
             f"- content hash of the weights: {meta.get('content_hash')}"]  # fmt: skip
    if data_info:
        lines.append(f"- training data: {data_info.get('name', '')} {data_info.get('citation', '')} "
                     f"{data_info.get('url', '')}".rstrip())  # fmt: skip
    if meta.get("history"):
        last = meta["history"][-1]
        lines.append(f"- training: {len(meta['history'])} epochs; last: {last}")
    return "\n".join(lines) + "\n"


def _environment() -> str:
    return ("name: napari-segnets\nchannels: [conda-forge]\ndependencies:\n  - python>=3.10\n"
            "  - pip\n  - pip:\n    - napari-segnets\n")  # fmt: skip


def _validate(path: Path) -> None:
    """Check ``path`` with bioimageio.spec (format only: no weights are run); skip when absent."""
    try:
        from bioimageio.spec import ValidationContext, load_description
    except ImportError:
        return
    with ValidationContext(perform_io_checks=True, raise_errors=False):
        descr = load_description(path, perform_io_checks=True)
    summary = descr.validation_summary
    if summary.status == "failed":
        errors = "; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in summary.errors[:3])
        raise SegnetsError(f"The package written is not a valid zoo model ({errors}); please report this.")


def export_package_iter(checkpoint, out, **kwargs):
    """:func:`export_package` as a progress generator (for the GUI's worker thread); returns the path.

    The export itself is one step (tracing, ONNX export and validation take seconds to a minute):
    closing the generator before it starts skips it; after that it runs to the end.
    """
    from ..progress import Progress

    yield Progress("export", 0, 1, f"exporting {Path(out).name} (TorchScript, ONNX, test tensors)...")
    path = export_package(checkpoint, out, **kwargs)
    yield Progress("export", 1, 1, f"exported {path.name}")
    return path
