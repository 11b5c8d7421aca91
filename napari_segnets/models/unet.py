"""U-Net (Ronneberger et al. 2015) with 'same' padding, so the output has the input's size."""

from __future__ import annotations

import numbers

import torch
from torch import nn

from .parts import DoubleConv, ReceptiveField, SegnetModel, Up, require, widths


class UNet(SegnetModel):
    """An encoder-decoder with concatenated skips.

    Parameters
    ----------
    task : {"segment", "autoencode"}
        Segmentation outputs ``classes`` logits; autoencoding outputs ``in_channels`` values.
    in_channels, classes : int
        Input channels, and output classes for segmentation.
    base : float
        Channels of the first stage; stage ``i`` has ``round(base * 2**i)``.
    depth : int
        Number of pooling steps (the input size must be a multiple of ``2**depth``).
    up : {"transposed", "bilinear"}
        Learned 2x2 transposed conv, or bilinear upsampling followed by a 1x1 conv.
    dropout : float
        Dropout probability after the ``dropout_depth`` deepest stages (0 disables it).
    dropout_depth : int
        How many of the deepest stages (bottleneck included) get dropout.
    skips : bool
        Concatenate encoder features into the decoder (the U-Net's skip connections).
    """

    def __init__(
        self,
        *,
        task: str = "segment",
        in_channels: int = 1,
        classes: int = 1,
        base: float = 16,
        depth: int = 4,
        up: str = "transposed",
        dropout: float = 0.0,
        dropout_depth: int = 2,
        skips: bool = True,
    ):
        super().__init__()
        require(
            isinstance(depth, numbers.Integral) and 1 <= depth <= 8,
            f"depth must be 1..8, got {depth!r}.",
        )
        depth = int(depth)
        require(
            up in ("transposed", "bilinear"), f"up must be 'transposed' or 'bilinear', not {up!r}."
        )
        require(0 <= dropout < 1, f"dropout must be in [0, 1), got {dropout!r}.")
        self.arch = "unet"
        self.task = task
        self.in_channels = in_channels
        self.out_channels = classes if task == "segment" else in_channels
        self.size_multiple = 2**depth
        self.config = {
            "arch": "unet", "task": task, "in_channels": in_channels, "classes": classes,
            "base": base, "depth": depth, "up": up, "dropout": dropout,
            "dropout_depth": dropout_depth, "skips": skips,
        }  # fmt: skip
        self.skips = skips
        chans = widths(base, [2**i for i in range(depth + 1)])
        self.channels = chans

        def drop(stage: int) -> float:
            return dropout if stage > depth - dropout_depth else 0.0

        self.down = nn.ModuleList()
        cin = in_channels
        for i in range(depth + 1):
            self.down.append(DoubleConv(cin, chans[i], drop(i)))
            cin = chans[i]
        self.pool = nn.MaxPool2d(2)
        self.ups = nn.ModuleList()
        self.decode = nn.ModuleList()
        for i in reversed(range(depth)):
            self.ups.append(Up(chans[i + 1], chans[i], up))
            self.decode.append(DoubleConv(chans[i] * (2 if skips else 1), chans[i]))
        self.head = nn.Conv2d(chans[0], self.out_channels, 1)

        rf = ReceptiveField()
        for _ in range(depth):
            rf.conv().conv().pool(2)
        rf.conv().conv()
        for _ in range(depth):
            rf.up_nearest(2) if up == "transposed" else rf.up_interp(2)
            rf.conv().conv()
        self.receptive_field = rf.radius
        self.halo = rf.halo(self.size_multiple)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x.shape)
        features = []
        for i, block in enumerate(self.down):
            if i > 0:
                x = self.pool(x)
            x = block(x)
            features.append(x)
        x = features.pop()
        for up, block in zip(self.ups, self.decode):
            x = up(x)
            skip = features.pop()
            x = block(torch.cat([skip, x], dim=1) if self.skips else x)
        return self.head(x)
