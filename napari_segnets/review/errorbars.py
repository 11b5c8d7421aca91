"""Error bars on the measurements: how wrong the unreviewed objects probably are, from the reviewed ones.

Method (stratified ratio estimation with a stratified bootstrap): the queue's objects are cut into
``strata`` groups of equal size by score; neighbouring groups are pooled until each holds at least
``min_per_stratum`` reviewed objects. Reviewed objects count as the reviewer left them (accepted: 1
object of its own volume; fixed: the pieces and voxels it became; deleted: 0). An unreviewed object
counts as the mean ``count_after`` of the reviewed objects of its group, and its volume is scaled
by its group's ratio sum(voxels_after) / sum(voxels_before). The 95% interval is the 2.5-97.5
percentile range of the same estimate over ``n_boot`` resamplings (with replacement, within each
group) of the reviewed objects. Objects the model missed entirely (no predicted object near them)
are not seen by any review and are not in the interval. Reviews that follow the queue alone see only
the most suspicious objects; random audits (:func:`~napari_segnets.review.queue.next_object`
``audit_every``) give the low-score groups the reviewed objects their estimate needs.
"""

from __future__ import annotations

import numpy as np

MIN_REVIEWED = 10
MIN_PER_STRATUM = 3


def _groups(scores: np.ndarray, reviewed: np.ndarray, strata: int, min_per_stratum: int) -> np.ndarray:
    """Group index per row: equal-size score strata, pooled until each has enough reviewed rows."""
    order = np.argsort(-scores, kind="stable")
    cut = np.array_split(order, max(1, min(strata, len(order))))
    groups, current, have = [], [], 0
    for part in cut:
        current.append(part)
        have += int(reviewed[part].sum())
        if have >= min_per_stratum:
            groups.append(np.concatenate(current))
            current, have = [], 0
    if current:  # too few reviewed at the low end: pool with the group above
        tail = np.concatenate(current)
        if groups:
            groups[-1] = np.concatenate([groups[-1], tail])
        else:
            groups.append(tail)
    out = np.zeros(len(scores), int)
    for g, rows in enumerate(groups):
        out[rows] = g
    return out


def error_bars(table, decisions: dict, *, score: str = "score", level: float = 0.95, n_boot: int = 2000,
               strata: int = 4, min_reviewed: int = MIN_REVIEWED, min_per_stratum: int = MIN_PER_STRATUM,
               seed: int = 0) -> dict:
    """Count and volume fraction with intervals, from the objects reviewed so far.

    Parameters
    ----------
    table : ObjectTable
        The queue (``score``, ``voxels``; ``shape`` set, as :func:`~napari_segnets.review.review` makes it).
    decisions : dict of id -> dict
        Reviewed objects' ``count_after`` and ``voxels_after`` (the :class:`DecisionLog` records).
    level : float
        Interval coverage (0.95).

    Returns
    -------
    dict
        ``enough`` (bool) and ``text``; when enough: ``count``, ``count_low``, ``count_high``,
        ``volume_fraction``, ``volume_fraction_low``, ``volume_fraction_high``, ``n_reviewed``,
        ``n_objects``, ``groups``.
    """
    ids = table.ids
    n = len(ids)
    reviewed = np.array([int(i) in decisions for i in ids.tolist()], bool)
    k = int(reviewed.sum())
    base = {"n_reviewed": k, "n_objects": n, "method": "stratified ratio estimate, stratified bootstrap"}
    if n == 0:
        return {**base, "enough": False, "text": "no objects to measure"}
    if k < min(min_reviewed, n):
        return {**base, "enough": False,
                "text": f"{k} of {n} objects reviewed: review at least {min(min_reviewed, n)} "
                        "(with some random audits) before error bars can be estimated"}
    before = np.asarray(table["voxels"], float)
    c_after = np.array([float(decisions[int(i)]["count_after"]) if r else np.nan
                        for i, r in zip(ids.tolist(), reviewed)])
    v_after = np.array([float(decisions[int(i)]["voxels_after"]) if r else np.nan
                        for i, r in zip(ids.tolist(), reviewed)])
    group = _groups(np.asarray(table[score], float), reviewed, strata, min_per_stratum)
    total_vox = float(np.prod(table.shape)) if table.shape else float("nan")
    known_c, known_v = np.nansum(c_after), np.nansum(v_after)
    parts = []
    for g in np.unique(group):
        rev = np.flatnonzero((group == g) & reviewed)
        unrev = np.flatnonzero((group == g) & ~reviewed)
        parts.append((rev, len(unrev), before[unrev].sum()))

    def estimate(pick):
        c, v = known_c, known_v
        for (rev, n_un, vox_un), idx in zip(parts, pick):
            if n_un == 0:
                continue
            r = rev[idx]
            c += n_un * c_after[r].mean()
            v += vox_un * (v_after[r].sum() / max(before[r].sum(), 1.0))
        return c, v / total_vox

    count, vf = estimate([np.arange(len(rev)) for rev, _n, _v in parts])
    rng = np.random.default_rng(seed)
    boots = np.array([estimate([rng.integers(0, len(rev), len(rev)) if len(rev) else np.zeros(0, int)
                                for rev, _n, _v in parts]) for _ in range(int(n_boot))])
    a = (1 - level) / 2 * 100
    c_lo, c_hi = np.percentile(boots[:, 0], [a, 100 - a])
    v_lo, v_hi = np.percentile(boots[:, 1], [a, 100 - a])
    pct = int(round(level * 100))
    text = (f"count {count:.0f}, {pct}% interval {np.floor(c_lo):.0f}-{np.ceil(c_hi):.0f}; "
            f"volume fraction {100 * vf:.1f}% +- {100 * (v_hi - v_lo) / 2:.1f}% "
            f"({k} of {n} objects reviewed)")
    return {**base, "enough": True, "count": float(count), "count_low": float(np.floor(c_lo)),
            "count_high": float(np.ceil(c_hi)), "volume_fraction": float(vf),
            "volume_fraction_low": float(v_lo), "volume_fraction_high": float(v_hi),
            "groups": len(parts), "text": text}


def decisions_for_error_bars(records: dict) -> dict:
    """``DecisionLog.latest()`` records -> the id -> {count_after, voxels_after} :func:`error_bars` takes."""
    return {int(i): {"count_after": r["count_after"], "voxels_after": r["voxels_after"]} for i, r in records.items()}
