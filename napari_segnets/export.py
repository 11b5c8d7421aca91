"""Export models for use outside napari-segnets: TorchScript and ONNX."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

from .errors import InputError
from .io.atomic import atomic_path


def _example(model, tile: int, batch: int = 1):
    import torch

    m = getattr(model, "size_multiple", 1)
    if not isinstance(tile, int) or tile < 1 or tile % m:
        raise InputError(f"tile must be a positive multiple of {m} for {model.arch}, got {tile!r}.")
    return torch.zeros(batch, model.in_channels, tile, tile)


def _cpu_eval_copy(model):
    if not hasattr(model, "config"):
        raise InputError("Only napari-segnets models (made by models.build) can be exported.")
    return copy.deepcopy(model).cpu().eval()


def export_torchscript(model, path, tile: int = 256) -> Path:
    """Trace ``model`` (eval mode, CPU) to a TorchScript file; atomic.

    The trace takes any batch size and any H, W that are multiples of
    ``model.size_multiple`` (the traced graph does not check them).

    Parameters
    ----------
    model : torch.nn.Module
        A model from :func:`napari_segnets.models.build` (left unchanged).
    path : path-like
        Destination, e.g. ``model.pt``; load it with ``torch.jit.load``.
    tile : int
        Side of the example input used for tracing.
    """
    import torch

    m = _cpu_eval_copy(model)
    example = _example(m, tile)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated in favour of torch.export
        with torch.no_grad():
            traced = torch.jit.trace(m, example)
        with atomic_path(path) as tmp:
            torch.jit.save(traced, str(tmp))
    return Path(path)


def export_onnx(
    model, path, tile: int = 256, *, dynamic: bool = True, opset: int | None = None
) -> Path:
    """Export ``model`` (eval mode, CPU) to ONNX with the torch.export-based exporter; atomic.

    Parameters
    ----------
    model : torch.nn.Module
        A model from :func:`napari_segnets.models.build` (left unchanged).
    path : path-like
        Destination, e.g. ``model.onnx``. Input ``"image"`` (N, C, H, W) float32, output
        ``"output"``.
    tile : int
        Side of the example input; with ``dynamic=False`` the only size accepted.
    dynamic : bool
        Allow any batch and any H, W that are multiples of ``model.size_multiple`` (up to 8192).
    opset : int, optional
        ONNX opset version (the exporter's default when omitted).
    """
    import torch
    from torch.export import Dim

    m = _cpu_eval_copy(model)
    example = _example(m, tile)
    shapes = None
    if dynamic:
        k = m.size_multiple
        size = {"min": 1, "max": 8192 // k}
        h = Dim("h", **size) if k == 1 else k * Dim("h", **size)
        w = Dim("w", **size) if k == 1 else k * Dim("w", **size)
        shapes = {"x": {0: Dim("n", min=1, max=1024), 2: h, 3: w}}
    kwargs = {"opset_version": opset} if opset is not None else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with atomic_path(path) as tmp:
            torch.onnx.export(
                m,
                (example,),
                str(tmp),
                input_names=["image"],
                output_names=["output"],
                dynamo=True,
                dynamic_shapes=shapes,
                external_data=False,
                verbose=False,
                **kwargs,
            )
    return Path(path)
