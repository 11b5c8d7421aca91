"""The curated training set (:class:`Store`) and what to correct next (:func:`rank_uncertainty`)."""

from napari_segnets.curation.store import Store
from napari_segnets.curation.uncertainty import (
    rank_uncertainty,
    rank_uncertainty_iter,
    uncertainty_map,
)

__all__ = ["Store", "rank_uncertainty", "rank_uncertainty_iter", "uncertainty_map"]
