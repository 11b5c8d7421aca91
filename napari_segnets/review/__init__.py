"""Review that goes straight to the likely errors.

- :func:`review` / :func:`review_iter`: predict a stack several ways (flips and a quarter turn;
  optionally the xz/yz planes), make objects, add per-object error signals
  (:mod:`.signals`) and one score (:mod:`.score`), ranked most likely wrong first. Optionally
  (``autoencoder=``, ``reference=``) a ``novelty`` signal (:mod:`.novelty`): an autoencoder's
  reconstruction error per wavelet level near each object against the same on the training slices;
  not part of the default score.
- :func:`next_object`: what to look at next (optionally with random audits);
  :func:`describe_object`: where it is and, in words, its signals that stand out.
- :class:`DecisionLog`, :func:`record_decision`: accept / fix / delete with provenance; the
  reviewed regions go to the curated store; :func:`fixed_mask` (an object as the reviewer left
  it), :func:`queue_fingerprint` (which queue a decision's id belongs to), :func:`match_reviewed`
  (objects of a re-ranked queue already reviewed), :func:`fit_score_from_records` (the score
  fitted on a log's decisions, every queue's).
- :func:`error_bars`: count and volume fraction with 95% intervals from the reviewed objects.
"""

from .decisions import (
    DECISIONS,
    DecisionLog,
    fixed_mask,
    match_reviewed,
    queue_fingerprint,
    record_decision,
    voxels_of,
)
from .errorbars import decisions_for_error_bars, error_bars
from .novelty import novelty_signals
from .queue import (
    Review,
    audit_due,
    default_views,
    describe_object,
    next_object,
    ranked,
    review,
    review_iter,
    review_views_iter,
)
from .score import (
    DEFAULT_WEIGHTS,
    FittedScore,
    default_score,
    fit_score,
    fit_score_from_records,
    rank,
)
from .signals import SIGNALS, add_signals, shape_signals, view_signals

__all__ = [
    "DECISIONS",
    "DEFAULT_WEIGHTS",
    "SIGNALS",
    "DecisionLog",
    "FittedScore",
    "Review",
    "add_signals",
    "audit_due",
    "decisions_for_error_bars",
    "default_score",
    "default_views",
    "describe_object",
    "error_bars",
    "fit_score",
    "fit_score_from_records",
    "fixed_mask",
    "match_reviewed",
    "next_object",
    "novelty_signals",
    "rank",
    "queue_fingerprint",
    "ranked",
    "record_decision",
    "review",
    "review_iter",
    "review_views_iter",
    "shape_signals",
    "view_signals",
    "voxels_of",
]
