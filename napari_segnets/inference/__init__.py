"""Tiled sliding-window inference on 2D images and 3D stacks of any size.

``predict`` / ``predict_iter`` (a progress generator) read tiles lazily, run them in batches
and write the result band by band, so memory does not grow with the volume.
"""

from __future__ import annotations

from .engine import shift_and_stitch
from .output import OUTPUTS, create_output, output_shape
from .predict import predict, predict_iter
from .reference import predict_untiled
from .tiling import BLENDS, TilePlan, axis_weights, make_plan, read_window, reflect_index

__all__ = [
    "BLENDS",
    "OUTPUTS",
    "TilePlan",
    "axis_weights",
    "create_output",
    "make_plan",
    "output_shape",
    "predict",
    "predict_iter",
    "predict_untiled",
    "read_window",
    "reflect_index",
    "shift_and_stitch",
]
