"""Tiled sliding-window inference on 2D images and 3D stacks of any size.

``predict`` / ``predict_iter`` (a progress generator) read tiles lazily, run them in batches
and write the result band by band, so memory does not grow with the volume.
"""

from __future__ import annotations

# shift_and_stitch, predict_untiled and the tiling pieces are importable from here (tests and
# benchmarks use them) but are not the API, hence not listed below.
from .engine import shift_and_stitch  # noqa: F401
from .output import OUTPUTS, create_output, output_shape
from .predict import predict, predict_iter
from .reference import predict_untiled  # noqa: F401
from .tiling import BLENDS, TilePlan, axis_weights, make_plan, read_window, reflect_index  # noqa: F401

__all__ = ["BLENDS", "OUTPUTS", "create_output", "output_shape", "predict", "predict_iter"]
