"""The plan of a chunked volume prediction, and the task that predicts one chunk (runs on workers)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import InputError

DEFAULT_CHUNK_YX = 2048
OUTPUTS_BY_TASK = {"segment": ("labels", "probabilities"), "autoencode": ("reconstruction",)}

# Per-process cache on workers: loading a checkpoint or opening a lazy input once per
# worker, not once per chunk. Keys include the file's size and mtime so a rewritten
# checkpoint is never served stale.
_CACHE: dict[tuple, Any] = {}


def chunk_grid(shape3, chunks3) -> list[tuple[int, int, int, int, int, int]]:
    """Boxes ``(z0, z1, y0, y1, x0, x1)`` tiling ``shape3`` with ``chunks3`` (C order)."""
    (nz, ny, nx), (cz, cy, cx) = shape3, chunks3
    return [
        (z, min(z + cz, nz), y, min(y + cy, ny), x, min(x + cx, nx))
        for z in range(0, nz, cz)
        for y in range(0, ny, cy)
        for x in range(0, nx, cx)
    ]


def _round_up(value: int, multiple: int) -> int:
    return -(-int(value) // multiple) * multiple


def plan_chunks(
    model, meta, image, *, checkpoint, input, key, output, chunks, halo, device, predict_options, slices=None
) -> dict:
    """Everything a worker needs to predict any chunk, as a JSON-serialisable dict.

    ``slices`` (``(start, stop)``) predicts only those slices of a stack; intensities are
    still normalised as for the whole stack, so they match a prediction of everything.
    """
    from ..io.normalize import fit_normalization, normalization_spec

    task = model.task  # checkpoints.load builds every model with task, size_multiple, halo, out_channels
    allowed = OUTPUTS_BY_TASK[task]
    output = output or allowed[0]
    if output not in allowed:
        what = "an autoencoder" if task == "autoencode" else "a segmentation model"
        raise InputError(
            f"The checkpoint holds {what}, which cannot produce {output!r}; ask for {' or '.join(allowed)}."
        )
    if image.ndim not in (2, 3):
        raise InputError(
            f"The input has {image.ndim} dimensions (shape {tuple(image.shape)}); give a 2D image or a 3D stack."
        )
    if 0 in image.shape:
        raise InputError(f"The input is empty (shape {tuple(image.shape)}); give an image with pixels in it.")
    two_d = image.ndim == 2
    shape3 = (1, *image.shape) if two_d else tuple(int(s) for s in image.shape)
    z_offset = 0
    if slices is not None:
        start, stop = (int(v) for v in slices)
        if two_d:
            raise InputError("A slice range was given but the input is a single 2D image.")
        if not 0 <= start < stop <= shape3[0]:
            raise InputError(
                f"Slices {start}:{stop} do not fit the stack of {shape3[0]}; give 0 <= A < B <= {shape3[0]}."
            )
        shape3, z_offset = (stop - start, *shape3[1:]), start
    multiple = int(model.size_multiple)
    halo = int(model.halo) if halo is None else int(halo)
    if halo < 0:
        raise InputError(f"The halo must be 0 or more pixels, got {halo}.")
    halo = _round_up(halo, multiple)
    chunks3 = _chunk_shape(shape3, chunks, multiple)

    spec = meta.get("normalization") or normalization_spec()
    fitted = fit_normalization(image, spec)
    if fitted.get("mode") in ("none", "meanstd"):
        norm = dict(fitted)
    else:  # fitted once on the whole volume: every chunk maps intensities the same way
        norm = normalization_spec("fixed", vmin=fitted["vmin"], vmax=fitted["vmax"])
        norm.update({k: fitted[k] for k in ("clip", "eps") if k in fitted})  # zoo packages

    out_channels = int(model.out_channels)
    channels = None if output == "labels" or out_channels == 1 else out_channels
    if output == "labels":
        dtype = "uint8" if out_channels <= 255 else "uint16"
    else:
        dtype = "float32"
    # The class axis leads, as in inference.predict's own output for the whole volume.
    axes = ("c" if channels else "") + ("" if two_d else "z") + "yx"
    size = {"z": shape3[0], "c": channels, "y": shape3[1], "x": shape3[2]}
    step = {"z": chunks3[0], "c": channels, "y": chunks3[1], "x": chunks3[2]}
    options = {k: v for k, v in sorted(predict_options.items()) if v is not None}
    ckpt = Path(checkpoint)
    stat = ckpt.stat()
    plan = {
        "checkpoint": str(ckpt),
        "input": str(Path(input)),
        "key": key,
        "two_d": two_d,
        "shape3": list(shape3),
        "z_offset": z_offset,
        "chunks3": list(chunks3),
        "halo": halo,
        "output": output,
        "channels": channels,
        "dtype": dtype,
        "axes": axes,
        "out_shape": [size[a] for a in axes],
        "out_chunks": [step[a] for a in axes],
        "normalization": norm,
        "predict_options": options,
        "device": device,
    }
    plan["fingerprint"] = {
        "checkpoint": meta.get("content_hash") or f"{ckpt.name}:{stat.st_size}:{stat.st_mtime_ns}",
        "input": plan["input"],
        "key": key,
        "input_shape": list(image.shape),
        "input_dtype": str(image.dtype),
        **{k: plan[k] for k in ("output", "z_offset", "halo", "chunks3", "dtype", "out_shape", "normalization", "predict_options")},
    }
    return plan


def _chunk_shape(shape3, chunks, multiple: int) -> tuple[int, int, int]:
    if chunks is None:
        chunks = (1, DEFAULT_CHUNK_YX, DEFAULT_CHUNK_YX)
    chunks = tuple(int(c) for c in chunks)
    if len(chunks) != 3 or min(chunks) < 1:
        raise InputError(f"Chunks must be three positive sizes (z, y, x), got {chunks}.")
    out = [min(chunks[0], shape3[0])]
    for c, n in zip(chunks[1:], shape3[1:]):
        # Chunk origins on the model's stride grid keep strided nets' outputs aligned.
        out.append(n if c >= n else min(n, _round_up(c, multiple)))
    return tuple(out)


def run_chunk(plan: dict, box, index: int, model=None) -> int:
    """Predict one chunk with its halo and write its core into the output store.

    Runs on Dask workers (``model`` None: loaded once per worker) or in the driver.
    Returns ``index`` so the driver can record it as done.
    """
    import numpy as np
    import zarr

    from ..inference import predict

    _set_threads(plan.get("torch_threads"))
    if model is None:
        model = _cached_model(plan["checkpoint"])
    image = _cached_input(plan["input"], plan["key"])
    z0, z1, y0, y1, x0, x1 = box
    nz, ny, nx = plan["shape3"]
    h = plan["halo"]
    ry0, ry1, rx0, rx1 = max(0, y0 - h), min(ny, y1 + h), max(0, x0 - h), min(nx, x1 + h)
    zi0, zi1 = z0 + plan["z_offset"], z1 + plan["z_offset"]
    region = image[ry0:ry1, rx0:rx1][None] if plan["two_d"] else image[zi0:zi1, ry0:ry1, rx0:rx1]
    if hasattr(region, "compute"):
        # Synchronous: a task must not submit more tasks to the cluster it runs on.
        region = region.compute(scheduler="synchronous")
    region = np.asarray(region)
    result = predict(
        model,
        region,
        device=_worker_device(plan["device"]),
        output=plan["output"],
        normalization=plan["normalization"],
        **plan["predict_options"],
    )
    result = np.asarray(result)
    if not plan["channels"] and result.ndim == 4:  # (1, Z, Y, X): a one-channel reconstruction
        result = result[0]
    core = result[..., y0 - ry0 : y1 - ry0, x0 - rx0 : x1 - rx0].astype(plan["dtype"], copy=False)
    out = zarr.open_array(store=plan["store"], mode="r+")
    if plan["two_d"]:  # predicted as one slice: drop the z axis again
        out[..., y0:y1, x0:x1] = core[..., 0, :, :]
    else:
        out[..., z0:z1, y0:y1, x0:x1] = core
    return index


def _set_threads(n) -> None:
    if not n:
        return
    import torch

    if torch.get_num_threads() != int(n):
        torch.set_num_threads(int(n))


def _file_key(path: str) -> tuple:
    st = os.stat(path)
    return (path, st.st_size, st.st_mtime_ns)


def _cached_model(path: str):
    from .. import checkpoints

    key = ("model", *_file_key(path))
    if key not in _CACHE:
        _CACHE.clear()  # one model per worker at a time keeps memory bounded
        _CACHE[key] = checkpoints.load(path, device="cpu")[0]
    return _CACHE[key]


def _cached_input(path: str, key: str | None):
    from ..io import read

    ckey = ("input", *_file_key(path), key)
    if ckey not in _CACHE:
        _CACHE[ckey] = read(path, key=key, lazy=True)[0]
    return _CACHE[ckey]


def _worker_device(device: str):
    """``auto`` on a multi-GPU host gives each Dask worker its own GPU (by worker name)."""
    if device != "auto":
        return device
    import torch

    if not torch.cuda.is_available() or torch.cuda.device_count() < 2:
        return device
    try:
        from distributed import get_worker

        name = get_worker().name
    except (ImportError, ValueError):  # not on a worker: the driver's own default
        return device
    try:
        index = int(str(name).rsplit("-", 1)[-1])
    except ValueError:
        index = sum(map(ord, str(name)))
    return f"cuda:{index % torch.cuda.device_count()}"
