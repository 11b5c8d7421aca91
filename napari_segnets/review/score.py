"""One score per object: how likely it is wrong, weighed by what a fix would change, from its signals.

Default rule (no reviewed objects yet): each signal is turned into its percentile rank within
the table (0 = least suspicious, 1 = most; ties share their mean rank, a signal the table lacks
counts 0.5), and the score is the weighted mean of those ranks with :data:`DEFAULT_WEIGHTS`.
Ranks make signals of different units comparable without tuning.

One signal is not a likelihood but the stake: ``error_volume`` (about how many voxels a fix would
change). Ranked by likelihood alone, the queue leads with specks, which are likely wrong but change
little when fixed; a reviewer then trails random choice in IoU after k objects. Its weight (4 of
12.5) keeps the likely-wrong objects first among objects of similar stake (benchmarks/RESULTS.md,
issue 15).

Fitted rule: once the user has reviewed objects, :func:`fit_score` fits a logistic regression
(scikit-learn, balanced classes, standardised signals) of "was wrong" (fixed or deleted) against
"was right" (accepted) on the likelihood signals; the score is then that fitted probability of
being wrong in place of the likelihood signals' ranks, plus the stake's rank with the same share as
in the default rule.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .signals import SIGNALS

DEFAULT_WEIGHTS = {
    "mask_change": 2.0,
    "split_merge": 1.0,
    "boundary_entropy": 1.0,
    "low_confidence": 1.0,
    "flicker": 1.0,
    "size_outlier": 1.0,
    "elongation": 0.5,
    "cut_one_slice": 1.0,
    # what is at stake: without it the queue leads with specks (likely wrong, little to fix) and
    # trails random choice in IoU after k reviews; measured in benchmarks/RESULTS.md (issue 15)
    "error_volume": 4.0,
}
STAKE = "error_volume"  # what a fix would change: weighs the likelihood, is not one
LIKELIHOOD = tuple(n for n in SIGNALS if n != STAKE)  # what the fitted rule fits on
MIN_PER_CLASS = 5  # reviewed objects of each outcome needed before a fitted rule replaces the default


def percentile_ranks(values) -> np.ndarray:
    """Ranks scaled to [0, 1] (ties share their mean rank; NaN counts as the least suspicious)."""
    from scipy.stats import rankdata

    v = np.asarray(values, float)
    if len(v) == 0:
        return v
    v = np.where(np.isfinite(v), v, -np.inf)
    if len(v) == 1:
        return np.full(1, 0.5)
    return (rankdata(v, method="average") - 1) / (len(v) - 1)


def default_score(table, weights: dict | None = None) -> np.ndarray:
    """The default rule's score of every row of ``table`` (see the module docstring)."""
    weights = DEFAULT_WEIGHTS if weights is None else weights
    total = np.zeros(len(table))
    for name, w in weights.items():
        ranks = percentile_ranks(table[name]) if name in table.columns else np.full(len(table), 0.5)
        total += w * ranks
    return total / max(sum(weights.values()), 1e-12)


def stake_share(weights: dict | None = None) -> float:
    """The stake's share of the default rule's weights (what the fitted rule keeps for it)."""
    weights = DEFAULT_WEIGHTS if weights is None else weights
    return weights.get(STAKE, 0.0) / max(sum(weights.values()), 1e-12)


def features(table, names=None) -> np.ndarray:
    """The likelihood signals (every signal but the stake) of ``table`` as a matrix, and their names."""
    names = [n for n in (names or LIKELIHOOD) if n in table.columns and n != STAKE]
    x = np.stack([np.asarray(table[n], float) for n in names], 1) if names else np.zeros((len(table), 0))
    return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0), names


class FittedScore:
    """A logistic regression of "wrong" on the signals; ``score(table)`` gives P(wrong)."""

    def __init__(self, model, names, n_right: int, n_wrong: int):
        self.model, self.names, self.n_right, self.n_wrong = model, names, n_right, n_wrong

    def probability(self, table) -> np.ndarray:
        """P(wrong) of every row; a signal the table lacks (fitted on a log of other queues, e.g. 3D
        objects or with novelty) counts as 0, as a missing value does in the fit."""
        cols = [np.asarray(table[n], float) if n in table.columns else np.zeros(len(table)) for n in self.names]
        x = np.stack(cols, 1) if cols else np.zeros((len(table), 0))
        return self.model.predict_proba(np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0))[:, 1]

    def score(self, table) -> np.ndarray:
        """The queue's score: P(wrong), weighed by the stake's rank as the default rule weighs it."""
        p = self.probability(table)
        share = stake_share()
        if STAKE not in table.columns or share == 0:
            return p
        return (1 - share) * p + share * percentile_ranks(table[STAKE])

    def describe(self) -> str:
        coef = self.model[-1].coef_[0]
        terms = ", ".join(f"{n} {c:+.2f}" for n, c in zip(self.names, coef))
        return f"logistic fit on {self.n_wrong} wrong / {self.n_right} right objects: {terms}"


def fit_score(table, wrong: dict, *, min_per_class: int = MIN_PER_CLASS):
    """Fit the score on reviewed objects; None (keep the default rule) when too few of either kind.

    Parameters
    ----------
    table : ObjectTable
        With the signal columns.
    wrong : dict of id -> bool
        Reviewed objects: True = the reviewer fixed or deleted it, False = accepted.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rows = [(table.index_of(i), bool(w)) for i, w in wrong.items()]
    rows = [(r, w) for r, w in rows if r is not None]
    y = np.array([w for _r, w in rows], bool)
    if y.sum() < min_per_class or (~y).sum() < min_per_class:
        return None
    x, names = features(table)
    if not names:
        raise InputError("The table has no signal columns to fit a score on; compute the signals first.")
    model = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=1000))
    model.fit(x[[r for r, _w in rows]], y)
    return FittedScore(model, names, int((~y).sum()), int(y.sum()))


def fit_score_from_records(records, *, min_per_class: int = MIN_PER_CLASS):
    """:func:`fit_score` on every decision of a :class:`~napari_segnets.review.DecisionLog`, any queue.

    Each record keeps its object's queue row (the signals it was ranked on), so decisions made on an
    earlier queue (before a fine-tune) still teach the rule that ranks the next one. The latest
    decision per (queue, object) counts. Returns None when too few of either outcome.
    """
    from ..objects import ObjectTable

    latest = {}
    for r in records:
        if r.get("kind") == "decision" and isinstance(r.get("queue"), dict):
            latest[(r.get("queue_id", ""), int(r["object"]))] = r
    rows = [r for r in latest.values() if any(n in r["queue"] for n in LIKELIHOOD)]
    if not rows:
        return None
    names = [n for n in LIKELIHOOD if any(n in r["queue"] for r in rows)]
    cols = {"id": np.arange(1, len(rows) + 1)}
    for n in names:
        cols[n] = np.array([np.nan if r["queue"].get(n) is None else float(r["queue"][n]) for r in rows])
    table = ObjectTable(cols)
    return fit_score(table, {i + 1: r["decision"] != "accept" for i, r in enumerate(rows)},
                     min_per_class=min_per_class)


def rank(table, score=None) -> np.ndarray:
    """Row order, most likely wrong first; ties broken by id so the order is deterministic."""
    s = default_score(table) if score is None else np.asarray(score, float)
    return np.lexsort((table.ids, -np.round(s, 12)))
