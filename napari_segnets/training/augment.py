"""Seeded augmentations for 2D training crops: flips, 90-degree rotations, elastic, intensity, noise.

Every function takes a ``numpy.random.Generator`` so a fixed seed gives the same crops.
Images are float32 ``(H, W)`` in the normalised intensity space; masks are integer
``(H, W)`` (or ``None`` for autoencoding). Geometric transforms move image and mask
together; masks are resampled with nearest neighbour so labels (and the ignore value)
are never blended.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def flip_rotate(image: np.ndarray, mask: np.ndarray | None, rng: np.random.Generator):
    """Random horizontal/vertical flip and a random multiple of 90 degrees (the 8 dihedral poses)."""
    k = int(rng.integers(4))
    flip = bool(rng.integers(2))
    image = np.rot90(image, k)
    if flip:
        image = image[:, ::-1]
    if mask is not None:
        mask = np.rot90(mask, k)
        if flip:
            mask = mask[:, ::-1]
        mask = np.ascontiguousarray(mask)
    return np.ascontiguousarray(image), mask


def elastic(
    image: np.ndarray,
    mask: np.ndarray | None,
    rng: np.random.Generator,
    *,
    alpha: float = 8.0,
    sigma: float = 8.0,
):
    """Smooth random displacement field (Simard et al. 2003); ``alpha`` is the peak shift in pixels."""
    from scipy.ndimage import gaussian_filter, map_coordinates

    h, w = image.shape
    # A coarse random field, smoothed: cheaper than filtering a full-size field and just as smooth.
    dy = gaussian_filter(rng.uniform(-1, 1, (h, w)).astype(np.float32), sigma, mode="reflect")
    dx = gaussian_filter(rng.uniform(-1, 1, (h, w)).astype(np.float32), sigma, mode="reflect")
    scale = alpha / max(float(np.abs(dy).max()), float(np.abs(dx).max()), 1e-6)
    yy, xx = np.meshgrid(
        np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij"
    )
    coords = np.stack([yy + dy * scale, xx + dx * scale])
    out = map_coordinates(image, coords, order=1, mode="reflect").astype(np.float32)
    if mask is not None:
        mask = map_coordinates(mask, coords, order=0, mode="reflect").astype(mask.dtype)
    return out, mask


def brightness_contrast(
    image: np.ndarray, rng: np.random.Generator, *, brightness: float = 0.1, contrast: float = 0.2
) -> np.ndarray:
    """Scale contrast about the crop mean by 1 +- ``contrast`` and shift by +- ``brightness``."""
    c = 1.0 + rng.uniform(-contrast, contrast)
    b = rng.uniform(-brightness, brightness)
    mean = float(image.mean())
    return ((image - mean) * c + mean + b).astype(np.float32)


def gaussian_noise(image: np.ndarray, rng: np.random.Generator, *, std: float = 0.03) -> np.ndarray:
    """Add zero-mean Gaussian noise with a random std in [0, ``std``]."""
    s = rng.uniform(0.0, std)
    return (image + rng.normal(0.0, s, image.shape)).astype(np.float32)


@dataclass
class Augmenter:
    """A seeded augmentation pipeline applied to one crop at a time.

    Parameters
    ----------
    flips : bool
        Random flips and 90-degree rotations (always label-safe).
    elastic_p : float
        Probability of an elastic deformation (costly on CPU, so not every crop).
    intensity_p : float
        Probability of a brightness/contrast change.
    noise_p : float
        Probability of added Gaussian noise.
    """

    flips: bool = True
    elastic_p: float = 0.25
    elastic_alpha: float = 8.0
    elastic_sigma: float = 8.0
    intensity_p: float = 0.5
    noise_p: float = 0.3
    noise_std: float = 0.03

    def __call__(self, image: np.ndarray, mask: np.ndarray | None, rng: np.random.Generator):
        """Return the augmented ``(image, mask)``; ``mask`` may be ``None``."""
        if self.flips:
            image, mask = flip_rotate(image, mask, rng)
        if self.elastic_p and rng.random() < self.elastic_p:
            image, mask = elastic(
                image, mask, rng, alpha=self.elastic_alpha, sigma=self.elastic_sigma
            )
        if self.intensity_p and rng.random() < self.intensity_p:
            image = brightness_contrast(image, rng)
        if self.noise_p and rng.random() < self.noise_p:
            image = gaussian_noise(image, rng, std=self.noise_std)
        return image, mask


def make_augmenter(augment) -> Augmenter | None:
    """``True`` -> default :class:`Augmenter`, ``False``/``None`` -> none, an Augmenter or dict as given."""
    if augment is True:
        return Augmenter()
    if not augment:
        return None
    if isinstance(augment, Augmenter):
        return augment
    if isinstance(augment, dict):
        return Augmenter(**augment)
    from ..errors import InputError

    raise InputError(
        f"augment must be True, False, a dict of Augmenter options or an Augmenter, not {augment!r}."
    )
