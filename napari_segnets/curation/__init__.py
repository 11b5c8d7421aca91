"""The curated training set (:class:`Store`), the user's corrections, and what to correct next."""

from napari_segnets.curation.corrections import (
    changed_region,
    edited_sample,
    mark_unreviewed,
    regressions,
)
from napari_segnets.curation.store import Store
from napari_segnets.curation.uncertainty import (
    rank_uncertainty,
    rank_uncertainty_iter,
    uncertainty_map,
)

__all__ = [
    "Store",
    "changed_region",
    "edited_sample",
    "mark_unreviewed",
    "rank_uncertainty",
    "rank_uncertainty_iter",
    "regressions",
    "uncertainty_map",
]
