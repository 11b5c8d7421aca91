"""Running a model on batches of tiles: device, AMP, channels_last, TTA, shift-and-stitch.

torch is imported inside functions: importing :mod:`napari_segnets.inference` stays cheap.
The CUDA paths (autocast, pinned host memory, non-blocking copies overlapped with the host's
work on the next batch, tile size from free memory, out-of-memory retry) could not be run on
the project's CPU-only machine; they follow the documented torch APIs.
"""

from __future__ import annotations

import contextlib

import numpy as np

from ..errors import InputError
from .tiling import align_down, align_up

CPU_CORE = 512  # default kept pixels per tile side on the CPU; halo is added on top


def is_oom(exc: BaseException) -> bool:
    """True for a device out-of-memory error (CUDA or other accelerators)."""
    import torch

    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    return oom is not None and isinstance(exc, oom)


def amp_dtype(device, amp):
    """The autocast dtype: ``None`` (float32) or ``torch.bfloat16``/``torch.float16``.

    ``amp=None`` means bf16 on CUDA GPUs that support it (fp16 otherwise) and float32 on
    the CPU, where reduced precision is slower on most machines and breaks exactness.
    """
    import torch

    if amp is None:
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if amp is False:
        return None
    if amp is True:
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            return torch.float16
        return torch.bfloat16
    names = {
        "bf16": torch.bfloat16,
        "bfloat16": torch.bfloat16,
        "fp16": torch.float16,
        "float16": torch.float16,
    }
    if amp in names:
        return names[amp]
    raise InputError(
        f"Unknown amp setting {amp!r}: use None (auto), True, False, 'bf16' or 'fp16'."
    )


def fold_batchnorm(model):
    """Fold every eval-mode ``BatchNorm2d`` that follows a ``Conv2d`` in a ``Sequential`` into it.

    The same function in one convolution instead of a convolution plus a pass over the feature map;
    changes outputs only by float rounding. Works in place: call it on a copy.
    """
    import torch
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = 0
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for first, second in zip(names, names[1:]):
            conv, bn = module._modules[first], module._modules[second]
            if (
                type(conv) is nn.Conv2d
                and type(bn) is nn.BatchNorm2d
                and bn.track_running_stats
                and conv.out_channels == bn.num_features
            ):
                with torch.no_grad():
                    module._modules[first] = fuse_conv_bn_eval(conv.eval(), bn.eval())
                module._modules[second] = nn.Identity()
                folded += 1
    return folded


@contextlib.contextmanager
def prepared_model(model, device, channels_last: bool = True, fold: bool = True):
    """Yield an inference copy of ``model``: eval mode, on ``device``, batch norm folded, channels_last.

    The caller's model is never modified (its mode, device, memory format and weights stay as they
    were); the copy is dropped afterwards.
    """
    import copy

    import torch

    net = copy.deepcopy(model).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    if fold:
        fold_batchnorm(net)
    net.to(device)
    if channels_last:
        net.to(memory_format=torch.channels_last)
    yield net


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


def default_tile(model, device, *, halo: int, multiple: int, batch_size: int):
    """A tile (window) size: ``512 + 2 * halo`` on the CPU; on CUDA, sized to the free memory.

    On CUDA a probe forward at a small size measures the activation bytes per pixel; the
    tile is then the largest that fits ``batch_size`` tiles in 60% of the free memory
    (capped at 4096 + 2 * halo).
    """
    import torch

    floor = 2 * halo + multiple
    if device.type != "cuda":
        return align_up(CPU_CORE + 2 * halo, multiple)
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
        return align_up(floor, multiple)
    side = int((0.6 * free / (max(1, batch_size) * per_pixel)) ** 0.5)
    side = min(side, 4096 + 2 * halo)
    return max(align_up(floor, multiple), align_down(side, multiple))


def default_batch_size(device) -> int:
    """Tiles per forward: 4 on CUDA (keeps the GPU busy while the host prepares tiles), else 1.

    On the CPU a bigger batch only adds memory: the convolutions already use every core.
    """
    return 4 if device.type == "cuda" else 1
