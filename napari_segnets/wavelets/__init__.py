"""Wavelet analysis of images and model reconstructions.

Where does an image's information live? A 2D discrete wavelet transform splits it,
level by level, into horizontal, vertical and diagonal details (fine membranes and
cristae at level 1, cell bodies at coarse levels) plus a final low-pass approximation.

Conventions used throughout:

- Level 1 is the finest level; arrays of per-level values are ordered finest level
  first and end with the final approximation.
- The transform uses PyWavelets with ``mode="periodization"``: every level halves the
  size (rounding up), and for orthogonal wavelets (Haar/db1, dbN, symN, coifN) the
  sum of squared coefficients equals the image's energy, so "share of energy" is
  literal. For Haar on even sizes this equals pywt's default mode too.
- ``levels=None`` means every level the size allows (``pywt.dwt_max_level`` of the
  shorter side); a 256x256 Haar decomposition has 8 levels and a 1x1 approximation.

Modules: :mod:`.core` (decompositions, power, mosaics) and :mod:`.compare`
(reconstructions against an original: tables and plots); use the names below.
"""

from .compare import Comparison, compare, format_table, plot_mosaics, plot_power
from .core import (
    Decomposition,
    decompose,
    level_labels,
    level_power,
    max_levels,
    mean_level_power,
    mosaic,
    orientation_power,
    stack_power_iter,
)

__all__ = [
    "Decomposition",
    "decompose",
    "max_levels",
    "level_power",
    "orientation_power",
    "stack_power_iter",
    "mean_level_power",
    "mosaic",
    "level_labels",
    "compare",
    "format_table",
    "plot_power",
    "plot_mosaics",
    "Comparison",
]
