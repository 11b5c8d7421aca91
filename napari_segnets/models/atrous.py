"""Atrous (dilated) network: full resolution throughout, context from growing dilation rates."""

from __future__ import annotations

import torch
from torch import nn

from .parts import ConvBNReLU, ReceptiveField, SegnetModel, require, widths


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling without the image-level branch (it would break exact tiling)."""

    def __init__(self, channels: int, rates):
        super().__init__()
        self.branches = nn.ModuleList([ConvBNReLU(channels, channels, kernel=1)])
        self.branches.extend(ConvBNReLU(channels, channels, dilation=r) for r in rates)
        self.project = ConvBNReLU(channels * (len(rates) + 1), channels, kernel=1)

    def forward(self, x):
        return self.project(torch.cat([b(x) for b in self.branches], dim=1))


class AtrousNet(SegnetModel):
    """A dilated-convolution network that never downsamples (Yu & Koltun 2016 style).

    Parameters
    ----------
    task : {"segment", "autoencode"}
        Segmentation logits or a reconstruction of the input.
    in_channels, classes : int
        Input channels, and output classes for segmentation.
    base : float
        Width of the two stem convolutions; the context module is ``round(2 * base)`` wide.
    dilations : list of int
        Dilation of each 3x3 conv in the context module (default 1, 2, 4, 8, 16, 1).
    aspp : bool
        Add an ASPP block (a 1x1 branch and 3x3 branches at ``aspp_rates``) after the context.
    aspp_rates : list of int
        Dilation rates of the ASPP's 3x3 branches.
    """

    def __init__(
        self,
        *,
        task: str = "segment",
        in_channels: int = 1,
        classes: int = 1,
        base: float = 32,
        dilations=(1, 2, 4, 8, 16, 1),
        aspp: bool = False,
        aspp_rates=(6, 12, 18),
    ):
        super().__init__()
        dilations = [int(d) for d in dilations]
        aspp_rates = [int(r) for r in aspp_rates]
        require(all(d >= 1 for d in dilations + aspp_rates), "dilation rates must be >= 1.")
        self.arch = "atrous"
        self.task = task
        self.in_channels = in_channels
        self.out_channels = classes if task == "segment" else in_channels
        self.size_multiple = 1
        self.config = {
            "arch": "atrous", "task": task, "in_channels": in_channels, "classes": classes,
            "base": base, "dilations": dilations, "aspp": aspp, "aspp_rates": aspp_rates,
        }  # fmt: skip
        stem, wide = widths(base, [1, 2])
        self.channels = [stem, wide]
        self.stem = nn.Sequential(ConvBNReLU(in_channels, stem), ConvBNReLU(stem, stem))
        layers, cin = [], stem
        for d in dilations:
            layers.append(ConvBNReLU(cin, wide, dilation=d))
            cin = wide
        self.context = nn.Sequential(*layers)
        self.aspp = ASPP(cin, aspp_rates) if aspp else nn.Identity()
        self.head = nn.Conv2d(cin, self.out_channels, 1)

        rf = ReceptiveField().conv().conv()
        for d in dilations:
            rf.conv(3, d)
        if aspp:
            rf.conv(3, max(aspp_rates, default=0))
        self.receptive_field = rf.radius
        self.halo = rf.halo(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x.shape)
        x = self.stem(x)
        x = self.context(x)
        x = self.aspp(x)
        return self.head(x)
