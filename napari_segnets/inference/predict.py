"""Tiled sliding-window prediction: :func:`predict_iter` (a progress generator) and :func:`predict`."""

from __future__ import annotations

from collections import deque

import numpy as np

from ..errors import InputError, SegnetsError
from ..progress import Progress, drive
from .engine import (
    CPU_CORE,
    Runner,
    amp_dtype,
    default_batch_size,
    default_tile,
    is_oom,
    prepared_model,
)
from .output import OUTPUTS, Band, Finisher, check_out, default_dtype, output_shape
from .tiling import BLENDS, align_up, axis_weights, make_plan, read_window

STRIDED = ("upsample", "shift_and_stitch")


def check_image(image):
    """Validate a 2D ``(Y, X)`` or 3D ``(Z, Y, X)`` single-channel image; return it array-like."""
    if not hasattr(image, "shape") or not hasattr(image, "dtype"):
        image = np.asarray(image)
    shape = tuple(int(s) for s in image.shape)
    if len(shape) not in (2, 3):
        raise InputError(
            f"Expected a 2D (Y, X) image or a 3D (Z, Y, X) stack but got {len(shape)} dimensions "
            f"{shape}: select one channel/time point first."
        )
    if len(shape) == 3 and shape[-1] in (3, 4) and min(shape[:2]) > 4 * shape[-1]:
        raise InputError(
            f"The image of shape {shape} looks like RGB(A) colour (last axis of {shape[-1]}): "
            "convert it to greyscale first (e.g. skimage.color.rgb2gray)."
        )
    if min(shape) == 0:
        raise InputError(f"The image is empty (shape {shape}); load an image with pixels in it.")
    kind = np.dtype(image.dtype).kind
    if kind not in "biuf":
        raise InputError(
            f"Images of dtype {image.dtype} are not supported: use integers or floats."
        )
    if kind == "f" and isinstance(image, np.ndarray):
        for z in range(shape[0] if len(shape) == 3 else 1):
            plane = image[z] if len(shape) == 3 else image
            if np.isnan(plane).any():
                raise InputError(_nan_message(z if len(shape) == 3 else None))
    return image


def _nan_message(z) -> str:
    where = f" (slice {z})" if z is not None else ""
    return f"The image contains NaN values{where}: fill or mask them before predicting."


def check_model(model, output: str, strided: str):
    """The model's tiling attributes, refusing models or outputs that cannot work together."""
    for attr in ("size_multiple", "halo", "out_channels", "task"):
        if not hasattr(model, attr):
            raise InputError(
                f"The model has no '{attr}' attribute: build it with napari_segnets.models.build "
                "or load it with napari_segnets.checkpoints.load."
            )
    if output not in OUTPUTS:
        raise InputError(f"Unknown output {output!r}: use one of {', '.join(OUTPUTS)}.")
    if model.task == "autoencode" and output in ("probabilities", "labels"):
        raise InputError(
            f"This model is an autoencoder and cannot give {output}: use output='reconstruction'."
        )
    if model.task == "segment" and output == "reconstruction":
        raise InputError(
            "This model segments and cannot give a reconstruction: use output='probabilities' or 'labels'."
        )
    if getattr(model, "in_channels", 1) != 1:
        raise InputError(
            f"The model takes {model.in_channels} input channels but images here have one: "
            "use a single-channel model."
        )
    if strided not in STRIDED:
        raise InputError(f"Unknown strided mode {strided!r}: use 'upsample' or 'shift_and_stitch'.")
    if strided == "shift_and_stitch":
        if not hasattr(model, "forward_coarse") or not hasattr(model, "coarse_stride"):
            raise InputError(
                "shift_and_stitch needs a strided model with forward_coarse (an FCN); "
                "use strided='upsample' for this model."
            )
        return int(model.coarse_stride)
    return 0


def _fit(image, normalization):
    from ..io.normalize import fit_normalization, normalization_spec

    if normalization is None:
        normalization = normalization_spec()
    if isinstance(normalization, str):
        normalization = normalization_spec(normalization)
    spec = dict(normalization)
    if ("vmin" in spec and "vmax" in spec) or ("mean" in spec and "std" in spec):  # fitted or fixed
        return spec
    return fit_normalization(image, spec)


def _activation(model, output):
    if output in ("logits", "reconstruction"):
        return None
    declared = getattr(model, "output_activation", None)  # zoo models apply their own
    if declared is not None:
        return None if declared == "none" else declared
    return "sigmoid" if model.out_channels == 1 else "softmax"


def predict_iter(
    model,
    image,
    *,
    tile=None,
    overlap=None,
    batch_size: int | None = None,
    device="auto",
    amp=None,
    blend: str = "gaussian",
    tta: bool = False,
    output: str = "probabilities",
    threshold: float = 0.5,
    normalization=None,
    out=None,
    halo: int | None = None,
    strided: str = "upsample",
):
    """Predict a 2D image or a 3D stack (slice by slice) tile by tile, yielding progress.

    Tiles are windows of ``tile`` pixels whose outer ``halo`` on each side is context only;
    their cores start at multiples of ``model.size_multiple``; pixels beyond the image borders
    are mirrored (``"reflect"``). Tiles are read from ``image`` one by one (numpy, dask, Zarr,
    HDF5 stay lazy), normalised, run in batches, blended and written to ``out`` row band by
    row band. With ``halo >= model.halo`` the result equals :func:`predict_untiled` (to float
    rounding) for every blend, since every kept pixel sees its whole receptive field.

    Parameters
    ----------
    model : torch.nn.Module
        A model from :mod:`napari_segnets.models` (``size_multiple``, ``halo``,
        ``out_channels``, ``task``). Put back in its train/eval mode and device afterwards.
    image : array-like
        ``(Y, X)`` or ``(Z, Y, X)``, one channel: numpy, dask, Zarr, HDF5 ...
    tile : int or (int, int), optional
        Window size per side including the halos; a multiple of ``model.size_multiple``.
        Default (:func:`~napari_segnets.inference.engine.default_tile`): up to 1344 pixels on the CPU
        for a 16-wide net (less for wider ones), sized to the free memory on CUDA, then balanced
        so the windows cover the slice with the least padding.
    overlap : float or int, optional
        Window overlap, as a fraction of the tile or in pixels; at least ``2 * halo``
        (the default for ``blend="none"``; otherwise also at least a quarter tile).
    batch_size : int, optional
        Tiles per forward pass (default 1 on the CPU, 4 on CUDA).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
    amp : None, bool or {"bf16", "fp16"}
        Autocast; default bf16 (fp16 on older GPUs) on CUDA and float32 elsewhere.
    blend : {"gaussian", "linear", "none"}
        Weights for overlapping cores: a Gaussian with sigma = tile / 8 (nnU-Net/MONAI),
        linear ramps across the overlap, or plain halo-to-halo crops.
    tta : bool
        Average the 8 flips/quarter turns of each tile (8 times slower).
    output : {"probabilities", "labels", "reconstruction", "logits"}
        Sigmoid (one class) or softmax probabilities; labels by ``threshold`` (one class) or
        argmax; autoencoder reconstructions in the input's intensity range; raw logits.
    threshold : float
        Foreground threshold for one-class labels.
    normalization : dict or str, optional
        A spec from :mod:`napari_segnets.io.normalize` (fitted on ``image`` unless it already
        has ``vmin``/``vmax``); default: percentile 1-99.8.
    out : array-like, optional
        Where to write, e.g. a Zarr array from :func:`create_output` (uint8 probabilities are
        stored x255). Default: a new numpy array.
    halo : int, optional
        Context per side (default ``model.halo``; plus the coarse stride for shift-and-stitch).
        Smaller than ``model.halo`` is allowed but no longer exact.
    strided : {"upsample", "shift_and_stitch"}
        For FCNs: the model's own upsampling, or the exact dense map by shift-and-stitch
        (``coarse_stride**2`` coarse passes per tile).

    Yields
    ------
    Progress
        One per batch (stage ``"predict"``, done/total in tiles). Closing the generator stops
        between batches; ``out`` then holds the rows finished so far.

    Returns
    -------
    array
        ``out`` (or a new numpy array) shaped like the image, with a leading class axis for
        multi-class probabilities/logits.
    """
    from ..devices import describe_device, resolve_device

    image = check_image(image)
    stitch = check_model(model, output, strided)
    if tta and stitch:
        raise InputError("tta cannot be combined with shift_and_stitch: choose one of them.")
    if blend not in BLENDS:
        raise InputError(f"Unknown blend {blend!r}: use 'gaussian', 'linear' or 'none'.")
    m = int(model.size_multiple)
    if halo is None:
        halo = align_up(int(model.halo) + stitch, m)
    is3d = len(image.shape) == 3
    slices = image.shape[0] if is3d else 1
    hw = tuple(int(s) for s in image.shape[-2:])
    dev = resolve_device(device)
    amp_t = amp_dtype(dev, amp)
    if batch_size is None:
        batch_size = default_batch_size(dev)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}.")
    # Validate the tiling before any expensive work (fitting, allocating).
    make_plan(
        hw,
        tile=tile if tile is not None else align_up(CPU_CORE + 2 * halo, m),
        halo=halo,
        multiple=m,
        overlap=overlap,
        blend=blend,
    )
    channels = int(model.out_channels)
    shape = output_shape(image.shape, channels, output)
    if out is None:
        out = np.zeros(shape, dtype=default_dtype(output, channels))
    else:
        check_out(out, shape, output)
    fitted = _fit(image, normalization)
    finisher = Finisher(
        out, output, channels=channels, threshold=threshold, fitted=fitted, is3d=is3d
    )

    with prepared_model(model, dev) as net:
        runner = Runner(
            net, dev, amp=amp_t, activation=_activation(model, output), tta=tta, stitch=stitch
        )
        if tile is None:
            tile = default_tile(net, dev, halo=halo, multiple=m, batch_size=batch_size, shape=hw,
                                overlap=overlap, blend=blend)
        first_z = 0
        yield Progress("predict", 0, None, f"on {describe_device(dev)}")
        while True:
            plan = make_plan(hw, tile=tile, halo=halo, multiple=m, overlap=overlap, blend=blend)
            state = {"z_done": first_z}
            try:
                result = yield from _run(
                    image,
                    plan,
                    runner,
                    finisher,
                    fitted,
                    range(first_z, slices),
                    batch_size=batch_size,
                    blend=blend,
                    stitch=stitch,
                    state=state,
                )
                return result
            except Exception as exc:
                if not is_oom(exc):
                    raise
                smaller = align_up(max(plan.core) // 2, m) + 2 * halo
                if smaller >= max(plan.tile):
                    raise SegnetsError(
                        f"The device ran out of memory even with {max(plan.tile)}-pixel tiles: use a "
                        "smaller batch_size, amp=True, or device='cpu'."
                    ) from exc
                _free_cuda()
                first_z = state["z_done"]
                yield Progress(
                    "predict",
                    0,
                    None,
                    f"Out of memory on {describe_device(dev)} with {max(plan.tile)}-pixel "
                    f"tiles: retrying with {smaller}-pixel tiles from slice {first_z}.",
                )
                tile = smaller


def _free_cuda():
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _run(image, plan, runner, finisher, fitted, zs, *, batch_size, blend, stitch, state):
    """Generator over batches for the slices ``zs`` with one plan; returns ``finisher.out``."""
    from ..io.normalize import apply_normalization

    is3d = len(image.shape) == 3
    h = plan.halo
    shift = stitch // 2  # centre the stitched cells on their pixels
    extra = stitch - 1 if stitch else 0
    ty, tx = plan.tile
    wy = axis_weights(ty, h, plan.overlap[0], blend)
    wx = axis_weights(tx, h, plan.overlap[1], blend)
    zs = list(zs)
    total = len(zs) * len(plan)
    bands: dict[int, Band] = {}

    def band(z):
        if z not in bands:
            for old in [k for k in bands if k < z]:  # raster order: earlier slices are done
                bands.pop(old).flush()
                state["z_done"] = old + 1
            bands[z] = Band(
                plan,
                finisher.channels,
                wy,
                wx,
                lambda r0, r1, v, z=z: finisher.write(z if is3d else None, r0, r1, v),
            )
        return bands[z]

    def read(z, cy, cx):
        y0, x0 = cy - h - shift, cx - h - shift
        win = read_window(image, z if is3d else None, y0, y0 + ty + extra, x0, x0 + tx + extra)
        if win.dtype.kind == "f" and np.isnan(win).any():
            raise InputError(_nan_message(z if is3d else None))
        return apply_normalization(win, fitted)

    def tiles():
        for z in zs:
            for cy, cx in plan.positions():
                yield z, cy, cx

    cuda = runner.cuda
    queue: deque = deque()
    done = 0
    batch = []
    stream = tiles()
    while True:
        item = next(stream, None)
        if item is not None:
            batch.append(item)
            if len(batch) < batch_size:
                continue
        if batch:
            x = np.stack([read(*t) for t in batch])[:, None]
            queue.append((batch, runner.launch(x, plan.tile)))
            batch = []
        # On CUDA keep one batch in flight so reading the next tiles overlaps the GPU's work;
        # on the CPU finish each batch first so a cancel never leaves work running.
        while queue and (len(queue) > (1 if cuda else 0) or item is None):
            items, handle = queue.popleft()
            y = runner.fetch(handle)
            for (z, cy, cx), yt in zip(items, y):
                band(z).add(yt, cy, cx)
            done += len(items)
            z = items[-1][0]
            msg = (
                f"slice {z + 1}/{zs[-1] + 1}, tile {done}/{total}"
                if is3d
                else f"tile {done}/{total}"
            )
            yield Progress("predict", done, total, msg, {"slice": z, "tile": plan.tile})
        if item is None:
            break
    for z in sorted(bands):
        bands.pop(z).flush()
        state["z_done"] = z + 1
    return finisher.out


def predict(model, image, **kwargs):
    """Predict ``image`` with ``model``; the plain twin of :func:`predict_iter` (same arguments)."""
    return drive(predict_iter(model, image, **kwargs))
