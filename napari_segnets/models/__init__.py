"""Model zoo: U-Net, atrous net, FCN-32s/16s/8s and linear (PCA) baselines.

Build models by name with :func:`build`; importing this package does not import
torch (the family modules are imported when a model is built).
"""

from __future__ import annotations

from .registry import available, build, count_parameters, match_budget, presets


def fit_pca(images, patch: int = 8, components: int = 16, **kwargs):
    """Fit a PCA patch autoencoder to images; see :func:`napari_segnets.models.pca.fit_pca`."""
    from .pca import fit_pca as _fit_pca

    return _fit_pca(images, patch=patch, components=components, **kwargs)


__all__ = ["available", "build", "count_parameters", "fit_pca", "match_budget", "presets"]
