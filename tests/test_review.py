"""The review queue: signals, the score, a deterministic order, decisions into the store, error bars."""

import numpy as np
import pytest

from napari_segnets import objects
from napari_segnets.curation import Store
from napari_segnets.errors import InputError
from napari_segnets.review import (
    DecisionLog,
    add_signals,
    default_score,
    describe_object,
    error_bars,
    fit_score,
    next_object,
    ranked,
    record_decision,
    review,
)

VOXEL = (5.0, 5.0, 5.0)


def _scene():
    """Three good balls, one that one view splits, one flickering speck; views as probabilities."""
    z, y, x = np.mgrid[:12, :48, :48]
    prob = np.zeros((12, 48, 48), np.float32)
    for cz, cy, cx in ((6, 10, 10), (6, 10, 36), (6, 36, 10)):
        prob[(z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 <= 16] = 0.95
    prob[3:9, 30:42, 30:42] = 0.9  # a box ...
    other = prob.copy()
    other[:, 35:37, 30:42] = 0.1  # ... that the second view cuts in two
    prob[5, 2:4, 44:46] = 0.55  # a speck in one slice, barely above threshold
    other[5, 2:4, 44:46] = 0.3
    return prob, {"xy": prob, "flip_x": other}


def _queue():
    prob, views = _scene()
    # min_voxels=0 keeps the 4-voxel speck (objects drop specks by default) to check its signals
    labels = objects.label_objects(prob, voxel_size=VOXEL, min_voxels=0)
    table = objects.measure(labels, voxel_size=VOXEL)
    add_signals(table, labels, views, voxel_size=VOXEL)
    return labels, ranked(table)


def test_signals_point_at_the_odd_objects():
    labels, q = _queue()
    assert len(q) == 5
    by_id = {r["id"]: r for r in q.rows()}
    box = int(labels[6, 36, 36])
    speck = int(labels[5, 2, 44])
    assert by_id[box]["split_merge"] == 0.5 and by_id[speck]["split_merge"] == 0.5  # split / vanished
    assert by_id[speck]["cut_one_slice"] == 1.0 and by_id[speck]["low_confidence"] > 0.4
    ball = int(labels[6, 10, 10])
    assert by_id[ball]["mask_change"] == 0.0 and by_id[ball]["split_merge"] == 0.0
    assert set(q["id"][:2].tolist()) == {box, speck}  # the two odd ones come first
    assert q["rank"].tolist() == [1, 2, 3, 4, 5]


def test_views_with_a_class_axis_of_one_read_as_foreground():
    """A (1, Z, Y, X) sigmoid map is the foreground (objects.foreground reads it so), not background."""
    from napari_segnets.review.signals import foreground_of

    prob, views = _scene()
    assert np.array_equal(foreground_of(prob[None], 3), prob)
    two = np.stack([1 - prob, prob])
    assert np.allclose(foreground_of(two, 3), prob)
    _labels, q = _queue()
    labels = objects.label_objects(prob, voxel_size=VOXEL, min_voxels=0)
    table = objects.measure(labels, voxel_size=VOXEL)
    add_signals(table, labels, {k: v[None] for k, v in views.items()}, voxel_size=VOXEL)
    assert ranked(table)["id"].tolist() == q["id"].tolist()


def test_order_is_deterministic_and_ties_go_by_id():
    _labels, q = _queue()
    again = ranked(q)
    assert again["id"].tolist() == q["id"].tolist()
    q2 = q.copy()
    q2.set("score", np.zeros(len(q2)))
    tie = ranked(q2, score=lambda t: np.zeros(len(t)))
    assert tie["id"].tolist() == sorted(q["id"].tolist())


def test_review_end_to_end_is_deterministic():
    import torch

    from napari_segnets import models

    torch.manual_seed(0)
    net = models.build("unet", base=4, depth=2).eval()
    image = (np.random.default_rng(1).random((3, 16, 16)) * 255).astype(np.uint8)
    a = review(net, image, device="cpu", views=("xy", "flip_x"), threshold=0.45)
    b = review(net, image, device="cpu", views=("xy", "flip_x"), threshold=0.45)
    assert np.array_equal(a.labels, b.labels)
    assert a.table["id"].tolist() == b.table["id"].tolist()
    assert np.array_equal(a.table["score"], b.table["score"])
    assert a.probability.shape == image.shape
    # no voxel size: sizes were measured at 1 nm per voxel, so the columns say voxels
    assert "volume_vox3" in a.table.names and not [n for n in a.table.names if n.endswith(("_nm", "_nm2", "_nm3"))]
    with pytest.raises(InputError, match="at least two views"):
        review(net, image, device="cpu", views=("xy",))


def test_next_object_follows_the_queue_with_audits():
    _labels, q = _queue()
    ids = q["id"].tolist()
    assert next_object(q) == ids[0]
    assert next_object(q, ids[:2]) == ids[2]
    assert next_object(q, ids) is None
    picks, done = [], []
    for _ in range(5):
        picks.append(next_object(q, done, audit_every=3, seed=4))
        done.append(picks[-1])
    assert sorted(picks) == sorted(ids)  # every object once
    assert picks == [next_object(q, picks[:k], audit_every=3, seed=4) for k in range(5)]


def test_decisions_land_in_the_store_with_provenance(tmp_path):
    labels, q = _queue()
    image = (np.random.default_rng(0).random(labels.shape) * 255).astype(np.uint8)
    ckpt = tmp_path / "m.safetensors"
    ckpt.write_bytes(b"weights")
    log, store = DecisionLog(tmp_path / "decisions.jsonl"), Store(tmp_path / "store")
    box = int(labels[6, 36, 36])
    fixed = np.zeros(labels.shape, bool)
    fixed[3:9, 30:35, 30:42] = True
    fixed[3:9, 37:42, 30:42] = True  # the reviewer splits it in two
    rec = record_decision(log, object_id=box, decision="fix", labels=labels, fixed=fixed, image=image,
                          store=store, source="stack.tif", checkpoint=ckpt, row=q.row(box), reviewer="ana")
    assert rec["count_after"] == 2 and rec["voxels_after"] == int(fixed.sum())
    assert rec["checkpoint"]["sha256"] and rec["reviewer"] == "ana" and rec["queue"]["rank"] >= 1
    assert len(rec["samples"]) == 6  # slices 3..8
    samples = {s["id"]: s for s in store.samples()}
    first = samples[rec["samples"][0]]
    assert first["source"] == "stack.tif" and first["index"] == 3 and "object" in first["note"]
    assert first["checkpoint"]["sha256"] == rec["checkpoint"]["sha256"]
    img, mask = store.load(rec["samples"][2])
    y0, x0, y1, x1 = first["region"]
    assert np.array_equal(img, image[5, y0:y1, x0:x1])
    assert np.array_equal(mask == 1, fixed[5, y0:y1, x0:x1])
    assert set(np.unique(mask)) <= {0, 1, 255}
    speck = int(labels[5, 2, 44])
    record_decision(log, object_id=speck, decision="delete", labels=labels, image=image, store=store)
    record_decision(log, object_id=speck, decision="accept", labels=labels)  # changed mind: latest wins
    latest = log.latest()
    assert latest[speck]["decision"] == "accept" and latest[box]["decision"] == "fix"
    assert len(log.records()) == 3  # append-only
    assert store.verify()["ok"]
    with pytest.raises(InputError, match="Unknown decision"):
        record_decision(log, object_id=box, decision="maybe", labels=labels)


def test_torn_last_line_is_skipped(tmp_path):
    log = DecisionLog(tmp_path / "d.jsonl")
    log.append({"kind": "decision", "object": 1, "decision": "accept"})
    with open(log.path, "ab") as f:
        f.write(b'{"kind": "deci')
    assert len(log.records()) == 1
    log.append({"kind": "decision", "object": 2, "decision": "delete"})  # cuts the torn tail off
    assert [r["object"] for r in log.records()] == [1, 2]


def _population(n=200, seed=0):
    """A queue whose high scores are wrong more often; the truth after full review is known."""
    rng = np.random.default_rng(seed)
    score = rng.random(n)
    voxels = rng.integers(100, 1000, n)
    wrong = rng.random(n) < 0.1 + 0.6 * score
    count_after = np.where(wrong, rng.choice([0, 2], n), 1)
    voxels_after = np.where(wrong, (voxels * rng.uniform(0.3, 1.5, n)).astype(int), voxels) * (count_after > 0)
    table = objects.ObjectTable({"id": np.arange(1, n + 1), "voxels": voxels, "score": score},
                                shape=(100, 100, 100))
    truth = {i + 1: {"count_after": int(c), "voxels_after": int(v)}
             for i, (c, v) in enumerate(zip(count_after, voxels_after))}
    return table, truth


def _realistic(seed=0, n=17, p_wrong=0.15):
    """A queue like EPFL's (n predicted mitochondria, ~15% wrong, the queue finds most of them) and its truth.

    Right objects: 1 object, voxels off by a boundary error (a bias per volume, +- 3%, and 4% per object).
    Wrong ones: false or a duplicate fragment (deleted: 0), a merge of two or three (2 or 3 objects, about
    its volume), a bad boundary or the main piece of a split (1 object, 0.4-0.7x or 1.4-2.5x its volume), an
    object missed beside it (2 objects, 1.3-2x). Besides, Poisson(0.5) objects no prediction touches.
    Returns the table, id -> {count_after, voxels_after, wrong} (what a full review finds) and the targets.
    """
    rng = np.random.default_rng(seed)
    voxels = np.maximum(rng.lognormal(np.log(60_000), 0.8, n), 8000).astype(int)
    wrong = rng.random(n) < p_wrong
    score = rng.random(n) + 0.8 * wrong
    bias = 1 + rng.normal(0, 0.03)
    count_after, ratio = np.ones(n, int), bias + rng.normal(0, 0.04, n)
    kind = rng.choice(5, n, p=[0.35, 0.25, 0.05, 0.2, 0.15])
    for i in np.flatnonzero(wrong):
        if kind[i] == 0:
            count_after[i], ratio[i] = 0, 0.0
        elif kind[i] in (1, 2):
            count_after[i], ratio[i] = 2 + (kind[i] == 2), rng.normal(1.0, 0.1)
        elif kind[i] == 3:
            ratio[i] = rng.uniform(0.4, 0.7) if rng.random() < 0.5 else rng.uniform(1.4, 2.5)
        else:
            count_after[i], ratio[i] = 2, rng.uniform(1.3, 2.0)
    voxels_after = np.round(voxels * ratio).astype(int)
    shape = (18, 768, 1024)
    missed = np.maximum(rng.lognormal(np.log(60_000), 0.8, rng.poisson(0.5)), 8000).astype(int)
    table = objects.ObjectTable({"id": np.arange(1, n + 1), "voxels": voxels, "score": score}, shape=shape)
    truth = {i + 1: {"count_after": int(c), "voxels_after": int(v), "wrong": bool(w)}
             for i, (c, v, w) in enumerate(zip(count_after, voxels_after, wrong))}
    total = float(np.prod(shape))
    target = {"full_count": int(count_after.sum()), "full_vf": voxels_after.sum() / total,
              "truth_count": int(count_after.sum()) + len(missed),
              "truth_vf": (voxels_after.sum() + missed.sum()) / total}
    return table, truth, target


def _reviewed_by_queue(table, k, *, audit_every=3, seed=0):
    """The ids a review of k objects picks: the queue (highest score first) with a random audit every 3rd."""
    queue = ranked(table, score=lambda t: np.asarray(t["score"], float))
    done = []
    for _ in range(min(k, len(queue))):
        done.append(next_object(queue, done, audit_every=audit_every, seed=seed))
    return done


def test_error_bars_say_when_too_few_and_are_exact_when_all_reviewed():
    table, truth = _population()
    few = error_bars(table, {k: truth[k] for k in list(truth)[:4]})
    assert not few["enough"] and "review at least" in few["text"]
    full = error_bars(table, truth, n_boot=50)
    count = sum(t["count_after"] for t in truth.values())
    vf = sum(t["voxels_after"] for t in truth.values()) / 1e6
    assert full["count"] == count and full["count_low"] == count == full["count_high"]
    assert full["volume_fraction"] == pytest.approx(vf)


def test_error_bars_cover_the_truth_from_a_random_sample():
    table, truth = _population(seed=3)
    count = sum(t["count_after"] for t in truth.values())
    hits = 0
    for s in range(20):
        rng = np.random.default_rng(100 + s)
        pick = rng.choice(table.ids, 60, replace=False)
        eb = error_bars(table, {int(i): truth[int(i)] for i in pick}, n_boot=300, seed=s)
        assert eb["enough"] and eb["count_low"] <= eb["count"] <= eb["count_high"]
        hits += eb["count_low"] <= count <= eb["count_high"]
    assert hits >= 16  # a 95% interval: 20/20 expected, 16 allows for chance


def _review_coverage(pops, k, *, p_wrong=0.15, only_all_accepted=False):
    """Coverage of the full-review count and volume fraction, and interval widths, over synthetic reviews."""
    hits, widths = [], []
    for p in range(pops):
        table, truth, target = _realistic(seed=p, p_wrong=p_wrong)
        for r in range(2):
            done = _reviewed_by_queue(table, k, seed=r)
            if only_all_accepted and any(truth[i]["count_after"] != 1 for i in done):
                continue
            eb = error_bars(table, {i: truth[i] for i in done}, n_boot=500, seed=r)
            assert eb["enough"]
            hits.append((eb["count_low"] <= target["full_count"] <= eb["count_high"],
                         eb["volume_fraction_low"] <= target["full_vf"] <= eb["volume_fraction_high"]))
            widths.append((eb["count_high"] - eb["count_low"],
                           (eb["volume_fraction_high"] - eb["volume_fraction_low"]) / target["full_vf"]))
    return np.mean(hits, axis=0), np.median(widths, axis=0), len(hits)


def test_error_bars_cover_repeated_queue_reviews_of_a_small_population():
    """EPFL's size: 17 objects, ~15% wrong, 10 reviewed (the queue with an audit every third pick)."""
    (count_cov, vf_cov), (count_width, vf_width), n = _review_coverage(60, 10)
    assert n == 120
    assert count_cov >= 0.9 and vf_cov >= 0.9, (count_cov, vf_cov)
    # honest, not unbounded: about one object either way, not the whole unreviewed rest
    assert 1 <= count_width <= 4 and 0 < vf_width < 0.3, (count_width, vf_width)


def test_error_bars_are_not_a_point_when_every_reviewed_object_was_accepted():
    """An all-accepted review still leaves each unreviewed object some chance of being wrong."""
    (count_cov, vf_cov), (count_width, vf_width), n = _review_coverage(80, 10, p_wrong=0.08,
                                                                         only_all_accepted=True)
    assert n >= 40
    assert count_width >= 1 and vf_width > 0
    assert count_cov >= 0.9 and vf_cov >= 0.9, (count_cov, vf_cov, n)


def test_error_bars_are_deterministic_for_a_seed_and_narrow_as_more_are_reviewed():
    table, truth, _target = _realistic(seed=5)
    done = _reviewed_by_queue(table, 10)
    a = error_bars(table, {i: truth[i] for i in done}, n_boot=400, seed=7)
    b = error_bars(table, {i: truth[i] for i in done}, n_boot=400, seed=7)
    assert a == b and a["count_low"] < a["count_high"]
    assert "missed entirely are not counted" in a["text"] and "10 of 17 objects reviewed" in a["text"]
    more = error_bars(table, {i: truth[i] for i in _reviewed_by_queue(table, 16)}, n_boot=400, seed=7)
    assert (more["volume_fraction_high"] - more["volume_fraction_low"]
            < a["volume_fraction_high"] - a["volume_fraction_low"])


def test_fitted_score_needs_both_outcomes_and_learns_the_signal():
    rng = np.random.default_rng(0)
    n = 80
    signal = rng.random(n)
    table = objects.ObjectTable({"id": np.arange(1, n + 1), "mask_change": signal,
                                 "flicker": rng.random(n)})
    wrong = {i + 1: bool(signal[i] > 0.6) for i in range(n)}
    assert fit_score(table, {1: True, 2: False}) is None
    fitted = fit_score(table, wrong)
    s = fitted.score(table)
    assert np.corrcoef(s, signal)[0, 1] > 0.8 and "mask_change" in fitted.describe()
    assert default_score(table).shape == (n,)


def test_describe_object_gives_where_to_jump_and_why():
    labels, q = _queue()
    first = int(q["id"][0])
    d = describe_object(q, first)
    assert d["rank"] == 1 and len(d["center"]) == 3 and d["box"][0] <= d["box"][1]
    assert labels[tuple(int(round(c)) for c in d["center"])] in (first, 0)
    assert d["text"].startswith(f"object {first}, rank 1 of 5") and set(d["signals"]) >= {"mask_change", "flicker"}


def test_describe_object_names_only_signals_that_say_something():
    labels, q = _queue()
    by_id = {r["id"]: r for r in q.rows()}
    box, speck, ball = int(labels[6, 36, 36]), int(labels[5, 2, 44]), int(labels[6, 10, 10])
    assert by_id[box]["cut_one_slice"] == 0.0 and by_id[ball]["mask_change"] == 0.0
    box_text = describe_object(q, box)["text"]
    assert "cut_one_slice" not in box_text and " 0 (" not in box_text  # 0 = nothing suspicious
    assert "(above 75% of objects)" in box_text  # its strongest signals are above 3 of the 4 others
    speck_text = describe_object(q, speck)["text"]
    assert "cut_one_slice 1 (above every other object)" in speck_text
    # a ball like the others: no signal of it is above 0 and higher than half of the others
    ball_text = describe_object(q, ball)["text"]
    assert "mask_change" not in ball_text and "split_merge" not in ball_text
    for text in (box_text, speck_text, ball_text):
        assert " 0 (" not in text and "nan" not in text


def test_review_drops_specks_as_objects_does_unless_told():
    from napari_segnets.progress import drive
    from napari_segnets.review import review_views_iter

    prob, _views = _scene()
    views = {"xy": prob, "flip_x": prob}  # both keep the speck (p 0.55 on 2 x 2 voxels of one slice)
    image = np.zeros(prob.shape, np.uint8)
    default = drive(review_views_iter(views, image, voxel_size=VOXEL))
    kept = drive(review_views_iter(views, image, voxel_size=VOXEL, min_voxels=0, min_fraction=0))
    assert len(kept.table) == len(default.table) + 1  # the 4-voxel speck (under 2x2x2) is the one dropped
    assert kept.labels[5, 2, 44] > 0 and default.labels[5, 2, 44] == 0
    # kept as an object, it is a fragment (under a tenth of the typical object): the review keeps fragments
    # unless told (the reviewer judges them), and drops them as `objects` does when asked
    assert len(drive(review_views_iter(views, image, voxel_size=VOXEL, min_voxels=0)).table) == len(kept.table)
    fragment = drive(review_views_iter(views, image, voxel_size=VOXEL, min_voxels=0, min_fraction=0.1))
    assert len(fragment.table) == len(default.table) and fragment.labels[5, 2, 44] == 0
    assert any(n.startswith("1 fragment under a tenth of the typical object (87 voxels") for n in fragment.notes)


def test_default_views_leave_the_costly_planes_out():
    from napari_segnets.review import default_views

    assert default_views((30, 768, 1024), (5.0, 5.0, 5.0)) == ("xy", "flip_y", "flip_x", "rot90")


def test_fixed_mask_is_the_object_as_the_reviewer_left_it():
    from napari_segnets.review import fixed_mask

    queue = np.zeros((2, 10, 12), np.uint32)
    queue[:, 2:8, 1:7] = 1
    queue[:, 2:8, 8:11] = 2  # a neighbour
    edited = queue.copy()
    edited[:, 2:8, 4] = 0  # the reviewer cuts object 1 in two ...
    edited[:, 2:8, 5:7] = 3  # ... one part gets a new id
    edited[:, 8, 5:7] = 3  # and grows a row outside the old footprint
    edited[:, 2:8, 7] = 2  # the neighbour, painted up to it, does not count
    fixed = fixed_mask(queue, edited, 1)
    expect = np.zeros(queue.shape, bool)
    expect[:, 2:8, 1:4] = True
    expect[:, 2:9, 5:7] = True
    assert np.array_equal(fixed, expect)
    assert np.array_equal(fixed_mask(queue, queue, 1), queue == 1)  # unchanged
    with pytest.raises(InputError, match="not in the queue"):
        fixed_mask(queue, edited, 7)


def test_log_holds_several_queues_and_matches_reviewed_objects(tmp_path):
    from napari_segnets.review import (
        fit_score_from_records,
        match_reviewed,
        queue_fingerprint,
        voxels_of,
    )

    labels, q = _queue()
    moved = np.roll(labels, 1, axis=2)  # a re-ranked queue: same objects, shifted, new ids
    moved = np.where(moved > 0, moved + 10, 0).astype(labels.dtype)
    a, b = queue_fingerprint(labels), queue_fingerprint(moved)
    assert a != b and a == queue_fingerprint(labels.copy())
    log = DecisionLog(tmp_path / "d.jsonl")
    first = int(q["id"][0])
    record_decision(log, object_id=first, decision="accept", labels=labels, row=q.row(first), queue_id=a)
    record_decision(log, object_id=first + 10, decision="delete", labels=moved, queue_id=b)
    assert set(log.latest(a)) == {first} and set(log.latest(b)) == {first + 10} and len(log.latest()) == 2
    ball = int(labels[6, 10, 10])
    matched = match_reviewed({ball: np.flatnonzero(labels == ball), 99: np.zeros(0, int)}, moved)
    assert list(matched) == [ball + 10] and matched[ball + 10][0] == ball and 0.5 <= matched[ball + 10][1] < 1
    assert match_reviewed({ball: np.flatnonzero(labels == ball)}, moved, min_iou=0.99) == {}
    found = voxels_of(labels, [ball, first, 12345])  # what match_reviewed takes, for many objects at once
    assert set(found) == {ball, first} and np.array_equal(found[ball], np.flatnonzero(labels == ball))
    assert voxels_of(labels, []) == {}
    # the rule is fitted on the queue rows kept in every record, whatever queue they came from
    assert fit_score_from_records(log.records()) is None  # one of each: too few
    rng = np.random.default_rng(0)
    records = [{"kind": "decision", "queue_id": "q1" if i % 2 else "q2", "object": i // 2,
                "decision": "fix" if s > 0.6 else "accept", "queue": {"mask_change": s, "flicker": f}}
               for i, (s, f) in enumerate(zip(rng.random(60), rng.random(60)))]
    fitted = fit_score_from_records(records)
    assert fitted is not None and fitted.n_wrong + fitted.n_right == 60
    assert fitted.names == ["mask_change", "flicker"] and "mask_change" in fitted.describe()
    # a queue without one of the fitted signals (a 2D image has no flicker) is still ranked by the rule
    flat = objects.ObjectTable({"id": np.arange(1, 4), "mask_change": np.array([0.1, 0.9, 0.5])})
    p = fitted.score(flat)
    assert p.shape == (3,) and p[1] > p[2] > p[0]


def test_a_changed_decision_replaces_its_samples_in_the_store(tmp_path):
    labels, q = _queue()
    image = np.zeros(labels.shape, np.uint8)
    log, store = DecisionLog(tmp_path / "d.jsonl"), Store(tmp_path / "store")
    box = int(labels[6, 36, 36])
    first = record_decision(log, object_id=box, decision="accept", labels=labels, image=image, store=store,
                            margin=2)
    fixed = labels == box
    fixed[3:9, 30:42, 27:30] = True  # the reviewer thinks again: it is wider (other regions)
    second = record_decision(log, object_id=box, decision="fix", labels=labels, fixed=fixed, image=image,
                             store=store, margin=2, replaces=first)
    live = {s["id"] for s in store.samples()}
    assert live == set(second["samples"]) and len(live) == 6  # slices 3..8, no accept sample left
    assert set(second["replaced_samples"]) == set(first["samples"]) and store.verify()["ok"]


def test_review_benchmark_reruns_the_coverage_from_its_dumps(tmp_path, capsys):
    """benchmarks/review.py --dump writes what (c) needs; --from-dump reruns (c) and (a') without a model."""
    from benchmarks.review import main, read_dump, write_dump

    table, truth, target = _realistic(seed=2)
    queue = ranked(table, score=lambda t: np.asarray(t["score"], float))
    write_dump(tmp_path / "review-seed4.npz", queue, truth, target["truth_count"], target["truth_vf"], 4)
    q, out, count, vf, seed = read_dump(tmp_path / "review-seed4.npz")
    assert q["id"].tolist() == queue["id"].tolist() and q.shape == queue.shape and out == truth
    assert (count, seed) == (target["truth_count"], 4) and vf == pytest.approx(target["truth_vf"])
    main(["--from-dump", str(tmp_path), "--repeats", "4", "--review-n", "10"])
    text = capsys.readouterr().out
    assert "coverage count (all predicted reviewed)" in text and "10 of 17 objects reviewed" in text
    row = next(line for line in text.splitlines() if line.startswith("| 4 |"))
    assert row.split("|")[2].strip() == row.split("|")[3].strip() == "4"  # four reviews, each with an estimate


def test_review_benchmark_reads_its_slice_ranges_and_refuses_bad_ones():
    """--train-slices / --review-slices A:B: parsed within the stack, refused with a sentence otherwise."""
    from benchmarks.review import SPLITS, parse_slices, span

    assert parse_slices("0:8", 20) == slice(0, 8) and span(parse_slices("8:20", 20)) == "8-19"
    for data, (train, held) in SPLITS.items():  # the defaults fit each dataset's stack and do not overlap
        a, b = parse_slices(train, 100), parse_slices(held, 100)
        assert a.stop <= b.start, data
    for bad, why in (("8", "A:B"), ("5:3", "0 <= A < B"), ("0:21", "slices 0-19")):
        with pytest.raises(SystemExit, match=why):
            parse_slices(bad, 20)


def test_the_stake_weighs_the_likelihood_in_both_rules():
    """error_volume = mask_change x voxels; between equally suspicious objects the one with more at
    stake comes first, and the fitted rule keeps the stake's share on top of its probability."""
    from napari_segnets.review.score import STAKE, percentile_ranks, stake_share

    _labels, q = _queue()
    assert np.allclose(q[STAKE], np.asarray(q["mask_change"]) * np.asarray(q["voxels"]))
    n = 40
    rng = np.random.default_rng(3)
    likely = rng.random(n)
    big = np.where(np.arange(n) % 2 == 0, 1000.0, 10.0)  # even rows: much more at stake
    table = objects.ObjectTable({"id": np.arange(1, n + 1), "mask_change": np.repeat(likely[::2], 2),
                                 "voxels": big, STAKE: np.repeat(likely[::2], 2) * big})
    s = default_score(table)
    assert (s[0::2] > s[1::2]).all(), "the same likelihood, more at stake: ranked higher"
    wrong = {i + 1: bool(table["mask_change"][i] > 0.5) for i in range(n)}
    fitted = fit_score(table, wrong)
    assert fitted.names == ["mask_change"], "the stake is not a likelihood signal"
    p = fitted.probability(table)
    assert np.allclose(p[0::2], p[1::2])
    share = stake_share()
    assert 0 < share < 0.5
    assert np.allclose(fitted.score(table), (1 - share) * p + share * percentile_ranks(table[STAKE]))


def test_error_bars_do_not_put_a_deleted_specks_zero_on_big_objects():
    """Many small false objects and big right ones: the volume is a ratio of sums (a deleted speck
    weighs by its size), so the interval sits on the truth instead of far below it."""
    rng = np.random.default_rng(0)
    small, big = 30, 20
    voxels = np.concatenate([np.full(small, 100), np.full(big, 10_000)])
    wrong = np.concatenate([rng.random(small) < 0.6, np.zeros(big, bool)])
    after = np.where(wrong, 0, np.round(voxels * rng.normal(1.0, 0.03, small + big))).astype(int)
    shape = (10, 100, 1000)
    table = objects.ObjectTable({"id": np.arange(1, small + big + 1), "voxels": voxels,
                                 "score": rng.random(small + big)}, shape=shape)
    truth = {i + 1: {"count_after": int(not w), "voxels_after": int(a)} for i, (w, a) in enumerate(zip(wrong, after))}
    full_vf = after.sum() / np.prod(shape)
    hits, mids = 0, []
    for s in range(20):
        pick = np.random.default_rng(50 + s).choice(table.ids, 15, replace=False)
        eb = error_bars(table, {int(i): truth[int(i)] for i in pick}, n_boot=500, seed=s)
        hits += eb["volume_fraction_low"] <= full_vf <= eb["volume_fraction_high"]
        mids.append(eb["volume_fraction"])
    assert hits >= 18, hits
    assert abs(np.median(mids) / full_vf - 1) < 0.05, np.median(mids) / full_vf


def test_an_audit_just_below_the_head_stays_in_the_random_sample():
    """The queue's first 10 objects reviewed in order, then audits: one falls on the object just below them
    (a false object, deleted), three deep in the tail (right). Below the head 4 more false objects wait.
    Known as an audit, the deleted one stays in the rest's random sample and the interval holds the truth;
    placed by position (logs without the audit flag) it joins the head and the interval misses."""
    n = 30
    table = objects.ObjectTable({"id": np.arange(1, n + 1), "voxels": np.full(n, 1000),
                                 "score": np.linspace(1.0, 0.0, n)}, shape=(10, 100, 100))
    count = {i: 1 for i in range(1, n + 1)}
    count.update({2: 0, 5: 0, 7: 2, 11: 0, 12: 0, 13: 0, 14: 0, 15: 0})
    truth = {i: {"count_after": c, "voxels_after": 1000 * c} for i, c in count.items()}
    audits = [11, 19, 23, 27]
    reviewed = {i: truth[i] for i in [*range(1, 11), *audits]}
    full = sum(count.values())
    flagged = error_bars(table, reviewed, audited=audits, n_boot=2000)
    assert flagged["count_low"] <= full <= flagged["count_high"], (flagged["text"], full)
    positional = error_bars(table, reviewed, n_boot=2000)
    assert not positional["count_low"] <= full <= positional["count_high"], (positional["text"], full)
    # the flags travel with the decisions (the log's records), as the Objects widget writes them
    from napari_segnets.review import decisions_for_error_bars

    records = {i: {**truth[i], "audit": i in audits} for i in reviewed}
    from_log = error_bars(table, decisions_for_error_bars(records), n_boot=2000)
    assert from_log["text"] == flagged["text"]
    old_log = {i: {**truth[i]} for i in reviewed}  # written before audits were recorded: positional
    assert error_bars(table, decisions_for_error_bars(old_log), n_boot=2000)["text"] == positional["text"]
