"""Error bars on the measurements: how wrong the unreviewed objects probably are, from the reviewed ones.

Method (a Bayesian-bootstrap interval with a weak error prior). Reviewed objects count exactly as
the reviewer left them (accepted: 1 object of its own volume; fixed: the pieces and voxels it became;
deleted: 0). Each reviewed object gives one *outcome*: its ``count_after`` and its ``voxels_after``
against its ``voxels_before``. The head of the queue (the objects reviewed because the queue ranked
them next, not as random audits) is known exactly and says little about the rest, which the queue
ranked lower; the rest (the unreviewed objects and the random audits among them: a simple random
sample of the objects the queue has not reached) is one group, or
``strata`` equal groups by score, neighbours pooled until each holds ``min_per_stratum`` (3) reviewed
objects; when the rest holds fewer, the lowest objects of the head join it. In each of ``n_boot``
draws, per group, weights are drawn from a Dirichlet posterior: 1 for each reviewed outcome of the
group plus a weak prior of ``prior`` (0.1) pseudo-objects split evenly between two error outcomes,
"false object" (count 0, no voxels) and "hides a second object" (count 2, twice the voxels: a merge,
or an object the model missed beside it), each the size of the group's average unreviewed object.

- Count (a predictive draw): every unreviewed object of the group draws its own outcome with those
  weights and adds its count, so the interval holds the object-to-object variation, not only the
  uncertainty of a mean.
- Volume (a ratio estimator, as survey sampling estimates a total from a known size): the group's
  unreviewed voxels times the weighted ratio sum(voxels after) / sum(voxels before) of its reviewed
  objects. Each outcome weighs by its object's size, so deleted specks do not take the volume of the
  big objects with them. Drawing a ratio per object instead (the previous method) put a speck's 0 on
  big objects: on the Drosophila sample its intervals lay below the truth in up to 25% of reviews.

A draw's count and volume fraction are the reviewed objects' exact values plus the unreviewed
objects' draws; an all-accepted review still leaves each unreviewed object a small chance of being
wrong, and reviewing every object gives the exact numbers with no width. The values shown are the
medians of the draws; the 95% interval runs from the draw at the 2.5th percentile to the draw at the
97.5th (order statistics, so the count is in whole objects). The prior is neutral on average (one
object fewer or one more, its volume gone or doubled), so it widens the interval without moving it;
its weight, 0.1, was chosen on synthetic reviews (``tests/test_review.py`` ``_realistic``: 17
objects, 15% wrong, 10 reviewed), where 0 covered the volume fraction in 65% of reviews.

What it does not cover: objects the model missed entirely (no predicted object touches them) are
seen by no review of the predicted objects and are outside both the numbers and the interval; the
text says so. Misses that touch a predicted object are in it (a fixed object that became two).
Reviews that follow the queue alone see only the most suspicious objects; random audits
(:func:`~napari_segnets.review.queue.next_object` ``audit_every``) give the low-score groups the
reviewed objects their estimate needs. Decisions record whether they were audits; an audit that
happens to fall just below the head stays in the rest. (Logs written before audits were recorded:
the head is every object ranked above the best-ranked unreviewed one, so such an audit joined the
head. On the Drosophila review benchmark that dropped the wrong ones the audits had found below the
head, and count intervals covered 80% of one model's reviews; kept in the rest, 90%.)
"""

from __future__ import annotations

import numpy as np

MIN_REVIEWED = 10
MIN_PER_STRATUM = 3
PRIOR = 0.1
# the prior's outcomes: (count_after, voxels_after / voxels_before)
PRIOR_OUTCOMES = ((0.0, 0.0), (2.0, 2.0))
METHOD = "Bayesian bootstrap with a weak error prior (count: predictive draws; volume: ratio estimator)"


def _groups(scores: np.ndarray, reviewed: np.ndarray, strata: int, min_per_stratum: int,
            audited: np.ndarray | None = None) -> np.ndarray:
    """Group index per row: the reviewed head of the queue, then equal-size score strata of the rest.

    The head (the reviewed objects that are not ``audited``; without ``audited``, every object ranked
    above the best-ranked unreviewed one) is group 0: the
    queue chose them for their high scores, so they say little about the unreviewed objects below. The
    rest (the unreviewed objects and the reviewed ones among them, the random audits) is cut into
    ``strata`` equal groups by score, neighbours pooled until each holds ``min_per_stratum`` reviewed
    objects; when the rest holds fewer, the lowest objects of the head join it until it does.
    """
    order = np.argsort(-scores, kind="stable")
    need = min(min_per_stratum, int(reviewed.sum()))
    out = np.zeros(len(scores), int)
    if audited is not None:  # the head: reviewed in queue order (not audits), wherever they lie
        in_head = reviewed & ~audited
        while int((reviewed & ~in_head).sum()) < need and in_head.any():
            in_head[order[np.flatnonzero(in_head[order])[-1]]] = False  # the lowest of the head joins the rest
        rest = order[~in_head[order]]
        if len(rest) == 0 or not (~reviewed[rest]).any():
            return out
    else:
        unrev = np.flatnonzero(~reviewed[order])
        head = int(unrev[0]) if len(unrev) else len(order)
        while head > 0 and int(reviewed[order[head:]].sum()) < need:
            head -= 1
        if head == len(order):
            return out
        rest = order[head:]
    cut = np.array_split(rest, max(1, min(strata, len(rest))))
    groups, current, have = [], [], 0
    for part in cut:
        current.append(part)
        have += int(reviewed[part].sum())
        if have >= max(need, 1):
            groups.append(np.concatenate(current))
            current, have = [], 0
    if current:  # too few reviewed at the low end: pool with the group above
        tail = np.concatenate(current)
        if groups:
            groups[-1] = np.concatenate([groups[-1], tail])
        else:
            groups.append(tail)
    for g, rows in enumerate(groups, start=1):
        out[rows] = g
    return out


def _draw_group(rng, outcome_c, alpha, n_un, n_draws):
    """Per draw: the summed count of a group's ``n_un`` unreviewed objects (predictive draws)."""
    n_atoms = len(alpha)
    counts = np.zeros(n_draws)
    chunk = max(1, min(n_draws, 2_000_000 // max(n_un, 1)))
    for s in range(0, n_draws, chunk):
        b = min(chunk, n_draws - s)
        w = rng.gamma(alpha, size=(b, n_atoms))
        cum = np.cumsum(w / w.sum(1, keepdims=True), axis=1)
        cum[:, -1] = 1.0
        offset = np.arange(b)[:, None]
        u = rng.random((b, n_un))
        # one sorted search for all draws at once: row r's cumulative weights shifted by r
        idx = np.searchsorted((cum + offset).ravel(), (u + offset).ravel(), side="right").reshape(b, n_un)
        idx = np.minimum(idx - offset * n_atoms, n_atoms - 1)
        counts[s:s + b] = outcome_c[idx].sum(1)
    return counts


def _ratio_group(rng, after, before, alpha, vox_un, n_draws):
    """Per draw: the group's unreviewed voxels times a Bayesian-bootstrap ratio of the reviewed
    objects' voxels after to before (a ratio estimator: each outcome weighs by its object's size)."""
    w = rng.gamma(alpha, size=(n_draws, len(alpha)))
    ratio = (w @ after) / np.maximum(w @ before, 1e-12)
    return ratio * float(np.sum(vox_un))


def error_bars(table, decisions: dict, *, score: str = "score", level: float = 0.95, n_boot: int = 2000,
               strata: int = 1, min_reviewed: int = MIN_REVIEWED, min_per_stratum: int = MIN_PER_STRATUM,
               prior: float = PRIOR, seed: int = 0, audited=None) -> dict:
    """Count and volume fraction with predictive intervals, from the objects reviewed so far.

    Parameters
    ----------
    table : ObjectTable
        The queue (``score``, ``voxels``; ``shape`` set, as :func:`~napari_segnets.review.review` makes it).
    decisions : dict of id -> dict
        Reviewed objects' ``count_after`` and ``voxels_after`` (the :class:`DecisionLog` records).
    level : float
        Interval coverage (0.95).
    n_boot : int
        Predictive draws.
    prior : float
        Pseudo-objects of the error prior per group (module docstring); 0 = none.
    audited : iterable of int, optional
        Ids reviewed as random audits; default: those whose decision says ``audit`` (the log's
        records), or, when no decision says either way, the head is positional (module docstring).

    Returns
    -------
    dict
        ``enough`` (bool), ``text``, ``n_reviewed``, ``n_objects``, ``method``; when enough also
        ``count``, ``count_low``, ``count_high``, ``volume_fraction``, ``volume_fraction_low``,
        ``volume_fraction_high``, ``groups``.
    """
    ids = table.ids
    n = len(ids)
    reviewed = np.array([int(i) in decisions for i in ids.tolist()], bool)
    k = int(reviewed.sum())
    base = {"n_reviewed": k, "n_objects": n, "method": METHOD}
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
    if audited is None and any(d.get("audit") is not None for d in decisions.values()):
        audited = [i for i, d in decisions.items() if d.get("audit")]  # the log says which were audits
    audited_mask = None
    if audited is not None:
        audited_set = {int(i) for i in audited}
        audited_mask = np.array([int(i) in audited_set for i in ids.tolist()], bool) & reviewed
    group = _groups(np.asarray(table[score], float), reviewed, strata, min_per_stratum, audited_mask)
    total_vox = float(np.prod(table.shape)) if table.shape else float("nan")
    rng = np.random.default_rng(seed)
    n_draws = max(1, int(n_boot))
    counts = np.full(n_draws, np.nansum(c_after))
    voxels = np.full(n_draws, np.nansum(v_after))
    prior_c = np.array([c for c, _r in PRIOR_OUTCOMES])
    prior_r = np.array([r for _c, r in PRIOR_OUTCOMES])
    groups = np.unique(group)
    for g in groups:
        rev = np.flatnonzero((group == g) & reviewed)
        unrev = np.flatnonzero((group == g) & ~reviewed)
        if len(unrev) == 0:
            continue
        alpha = np.concatenate([np.ones(len(rev)), np.full(len(PRIOR_OUTCOMES), prior / len(PRIOR_OUTCOMES))])
        keep = alpha > 0
        if not keep.any():  # no reviewed object and no prior (only with min_reviewed=0, prior=0)
            return {**base, "enough": False,
                    "text": f"{k} of {n} objects reviewed: review some (with random audits) before error "
                            "bars can be estimated"}
        oc = np.concatenate([c_after[rev], prior_c])[keep]
        counts += _draw_group(rng, oc, alpha[keep], len(unrev), n_draws)
        # the prior's pseudo-objects have the size of the group's average unreviewed object
        mean_un = float(np.mean(before[unrev]))
        ob = np.concatenate([before[rev], np.full(len(PRIOR_OUTCOMES), mean_un)])[keep]
        oa = np.concatenate([v_after[rev], prior_r * mean_un])[keep]
        voxels += _ratio_group(rng, oa, ob, alpha[keep], before[unrev], n_draws)
    vf = voxels / total_vox
    a = (1 - level) / 2
    count = float(np.median(counts))
    c_lo = float(np.floor(np.quantile(counts, a, method="lower")))
    c_hi = float(np.ceil(np.quantile(counts, 1 - a, method="higher")))
    v_mid = float(np.median(vf))
    v_lo, v_hi = float(np.quantile(vf, a, method="lower")), float(np.quantile(vf, 1 - a, method="higher"))
    pct = int(round(level * 100))
    text = (f"count {count:.0f}, {pct}% interval {c_lo:.0f}-{c_hi:.0f}; "
            f"volume fraction {100 * v_mid:.1f}%, {pct}% interval {100 * v_lo:.1f}-{100 * v_hi:.1f}% "
            f"({k} of {n} objects reviewed; objects the model missed entirely are not counted)")
    return {**base, "enough": True, "count": count, "count_low": c_lo, "count_high": c_hi,
            "volume_fraction": v_mid, "volume_fraction_low": v_lo, "volume_fraction_high": v_hi,
            "groups": len(groups), "text": text}


def decisions_for_error_bars(records: dict) -> dict:
    """``DecisionLog.latest()`` records -> the id -> {count_after, voxels_after, audit} :func:`error_bars`
    takes (``audit`` None for records written before audits were recorded)."""
    return {int(i): {"count_after": r["count_after"], "voxels_after": r["voxels_after"], "audit": r.get("audit")}
            for i, r in records.items()}
