"""Tiny data shared by the tests: bright discs on a noisy background, label images, grey images."""

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


def label_image(n_ids: int, shape=(4, 200, 200), seed=0, *, borders=True):
    """Instance ids 1..n_ids in flat regions (Voronoi cells, 0 along half their borders): a label image."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    seeds = np.zeros(shape[1:], np.uint16)
    flat = rng.choice(seeds.size, n_ids, replace=False)
    seeds.flat[flat] = np.arange(1, n_ids + 1)
    _, (iy, ix) = ndi.distance_transform_edt(seeds == 0, return_indices=True)
    plane = seeds[iy, ix]
    border = (ndi.maximum_filter(plane, 3) != ndi.minimum_filter(plane, 3)) & (rng.random(plane.shape) < 0.5)
    if borders:
        plane[border] = 0  # background along half of the cell borders
    return np.broadcast_to(plane, shape).copy()


def grey_image(shape=(4, 128, 128), seed=0, dtype=np.uint8):
    """A textured grey image: smooth structure plus shot noise, like EM."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    base = ndi.gaussian_filter(rng.random(shape), (0, 6, 6))
    base = (base - base.min()) / (base.max() - base.min())
    top = np.iinfo(dtype).max * 0.8
    return np.clip(base * top + rng.normal(0, top * 0.08, shape) + top * 0.1, 0, None).astype(dtype)
