"""napari widgets for napari-segnets: the only place that imports napari, magicgui and Qt.

The widgets translate between the user and the core (``napari_segnets.*``); long
jobs run in worker threads via :mod:`._runner`.
"""

from ._launch import launch
from .curate import CurateWidget
from .objects import ObjectsWidget
from .score import ScoreWidget
from .segment import SegmentWidget
from .train import TrainWidget
from .wavelet import WaveletWidget

__all__ = ["CurateWidget", "ObjectsWidget", "ScoreWidget", "SegmentWidget", "TrainWidget", "WaveletWidget", "launch"]
