"""From masks to objects and numbers: 3D instances, morphometrics in physical units, object scores.

- :func:`label_objects` / :func:`label_objects_iter`: instances from a mask (any encoding) or
  class-first probabilities (hysteresis), optionally split, size- and border-filtered (fragments
  under a tenth of the typical object too, as the user-facing defaults do), per slice;
  :func:`label_blockwise` does the same out of core (Zarr/dask), identically.
- :func:`measure` / :func:`measure_iter`: an :class:`ObjectTable` (volume_nm3, surface_nm2, ...)
  and its :meth:`~ObjectTable.summary`.
- :func:`score_objects`: object F1 at IoU 0.5, AP over IoU 0.5:0.95, count and volume errors.
- :mod:`.edit`: proofreading steps (merge, split, delete, filter, relabel) as voxel changes.
"""

from ._input import check_voxel_size, foreground, parse_voxel_size
from .blockwise import label_blockwise, label_blockwise_iter
from .instances import (
    FRAGMENT_FRACTION,
    canonical,
    fragment_cut,
    fragment_filter,
    fragments_note,
    label_objects,
    label_objects_iter,
    speck_voxels,
    split_touching,
    typical_size,
)
from .measure import measure, measure_iter
from .scoring import score_objects
from .table import ObjectTable, summarize

__all__ = [
    "FRAGMENT_FRACTION",
    "ObjectTable",
    "canonical",
    "check_voxel_size",
    "foreground",
    "fragment_cut",
    "fragment_filter",
    "fragments_note",
    "label_blockwise",
    "label_blockwise_iter",
    "label_objects",
    "label_objects_iter",
    "measure",
    "measure_iter",
    "parse_voxel_size",
    "score_objects",
    "speck_voxels",
    "split_touching",
    "summarize",
    "typical_size",
]
