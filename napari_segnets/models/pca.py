"""Linear autoencoder baselines on non-overlapping patches: PCA (fitted) and a trainable linear net."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from .parts import ReceptiveField, SegnetModel


class PatchLinearAE(SegnetModel):
    """Encode each non-overlapping ``patch`` x ``patch`` block to ``components`` numbers and back.

    ``y = D(E(x - mean)) + mean`` with a stride-``patch`` convolution ``E``, a transposed
    convolution ``D`` and a learnable mean patch; no activation anywhere. With
    ``arch="pca"`` the weights come from :func:`fit_pca`; with ``arch="linear"`` they
    are trained like any other model.

    Parameters
    ----------
    arch : {"linear", "pca"}
        Which baseline this is (the structure is the same).
    task : {"autoencode"}
        Only autoencoding makes sense for these models.
    in_channels : int
        Image channels.
    classes : int
        Unused (kept so every family takes the same arguments).
    patch : int
        Patch side; H and W must be multiples of it.
    components : int
        Code size per patch (principal components for PCA).
    """

    def __init__(
        self,
        *,
        arch: str = "linear",
        task: str = "autoencode",
        in_channels: int = 1,
        classes: int = 1,
        patch: int = 8,
        components: int = 16,
    ):
        super().__init__()
        patch, components = int(patch), int(components)
        if patch < 1 or components < 1:
            raise InputError(
                f"patch and components must be positive, got {patch} and {components}."
            )
        if components > patch * patch * in_channels:
            raise InputError(
                f"{components} components exceed the {patch * patch * in_channels} values in a "
                f"{patch}x{patch} patch: use at most {patch * patch * in_channels}."
            )
        self.arch = arch
        self.task = task
        self.in_channels = in_channels
        self.out_channels = in_channels
        self.size_multiple = patch
        self.config = {
            "arch": arch, "task": task, "in_channels": in_channels, "classes": classes,
            "patch": patch, "components": components,
        }  # fmt: skip
        self.encoder = nn.Conv2d(in_channels, components, patch, stride=patch, bias=False)
        self.decoder = nn.ConvTranspose2d(components, in_channels, patch, stride=patch, bias=False)
        self.mean = nn.Parameter(torch.zeros(in_channels, patch, patch))
        if arch == "pca":
            # Fraction of the patch variance each component explains (set by fit_pca).
            self.register_buffer("explained_variance_ratio", torch.zeros(components))
        rf = ReceptiveField().pool(patch).up_nearest(patch)
        self.receptive_field = rf.radius
        self.halo = rf.halo(patch)

    def _mean_image(self, x: torch.Tensor) -> torch.Tensor:
        p = self.size_multiple
        return self.mean.repeat(1, x.shape[-2] // p, x.shape[-1] // p)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The code ``(N, components, H / patch, W / patch)``."""
        self.check_input(x.shape)
        return self.encoder(x - self._mean_image(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Reconstruct ``(N, in_channels, H, W)`` from a code."""
        y = self.decoder(z)
        return y + self._mean_image(y)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def _patches(images, patch: int) -> np.ndarray:
    """All non-overlapping patches (rows of ``patch*patch`` values) from 2D images or a stack."""
    if (
        isinstance(images, np.ndarray)
        or hasattr(images, "__array__")
        and not isinstance(images, list)
    ):
        arr = np.asarray(images)
        if arr.ndim == 2:
            slices = [arr]
        elif arr.ndim == 3:
            slices = list(arr)
        else:
            raise InputError(
                f"fit_pca takes a 2D image, a 3D (Z, Y, X) stack or a list of 2D images; got {arr.ndim}D."
            )
    else:
        slices = [np.asarray(a) for a in images]
    rows = []
    for s in slices:
        if s.ndim != 2:
            raise InputError(f"fit_pca needs single-channel 2D slices, got one of shape {s.shape}.")
        h, w = s.shape[0] // patch * patch, s.shape[1] // patch * patch
        if h == 0 or w == 0:
            continue
        blocks = s[:h, :w].astype(np.float64).reshape(h // patch, patch, w // patch, patch)
        rows.append(blocks.transpose(0, 2, 1, 3).reshape(-1, patch * patch))
    if not rows:
        raise InputError(
            f"The images are smaller than one {patch}x{patch} patch: use a smaller patch."
        )
    return np.concatenate(rows)


def fit_pca(
    images, patch: int = 8, components: int = 16, *, max_patches: int = 200_000, seed: int = 0
):
    """Fit a PCA autoencoder on the non-overlapping patches of ``images``.

    Parameters
    ----------
    images : ndarray or list of ndarray
        A 2D image, a (Z, Y, X) stack or a list of 2D images, already normalised the way
        the model's inputs will be (edges that do not fill a patch are ignored).
    patch : int
        Patch side.
    components : int
        Number of principal components kept.
    max_patches : int
        Fit on a random subset of at most this many patches (fixed by ``seed``).
    seed : int
        Seed of that subset.

    Returns
    -------
    PatchLinearAE
        ``arch == "pca"``, in eval mode: ``forward`` projects each patch onto the
        components and back, ``encode``/``decode`` give the code.
    """
    from .registry import build

    model = build("pca", task="autoencode", patch=patch, components=components)
    x = _patches(images, int(patch))
    if not np.isfinite(x).all():
        raise InputError(
            "The images contain NaN or infinite values: clean or normalise them first."
        )
    if len(x) > max_patches:
        x = x[np.sort(np.random.default_rng(seed).choice(len(x), max_patches, replace=False))]
    if len(x) < components:
        raise InputError(
            f"Only {len(x)} patches for {components} components: give more images or fewer components."
        )
    mean = x.mean(axis=0)
    xc = x - mean
    cov = xc.T @ xc / max(len(x) - 1, 1)
    eigval, eigvec = np.linalg.eigh(cov)
    order = np.argsort(eigval)[::-1][:components]
    vecs = eigvec[:, order].T  # (components, patch*patch)
    # Fix each component's sign (largest entry positive) so fits are reproducible.
    signs = np.sign(vecs[np.arange(len(vecs)), np.abs(vecs).argmax(axis=1)])
    vecs *= np.where(signs == 0, 1.0, signs)[:, None]
    total = float(np.clip(eigval, 0, None).sum())
    ratio = np.clip(eigval[order], 0, None) / total if total > 0 else np.zeros(components)
    p = int(patch)
    weight = torch.from_numpy(vecs.reshape(components, 1, p, p).astype(np.float32))
    with torch.no_grad():
        model.encoder.weight.copy_(weight)
        model.decoder.weight.copy_(weight)
        model.mean.copy_(torch.from_numpy(mean.reshape(1, p, p).astype(np.float32)))
        model.explained_variance_ratio.copy_(torch.from_numpy(ratio.astype(np.float32)))
    return model.eval()
