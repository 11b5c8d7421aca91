"""Tiny training data shared by the training tests: bright discs on a noisy background."""

from __future__ import annotations

import numpy as np


def blobs(n=3, size=64, seed=0, *, value=1, discs=5, rmax=8):
    """``n`` slices of ``size``² with ``discs`` discs (radius 3..rmax-1) each; masks use ``value``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    image = np.zeros((n, size, size), np.float32)
    mask = np.zeros((n, size, size), np.uint8)
    for z in range(n):
        for _ in range(discs):
            cy, cx = rng.integers(8, size - 8, 2)
            r = int(rng.integers(3, rmax))
            mask[z][(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = value
        image[z] = (mask[z] > 0) * 0.6 + rng.normal(0.2, 0.1, (size, size))
    return image, mask
