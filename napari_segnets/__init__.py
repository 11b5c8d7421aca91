"""napari-segnets: segment and autoencode EM stacks with U-Net, atrous and FCN models.

Importing this package is cheap on purpose: napari imports it at start-up for every
user, so torch, pywt and dask are imported lazily inside the functions that need them.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
