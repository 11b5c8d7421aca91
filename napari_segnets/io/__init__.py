"""Reading and writing EM stacks, atomic saves and intensity normalisation.

Heavy libraries (dask, zarr, h5py, mrcfile) are imported inside the functions that use them.
"""

from ._common import AmbiguousInputError, lazy_threshold
from .atomic import atomic_path, atomic_write_bytes, atomic_write_text, fsync_dir
from .kind import is_binary_mask, layer_kind, mask_name
from .normalize import (
    apply_normalization,
    fit_normalization,
    normalization_spec,
    restore_intensities,
)
from .reader import FORMATS, read, sniff
from .writers import write_labels

__all__ = [
    "AmbiguousInputError",
    "FORMATS",
    "apply_normalization",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "fit_normalization",
    "fsync_dir",
    "is_binary_mask",
    "layer_kind",
    "lazy_threshold",
    "mask_name",
    "normalization_spec",
    "read",
    "restore_intensities",
    "sniff",
    "write_labels",
]
