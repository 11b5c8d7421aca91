"""Small building blocks shared by the model families, and the common model base class."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import InputError


def require(condition: bool, message: str) -> None:
    """Raise :class:`InputError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise InputError(message)


def widths(base: float, multipliers) -> list[int]:
    """Channel widths ``round(base * m)`` (at least 1) for each multiplier."""
    return [max(1, int(round(base * m))) for m in multipliers]


class ReceptiveField:
    """Track the receptive-field radius (in input pixels) along a chain of layers.

    ``radius`` bounds the distance from an output pixel's centre to the centre of any
    input pixel it depends on; ``jump`` is the input-pixel spacing of the current
    feature map. Each method mirrors one layer type; the bounds are exact or slightly
    conservative, never too small, so tiling with this halo reproduces whole-image output.
    """

    def __init__(self):
        self.radius = 0.0
        self.jump = 1.0

    def conv(self, kernel: int = 3, dilation: int = 1) -> ReceptiveField:
        """A stride-1 'same' convolution."""
        self.radius += (kernel - 1) / 2 * dilation * self.jump
        return self

    def pool(self, factor: int = 2) -> ReceptiveField:
        """A ``factor`` x ``factor`` pooling (or stride-``factor`` patch conv) window."""
        self.radius += (factor - 1) / 2 * self.jump
        self.jump *= factor
        return self

    def up_nearest(self, factor: int = 2) -> ReceptiveField:
        """Upsampling where each output depends on one input (transposed conv, kernel == stride)."""
        self.jump /= factor
        self.radius += (factor - 1) / 2 * self.jump
        return self

    def up_interp(self, factor: int = 2) -> ReceptiveField:
        """Upsampling from the two nearest inputs (bilinear, or transposed conv with kernel 2 x stride)."""
        self.radius += self.jump
        self.jump /= factor
        return self

    def halo(self, multiple: int = 1) -> int:
        """The radius rounded up to whole pixels and then to a multiple of ``multiple``."""
        r = math.ceil(self.radius - 1e-9)
        return int(math.ceil(r / multiple) * multiple)


class SegnetModel(nn.Module):
    """Base class: the attributes every napari-segnets model carries, and input checking.

    Subclasses set ``arch``, ``task``, ``config``, ``in_channels``, ``out_channels``,
    ``size_multiple`` and ``halo`` in ``__init__`` and call ``self.check_input(x.shape)``
    first thing in ``forward``.
    """

    arch: str = ""
    task: str = "segment"
    in_channels: int = 1
    out_channels: int = 1
    size_multiple: int = 1
    halo: int = 0
    receptive_field: float = 0.0

    def check_input(self, shape) -> None:
        """Raise :class:`InputError` unless ``shape`` is ``(N, in_channels, H, W)`` with H, W multiples.

        Skipped while tracing, exporting or compiling: the shape is symbolic there, and
        :mod:`napari_segnets.export` states the size constraints in the exported graph.
        """
        if torch.jit.is_tracing() or torch.compiler.is_compiling():
            return
        shape = tuple(int(s) for s in shape)
        if len(shape) != 4:
            raise InputError(
                f"{self.arch} expects a 4D batch (N, C, H, W) but got shape {shape}: "
                "add batch and channel axes, e.g. image[None, None]."
            )
        n, c, h, w = shape
        if c != self.in_channels:
            raise InputError(
                f"{self.arch} was built for {self.in_channels} input channel(s) but got {c}: "
                f"pass (N, {self.in_channels}, H, W) arrays or rebuild with in_channels={c}."
            )
        if n < 1 or h < 1 or w < 1:
            raise InputError(f"{self.arch} got an empty input of shape {shape}.")
        m = self.size_multiple
        if h % m or w % m:
            ph, pw = -(-h // m) * m, -(-w // m) * m
            raise InputError(
                f"input {h}x{w} is not a multiple of {m}: pad or crop to {ph}x{pw} "
                f"(the {self.arch} model needs height and width divisible by {m})."
            )

    def extra_repr(self) -> str:
        return (
            f"arch={self.arch!r}, task={self.task!r}, out_channels={self.out_channels}, "
            f"size_multiple={self.size_multiple}, halo={self.halo}"
        )


class ConvBNReLU(nn.Sequential):
    """A 3x3 (optionally dilated) 'same' convolution, batch norm and ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, dilation: int = 1):
        pad = (kernel - 1) // 2 * dilation
        super().__init__(
            nn.Conv2d(cin, cout, kernel, padding=pad, dilation=dilation, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class DoubleConv(nn.Sequential):
    """Two 3x3 conv + BN + ReLU, with optional dropout after them (a U-Net stage)."""

    def __init__(self, cin: int, cout: int, dropout: float = 0.0):
        layers = [ConvBNReLU(cin, cout), ConvBNReLU(cout, cout)]
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        super().__init__(*layers)


class Up(nn.Module):
    """Upsample by 2 to ``cout`` channels: learned transposed conv or bilinear + 1x1 conv."""

    def __init__(self, cin: int, cout: int, mode: str = "transposed"):
        super().__init__()
        self.mode = mode
        if mode == "transposed":
            self.up = nn.ConvTranspose2d(cin, cout, kernel_size=2, stride=2)
        else:
            self.up = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(cin, cout, kernel_size=1),
            )

    def forward(self, x):
        return self.up(x)


class VGGBlock(nn.Sequential):
    """``n`` 3x3 conv (+ optional batch norm) + ReLU layers followed by 2x2 max pooling."""

    def __init__(self, cin: int, cout: int, n: int, batch_norm: bool = True):
        layers = []
        for i in range(n):
            c = cin if i == 0 else cout
            if batch_norm:
                layers.append(ConvBNReLU(c, cout))
            else:
                layers += [nn.Conv2d(c, cout, 3, padding=1), nn.ReLU(inplace=True)]
        layers.append(nn.MaxPool2d(2))
        super().__init__(*layers)


def bilinear_kernel(channels: int, kernel: int) -> torch.Tensor:
    """Bilinear-interpolation weights for a per-channel transposed conv (FCN upsampling init)."""
    factor = (kernel + 1) // 2
    center = factor - 1 if kernel % 2 == 1 else factor - 0.5
    filt1d = torch.tensor([1 - abs(i - center) / factor for i in range(kernel)], device="cpu")
    weight = torch.zeros(channels, channels, kernel, kernel, device="cpu")
    for c in range(channels):
        weight[c, c] = filt1d[:, None] * filt1d[None, :]
    return weight


class LearnedUpsample(nn.ConvTranspose2d):
    """Transposed conv upsampling by ``factor`` (kernel 2*factor), initialised to bilinear."""

    def __init__(self, channels: int, factor: int):
        super().__init__(
            channels,
            channels,
            kernel_size=2 * factor,
            stride=factor,
            padding=factor // 2,
            bias=False,
        )
        if not self.weight.is_meta:  # meta-device builds (counting, loading) skip init
            with torch.no_grad():
                self.weight.copy_(bilinear_kernel(channels, 2 * factor))
