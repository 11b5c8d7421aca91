"""Running a model on batches of tiles: device, AMP, channels_last, TTA, shift-and-stitch.

torch is imported inside functions: importing :mod:`napari_segnets.inference` stays cheap.
The CUDA paths (autocast, pinned host memory, non-blocking copies overlapped with the host's
work on the next batch, tile size from free memory, out-of-memory retry) could not be run on
the project's CPU-only machine; they follow the documented torch APIs.
"""

from __future__ import annotations

import contextlib
import functools

import numpy as np

from ..errors import InputError
from .prepared import fold_batchnorm, prepared_model  # noqa: F401  (their home before the cache)
from .tiling import align_down, align_up

CPU_CORE = 512  # the smallest default core (kept pixels per side) on the CPU; halo is added on top
# Window pixels for a net 16 channels wide at full resolution on the CPU, scaled down for wider nets.
# Measured on the project's 2-core box: U-Net-16 runs 1.38 MP/s on windows of 736 to 1536 pixels
# alike, so bigger windows only cut the halo's share; predicting an 8192 x 8192 slice peaked at
# 1.31 GiB resident with 1536-pixel windows, so the default stops at 1344 (2048-pixel slices still
# take 2 x 2 windows of 1312 for U-Net-16 and 3 x 3 of 1280 for FCN-8s).
CPU_TILE_PIXELS = 1344 * 1344


def is_oom(exc: BaseException) -> bool:
    """True for a device out-of-memory error (CUDA or other accelerators)."""
    import torch

    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    return oom is not None and isinstance(exc, oom)


def amp_dtype(device, amp):
    """The autocast dtype (None = float32): the project's one decision,
    :func:`napari_segnets.devices.autocast_dtype` (bf16 on GPUs and on CPUs with native bf16)."""
    from ..devices import autocast_dtype

    return autocast_dtype(device, amp)


def dihedral(x, k: int, flip: bool):
    """Rotate the last two axes by ``k`` quarter turns after an optional left-right flip."""
    import torch

    if flip:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, k, dims=(-2, -1)) if k else x


def undo_dihedral(y, k: int, flip: bool):
    """The inverse of :func:`dihedral`."""
    import torch

    if k:
        y = torch.rot90(y, -k, dims=(-2, -1))
    return torch.flip(y, dims=(-1,)) if flip else y


def shift_and_stitch(coarse, x, stride: int, size: tuple[int, int]):
    """Dense output of a strided net by running it at every offset inside the stride.

    ``x`` is ``(N, C, size_y + stride - 1, size_x + stride - 1)`` (or larger); the window
    ``x[..., dy:dy + size_y, dx:dx + size_x]`` goes through ``coarse`` (output stride ``stride``)
    and its cell ``(i, j)`` becomes dense pixel ``(stride * i + dy, stride * j + dx)``. The result
    equals evaluating the same net with unit-stride pooling and correspondingly dilated later
    layers ("filter rarefaction", Long et al. 2015), at ``stride**2`` times the coarse cost.
    """
    import torch

    s = int(stride)
    sy, sx = size
    out = None
    for dy in range(s):
        for dx in range(s):
            y = coarse(x[:, :, dy : dy + sy, dx : dx + sx])
            if out is None:
                n, k, hy, hx = y.shape
                out = torch.empty((n, k, hy * s, hx * s), dtype=y.dtype, device=y.device)
            out[:, :, dy::s, dx::s] = y
    return out


class Runner:
    """Forward passes over batches of (normalised) tiles, with the activation applied.

    Parameters
    ----------
    model : torch.nn.Module
        Already on ``device`` and in eval mode (see :func:`prepared_model`).
    device : torch.device
    amp : torch.dtype or None
        Autocast dtype.
    activation : {"sigmoid", "softmax", None}
    tta : bool
        Average the 8 flips/quarter turns (undone before averaging).
    stitch : int
        0 for the model's own forward; the coarse stride for shift-and-stitch.
    channels_last : bool
    """

    def __init__(
        self, model, device, *, amp=None, activation=None, tta=False, stitch=0, channels_last=True
    ):
        self.model = model
        self.device = device
        self.amp = amp
        self.activation = activation
        self.tta = tta
        self.stitch = int(stitch)
        self.channels_last = channels_last
        self.cuda = device.type == "cuda"
        self.calls = 0

    def _forward(self, x, size):
        if self.stitch:
            return shift_and_stitch(self.model.forward_coarse, x, self.stitch, size)
        return self.model(x)

    def _activate(self, y):
        import torch

        y = y.float()
        if self.activation == "sigmoid":
            return torch.sigmoid(y)
        if self.activation == "softmax":
            return torch.softmax(y, dim=1)
        return y

    def launch(self, batch: np.ndarray, size: tuple[int, int]):
        """Start the forward pass of ``batch`` ``(N, C, h, w)`` float32; returns a handle for :meth:`fetch`.

        On CUDA this returns as soon as the work is queued, so the host can read the next
        tiles while the GPU computes; on the CPU the work is done when it returns.
        """
        import torch

        self.calls += 1
        x = torch.from_numpy(batch)
        if self.cuda:
            x = x.pin_memory().to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        ctx = (
            torch.autocast(device_type=self.device.type, dtype=self.amp)
            if self.amp is not None
            else contextlib.nullcontext()
        )
        with torch.inference_mode(), ctx:
            if self.tta:
                y = None
                for k in range(4):
                    for flip in (False, True):
                        t = dihedral(x, k, flip)
                        part = undo_dihedral(
                            self._activate(self._forward(t, t.shape[-2:])), k, flip
                        )
                        y = part if y is None else y + part
                y = y / 8.0
            else:
                y = self._activate(self._forward(x, size))
            y = y.contiguous()
            if not self.cuda:
                return y.numpy()
            # Half the bytes over the bus when the model ran in reduced precision.
            y = y.to(torch.float16) if self.amp is torch.float16 else y
            host = torch.empty(y.shape, dtype=y.dtype, pin_memory=True)
            host.copy_(y, non_blocking=True)
            done = torch.cuda.Event()
            done.record()
        return host, done

    def fetch(self, handle) -> np.ndarray:
        """The float32 result of a :meth:`launch` (waits for the device when needed)."""
        if isinstance(handle, np.ndarray):
            return handle
        host, done = handle
        done.synchronize()
        return host.float().numpy()


def full_resolution_width(model) -> int:
    """Channels of the model's first convolution: the width its full-resolution activations have."""
    from torch import nn

    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            return int(module.out_channels)
    return 16


@functools.lru_cache(maxsize=256)  # pure; up to ~20 ms for nets whose size multiple is 1
def balanced_tile(extent: int, *, halo: int, multiple: int, max_tile: int, overlap=None,
                  blend: str = "gaussian") -> int:
    """The window size along one axis that computes the fewest pixels for ``extent`` pixels.

    Among windows from ``2 * halo + multiple`` to ``max_tile`` (multiples of ``multiple``), the
    one minimising windows x size along the axis, counted with the very plan
    :func:`~napari_segnets.inference.tiling.make_plan` makes (same overlap rule, same blend);
    ties go to the smaller window. Example: FCN-8s (halo 288) on 2048 pixels, windows up to 1536,
    no blending: 3 windows of 1280 (core 704) instead of 4 of 1088 (a fixed core of 512), 3840
    instead of 4352 pixels per axis: 0.78x the work per slice.
    """
    from .tiling import make_plan

    floor = 2 * halo + multiple
    top = max(floor, align_down(max(max_tile, floor), multiple))
    best = None
    for tile in range(align_up(floor, multiple), top + 1, multiple):
        try:
            plan = make_plan((int(extent), 1), tile=(tile, floor), halo=halo, multiple=multiple,
                             overlap=overlap, blend=blend)
        except InputError:  # e.g. an explicit overlap that leaves no step at this size
            continue
        cost = len(plan.ys) * plan.tile[0]
        if best is None or cost < best[0]:
            best = (cost, plan.tile[0])
    if best is None:
        return top
    return best[1]


def default_tile(model, device, *, halo: int, multiple: int, batch_size: int, shape=None,
                 overlap=None, blend: str = "gaussian"):
    """A tile (window) size, ``(ty, tx)`` when ``shape`` is given, else one side.

    The largest window allowed is, on the CPU, ``CPU_TILE_PIXELS`` scaled by 16 / the model's
    full-resolution width (1344 pixels for U-Net-16, 672 for the 64-wide original U-Net); on
    CUDA, what fits ``batch_size`` tiles in 60% of the free memory,
    measured by a probe forward (capped at 4096 + 2 * halo). Given the slice ``shape`` (and the
    ``overlap``/``blend`` the plan will use), each axis then gets the window up to that maximum
    that computes the fewest pixels (:func:`balanced_tile`), so no window computes mostly padding.
    """
    import torch

    floor = 2 * halo + multiple
    cap = getattr(model, "max_tile", None)  # fixed-size zoo models
    if cap:
        return _balance(max(floor, align_down(int(cap), multiple)), shape, halo, multiple, overlap, blend)
    if device.type != "cuda":
        width = max(1, full_resolution_width(model))
        side = int((CPU_TILE_PIXELS * min(1.0, 16.0 / width)) ** 0.5)
        side = max(align_up(CPU_CORE + 2 * halo, multiple) if width <= 16 else floor,
                   align_down(side, multiple))
        return _balance(side, shape, halo, multiple, overlap, blend)
    probe = max(align_up(256, multiple), floor)
    try:
        torch.cuda.empty_cache()
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        with torch.inference_mode(), torch.autocast("cuda", dtype=amp_dtype(device, None)):
            model(torch.zeros((1, getattr(model, "in_channels", 1), probe, probe), device=device))
        torch.cuda.synchronize(device)
        per_pixel = max(1.0, (torch.cuda.max_memory_allocated(device) - base) / probe**2)
        free, _total = torch.cuda.mem_get_info(device)
    except Exception as exc:  # the probe itself ran out of memory: start small
        if not is_oom(exc):
            raise
        torch.cuda.empty_cache()
        return _balance(align_up(floor, multiple), shape, halo, multiple, overlap, blend)
    side = int((0.6 * free / (max(1, batch_size) * per_pixel)) ** 0.5)
    side = min(side, 4096 + 2 * halo)
    return _balance(max(align_up(floor, multiple), align_down(side, multiple)), shape, halo, multiple,
                    overlap, blend)


def _balance(side: int, shape, halo: int, multiple: int, overlap, blend):
    if shape is None:
        return side
    overlaps = overlap if isinstance(overlap, (tuple, list)) else (overlap, overlap)
    return tuple(balanced_tile(n, halo=halo, multiple=multiple, max_tile=side, overlap=ov, blend=blend)
                 for n, ov in zip(shape, overlaps))


def default_batch_size(device) -> int:
    """Tiles per forward: 4 on CUDA (keeps the GPU busy while the host prepares tiles), else 1.

    On the CPU a bigger batch only adds memory: the convolutions already use every core.
    """
    return 4 if device.type == "cuda" else 1
