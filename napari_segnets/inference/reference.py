"""The untiled reference: the whole (mirror-padded) image in one forward pass, for checks."""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .engine import Runner, amp_dtype, prepared_model
from .output import Finisher, default_dtype, output_shape
from .predict import _activation, _fit, check_image, check_model
from .tiling import align_up


def predict_untiled(
    model,
    image,
    *,
    output="probabilities",
    threshold=0.5,
    normalization=None,
    device="cpu",
    amp=False,
    halo=None,
    strided="upsample",
):
    """Predict each slice in a single forward pass: the definition tiled prediction must match.

    For a slice of ``H x W`` pixels: mirror-pad it (``numpy.pad(..., mode="reflect")``) by
    ``halo`` on the top/left and by ``halo`` plus whatever reaches a multiple of
    ``model.size_multiple`` on the bottom/right, run one forward pass on the whole padded
    slice, and crop ``[halo:halo + H, halo:halo + W]``. With ``strided="shift_and_stitch"``
    the padded slice is shifted by ``coarse_stride // 2`` and extended by ``coarse_stride - 1``
    for the stitched passes. Memory grows with the slice: use it on small images only.
    Arguments as in :func:`napari_segnets.inference.predict`.
    """
    from ..devices import resolve_device
    from ..io.normalize import apply_normalization

    image = check_image(image)
    stitch = check_model(model, output, strided)
    m = int(model.size_multiple)
    if halo is None:
        halo = align_up(int(model.halo) + stitch, m)
    if halo % m:
        raise InputError(f"The halo ({halo}) must be a multiple of {m}.")
    dev = resolve_device(device)
    channels = int(model.out_channels)
    out = np.zeros(
        output_shape(image.shape, channels, output), dtype=default_dtype(output, channels)
    )
    fitted = _fit(image, normalization)
    is3d = len(image.shape) == 3
    fin = Finisher(out, output, channels=channels, threshold=threshold, fitted=fitted, is3d=is3d)
    hh, ww = image.shape[-2:]
    py, px = align_up(hh, m) + 2 * halo, align_up(ww, m) + 2 * halo
    shift, extra = (stitch // 2, stitch - 1) if stitch else (0, 0)
    pad = (
        (halo + shift, py - hh - halo + extra - shift),
        (halo + shift, px - ww - halo + extra - shift),
    )
    with prepared_model(model, dev) as net:
        run = Runner(
            net, dev, amp=amp_dtype(dev, amp), activation=_activation(model, output), stitch=stitch
        )
        for z in range(image.shape[0] if is3d else 1):
            plane = np.asarray(image[z] if is3d else image)
            x = np.pad(apply_normalization(plane, fitted), pad, mode="reflect")
            y = run.fetch(run.launch(x[None, None], (py, px)))[0]
            fin.write(z if is3d else None, 0, hh, y[:, halo : halo + hh, halo : halo + ww])
    return out
