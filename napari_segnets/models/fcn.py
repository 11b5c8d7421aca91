"""Fully convolutional networks FCN-32s / FCN-16s / FCN-8s (Long, Shelhamer & Darrell 2015)."""

from __future__ import annotations

import torch
from torch import nn

from .parts import LearnedUpsample, ReceptiveField, SegnetModel, VGGBlock, require, widths


class FCN(SegnetModel):
    """A VGG-like encoder with five pooling stages, score layers and learned upsampling.

    'Same' padding replaces the original's 100-pixel padding and crops, so scores align
    with the input without cropping; the input must be a multiple of 32.

    Parameters
    ----------
    variant : {32, 16, 8}
        The output stride of the coarsest fused score map: 32 (no skips), 16 (+ pool4),
        8 (+ pool4 and pool3).
    task : {"segment", "autoencode"}
        Segmentation logits or a reconstruction of the input.
    in_channels, classes : int
        Input channels, and output classes for segmentation.
    base : float
        Width of the first stage; stages are ``base * (1, 2, 4, 8, 8)`` wide like VGG-16.
    fc_channels : int, optional
        Width of fc6/fc7 (convolutions here); default ``round(16 * base)`` (VGG-16: 4096).
    fc_kernel : int
        Kernel size of fc6 (7 in VGG-16).
    convs : list of int
        Convolutions per stage (VGG-16: 2, 2, 3, 3, 3).
    batch_norm : bool
        Batch norm after each encoder convolution (helps training from scratch).
    dropout : float
        Dropout after fc6 and fc7 (0.5 in the original).
    """

    def __init__(
        self,
        *,
        variant: int = 8,
        task: str = "segment",
        in_channels: int = 1,
        classes: int = 1,
        base: float = 16,
        fc_channels: int | None = None,
        fc_kernel: int = 7,
        convs=(2, 2, 3, 3, 3),
        batch_norm: bool = True,
        dropout: float = 0.0,
    ):
        super().__init__()
        require(variant in (32, 16, 8), f"FCN variant must be 32, 16 or 8, not {variant!r}.")
        convs = [int(c) for c in convs]
        require(len(convs) == 5 and min(convs) >= 1, "convs must give five stage sizes >= 1.")
        require(fc_kernel in (1, 3, 5, 7), f"fc_kernel must be 1, 3, 5 or 7, got {fc_kernel!r}.")
        require(0 <= dropout < 1, f"dropout must be in [0, 1), got {dropout!r}.")
        self.arch = f"fcn{variant}s"
        self.task = task
        self.in_channels = in_channels
        self.out_channels = out = classes if task == "segment" else in_channels
        self.size_multiple = 32
        self.coarse_stride = variant
        self.config = {
            "arch": self.arch, "task": task, "in_channels": in_channels, "classes": classes,
            "base": base, "fc_channels": fc_channels, "fc_kernel": fc_kernel, "convs": convs,
            "batch_norm": batch_norm, "dropout": dropout,
        }  # fmt: skip
        chans = widths(base, [1, 2, 4, 8, 8])
        fc = int(fc_channels) if fc_channels is not None else widths(base, [16])[0]
        self.channels = chans + [fc]
        self.stages = nn.ModuleList()
        cin = in_channels
        for c, n in zip(chans, convs):
            self.stages.append(VGGBlock(cin, c, n, batch_norm))
            cin = c
        drop = [nn.Dropout2d(dropout)] if dropout > 0 else []
        self.fc6 = nn.Sequential(
            nn.Conv2d(chans[4], fc, fc_kernel, padding=fc_kernel // 2), nn.ReLU(inplace=True), *drop
        )
        self.fc7 = nn.Sequential(nn.Conv2d(fc, fc, 1), nn.ReLU(inplace=True), *drop)
        self.score_fr = nn.Conv2d(fc, out, 1)
        if variant <= 16:
            self.score_pool4 = nn.Conv2d(chans[3], out, 1)
            self.upscore2 = LearnedUpsample(out, 2)
        if variant == 8:
            self.score_pool3 = nn.Conv2d(chans[2], out, 1)
            self.upscore_pool4 = LearnedUpsample(out, 2)
        self.upscore = LearnedUpsample(out, variant)

        rf = ReceptiveField()
        for n in convs:
            for _ in range(n):
                rf.conv()
            rf.pool(2)
        rf.conv(fc_kernel)
        for _ in range({32: 0, 16: 1, 8: 2}[variant]):
            rf.up_interp(2)
        rf.up_interp(variant)
        self.receptive_field = rf.radius
        self.halo = rf.halo(self.size_multiple)

    def forward_coarse(self, x: torch.Tensor) -> torch.Tensor:
        """The fused score map at stride ``coarse_stride``, before the last learned upsampling."""
        self.check_input(x.shape)
        pools = []
        for stage in self.stages:
            x = stage(x)
            pools.append(x)
        score = self.score_fr(self.fc7(self.fc6(x)))
        if self.coarse_stride <= 16:
            score = self.upscore2(score) + self.score_pool4(pools[3])
        if self.coarse_stride == 8:
            score = self.upscore_pool4(score) + self.score_pool3(pools[2])
        return score

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.upscore(self.forward_coarse(x))
