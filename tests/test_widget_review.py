"""The Objects widget's review: rank, next likely error, accept / fixed / delete, error bars, re-rank."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests._widget_helpers import Notes, wait_for

pytestmark = pytest.mark.gui

SCALE = (20.0, 5.0, 5.0)
DISCS = ((14, 14, 7, 180), (14, 46, 5, 180), (46, 16, 8, 180), (44, 44, 6, 180), (56, 56, 3, 180),
         (30, 30, 4, 60))  # the last is dim: above the "fine-tuned" model's threshold only
N = 5  # objects the first model finds


def _stack():
    """Discs through a 4-slice stack on a noisy background (uint8); normalised, the background
    stays below 0.19, the dim disc lies in 0.27-0.46, the bright ones above 0.82."""
    rng = np.random.default_rng(0)
    _z, y, x = np.mgrid[:4, :64, :64]
    img = rng.random((4, 64, 64)) * 40
    for cy, cx, r, amplitude in DISCS:
        img[(y - cy) ** 2 + (x - cx) ** 2 <= r * r] += amplitude
    img[0, 52:61, 52:61] -= 180  # the smallest disc (over a tenth of the typical object) misses a slice: a shape signal
    return img.clip(0, 255).astype(np.uint8)


def _threshold_net(level=0.5, gain=20.0):
    """A base-4 U-Net wired to compute sigmoid(gain * (x - level)) of the normalised image.

    Its probabilities follow the image, so its objects are the discs: tests know what it sees.
    """
    import torch

    from napari_segnets import models

    net = models.build("unet", base=4, depth=1).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.fill_(1.0)
                m.running_mean.zero_()
                m.running_var.fill_(1.0)
        convs = [net.down[0][0][0], net.down[0][1][0], net.decode[0][0][0], net.decode[0][1][0]]
        for conv in convs:
            conv.weight[0, 0, 1, 1] = 1.0  # channel 0 carries the image through
        net.decode[0][0][0].weight[0, 4, 1, 1] = 1.0  # whichever half of the concatenation is the skip
        net.head.weight[0, 0, 0, 0] = gain
        net.head.bias[0] = -gain * level
    return net


def _checkpoint(path, level=0.5):
    from napari_segnets import checkpoints

    checkpoints.save(path, _threshold_net(level), {"normalization": {"mode": "percentile", "low": 1.0,
                                                                       "high": 99.8}})
    return path


@pytest.fixture
def ranked(make_napari_viewer, qtbot, tmp_path):
    from napari_segnets._widgets import ObjectsWidget

    viewer = make_napari_viewer()
    image = viewer.add_image(_stack(), name="em", scale=SCALE)
    widget = ObjectsWidget(viewer)
    widget.review_image.value = image
    widget.review_checkpoint.file.value = _checkpoint(tmp_path / "m.safetensors")
    assert widget.review_checkpoint.model.value == "m"
    widget.review_device.value = "cpu"
    widget.store.value = tmp_path / "store"
    widget.reviewer.value = "ana"
    assert widget.rank_objects() is not None, widget.status.value
    wait_for(qtbot, widget)
    assert widget.queue_table is not None, widget.status.value
    return viewer, widget, tmp_path


def _log(tmp_path):
    return [json.loads(line) for line in (tmp_path / "store-review.jsonl").read_text().splitlines()]


def test_rank_then_next_goes_to_the_top_object_and_accept_records_it(ranked):
    from napari_segnets.curation import Store
    from napari_segnets.review import next_object

    viewer, widget, tmp_path = ranked
    queue = widget.queue_table
    layer = widget.objects_layer.value
    assert layer.name == "em review (m)" and tuple(layer.scale) == SCALE
    assert len(queue) == N  # the bright discs, one object each
    assert queue["rank"].tolist() == list(range(1, N + 1))
    assert "mask_change" in queue.names and "objects ranked by the default rule" in widget.review_info.value
    assert widget.table.ids() == queue["id"].tolist()  # shown in queue order
    top = int(queue["id"][0])
    assert widget.next_error() == top
    assert layer.selected_label == top and widget.table.selected_ids() == [top]
    row = queue.row(top)
    assert viewer.dims.point[0] == pytest.approx(row["centroid_z_nm"], abs=SCALE[0])
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    assert tuple(camera.center[-2:]) == pytest.approx((row["centroid_y_nm"], row["centroid_x_nm"]), abs=1)
    assert f"object {top}, rank 1 of {N}" in widget.review_info.value
    assert "error bars" in widget.error_bars_label.value and "0 of 5" in widget.error_bars_label.value

    record = widget.decide("accept")
    assert record["decision"] == "accept" and record["reviewer"] == "ana" and record["source"] == "em"
    assert record["checkpoint"]["sha256"] and record["queue"]["rank"] == 1 and record["queue_id"] == widget.queue_id
    assert record["voxels_after"] == int((np.asarray(layer.data) == top).sum())
    assert record["audit"] is False  # shown as the next likely error, not as a random audit
    samples = Store(tmp_path / "store").samples()
    assert record["samples"] and sorted(s["id"] for s in samples) == sorted(record["samples"])
    assert [r["object"] for r in _log(tmp_path)] == [top]
    assert "1 of 5" in widget.error_bars_label.value
    # the next pick is the second of the queue; after every object, the error bars have intervals
    assert widget.next_error() == int(queue["id"][1])
    widget.decide("accept")
    third = widget.next_error()  # every third pick (the default) is a random audit, seeded
    assert "random audit" in widget.review_info.value and third == next_object(queue, [top, queue["id"][1]],
                                                                              audit_every=3, seed=0)
    assert widget.current_audit  # recorded with its decision: the error bars' random sample
    # a row of the queue clicked in the table becomes the object to decide on
    last = int(queue["id"][-1])
    widget.table.selectRow(widget.table.row_of(last))
    assert widget.current == last and layer.selected_label == last
    assert f"object {last}, rank {N} of {N}" in widget.review_info.value
    first = int(queue["id"][0])
    widget.table.selectRow(widget.table.row_of(first))
    assert widget.current == first and not widget.current_audit  # chosen by the user, not at random
    while widget.next_error() is not None:
        widget.decide("accept")
    assert "all 5 objects" in widget.review_info.value
    assert any(r["audit"] for r in _log(tmp_path)) and not all(r["audit"] for r in _log(tmp_path))
    assert "count 5, 95% interval 5-5" in widget.error_bars_label.value, widget.error_bars_label.value


def test_fixed_records_the_edited_voxels_and_delete_can_be_undone(ranked, monkeypatch):
    viewer, widget, tmp_path = ranked
    layer = widget.objects_layer.value
    notes = Notes(monkeypatch)
    top = widget.next_error()
    before = np.asarray(layer.data) == top
    # an unchanged object is not a fix
    widget.fixed_button.native.click()
    assert notes.errors and "unchanged" in notes.errors[-1]
    # the reviewer erases a strip and gives one part a new label (a split by hand)
    zs, ys, xs = np.nonzero(before)
    cut = int(np.median(xs))
    strip = before & (np.arange(64)[None, None, :] == cut)
    part = before & (np.arange(64)[None, None, :] > cut)
    layer.data_setitem(np.nonzero(strip), 0)
    layer.data_setitem(np.nonzero(part), 99)
    record = widget.decide("fix")
    assert record["decision"] == "fix" and record["count_after"] == 2
    assert record["voxels_after"] == int(before.sum() - strip.sum())
    # delete: the object leaves the layer through the proofreading delete, and Undo brings it back
    second = widget.next_error()
    assert second != top
    where = np.asarray(layer.data) == second
    record = widget.decide("delete")
    assert record["decision"] == "delete" and record["voxels_after"] == 0 and record["count_after"] == 0
    assert not (np.asarray(layer.data) == second).any()
    assert widget.table.row_of(second) is None
    widget.undo()
    assert np.array_equal(np.asarray(layer.data) == second, where)
    assert [(r["object"], r["decision"]) for r in _log(tmp_path)] == [(top, "fix"), (second, "delete")]
    # the reviewer changes their mind: the latest decision counts, and the store keeps only its samples
    from napari_segnets.curation import Store

    again = widget.decide("accept")
    assert widget.decisions[second]["decision"] == "accept" and _log(tmp_path)[-1]["decision"] == "accept"
    live = {s["id"] for s in Store(tmp_path / "store").samples() if s["note"].endswith(f"object {second}")}
    assert live == set(again["samples"]) and set(again["replaced_samples"]) == set(record["samples"])


def test_buttons_say_what_to_do_instead_of_failing(make_napari_viewer, ranked, monkeypatch):
    from napari_segnets._widgets import ObjectsWidget

    notes = Notes(monkeypatch)
    fresh = ObjectsWidget(make_napari_viewer())
    for button in (fresh.next_button, fresh.accept_button, fresh.fixed_button, fresh.reject_button):
        button.native.click()
    assert len(notes.errors) == 4 and all("Rank the objects first" in e for e in notes.errors)
    assert fresh.rank_objects() is None and "No image layer to review chosen" in notes.errors[-1]
    fresh.review_image.value = fresh.viewer.add_image(np.zeros((16, 16, 3), np.uint8), rgb=True, name="rgb")
    _viewer, widget, tmp_path = ranked
    fresh.review_checkpoint.model.value = "m"  # registered by the ranked fixture
    assert fresh.rank_objects() is None and "single-channel" in notes.errors[-1]
    assert not fresh.runner.running and fresh.queue_table is None
    widget.relabel_button.native.click()  # renumbering would break the queue's ids
    assert "not renumbered" in notes.errors[-1]
    widget.accept_button.native.click()  # a queue, but no object picked yet
    assert "Next likely error" in notes.errors[-1]
    widget.next_error()
    widget.store.line_edit.value = ""  # the user cleared the field
    widget.accept_button.native.click()
    assert "Pick a store folder" in notes.errors[-1]
    assert not (tmp_path / "store-review.jsonl").exists()  # nothing half-recorded


def test_rerank_keeps_the_log_and_skips_what_was_decided(ranked, qtbot):
    _viewer, widget, tmp_path = ranked
    widget.audit_every.value = 0  # the queue's order only
    first = widget.queue_table["id"].tolist()
    picked = [widget.next_error()]
    widget.decide("accept")
    picked.append(widget.next_error())
    widget.decide("accept")
    # the same model again: the same queue (deterministic), its decisions read back from the log
    widget.rank_objects()
    wait_for(qtbot, widget)
    assert widget.queue_table["id"].tolist() == first
    assert set(widget.decisions) == set(picked) and "2 already decided" in widget.review_info.value
    assert widget.next_error() == first[2]
    # a "fine-tuned" model (a lower threshold: it finds the dim disc too) makes a new queue; the objects
    # reviewed before are matched and skipped, the log keeps every decision
    widget.review_checkpoint.file.value = _checkpoint(tmp_path / "tuned.safetensors", level=0.25)
    widget.rank_objects()
    wait_for(qtbot, widget)
    assert widget.objects_layer.value.name == "em review (tuned)"
    assert not widget.decisions and len(widget.carried) == 2, widget.review_info.value
    assert "2 match objects reviewed before" in widget.review_info.value
    new = widget.queue_table["id"].tolist()
    assert len(new) == N + 1
    assert widget.next_error() == [i for i in new if i not in widget.carried][0]
    assert len(_log(tmp_path)) == 2
    # once the log holds 5 wrong and 5 right objects (from any queue), a fitted rule ranks the next one
    from napari_segnets.review import DecisionLog

    rows = widget.queue_table.rows()
    log = DecisionLog(tmp_path / "store-review.jsonl")
    for k in range(10):
        row = dict(rows[k % len(rows)], mask_change=float(k), flicker=float(k % 3))
        log.append({"kind": "decision", "queue_id": "earlier", "object": 100 + k, "decision":
                    "fix" if k >= 5 else "accept", "count_after": 1, "voxels_after": 10, "queue": row})
    widget.rank_objects()
    wait_for(qtbot, widget)
    assert "ranked by a rule fitted on the decisions so far (logistic fit on 5 wrong / 7 right" in \
        widget.review_info.value, widget.review_info.value
    assert widget.queue_table["rank"].tolist() == list(range(1, N + 2))
    assert len(widget.carried) == 2  # the same objects: what was matched stays skipped


def test_rank_can_be_cancelled(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    import time

    from napari_segnets import review
    from napari_segnets._widgets import ObjectsWidget
    from napari_segnets.progress import Progress

    steps = []

    def slow(*_args, **_kwargs):
        for i in range(10_000):
            time.sleep(0.005)
            steps.append(i)
            yield Progress("views", i, 10_000)

    monkeypatch.setattr(review, "review_iter", slow)
    viewer = make_napari_viewer()
    widget = ObjectsWidget(viewer)
    widget.review_image.value = viewer.add_image(_stack(), name="em")
    widget.review_checkpoint.file.value = _checkpoint(tmp_path / "m.safetensors")
    assert widget.rank_objects() is not None
    qtbot.waitUntil(lambda: len(steps) > 3, timeout=20_000)
    widget.review_cancel.native.click()
    wait_for(qtbot, widget)
    assert widget.runner.record.cancelled and widget.queue_table is None and len(steps) < 9_999


def test_a_single_image_reviews_too(make_napari_viewer, qtbot, tmp_path):
    from napari_segnets._widgets import ObjectsWidget

    viewer = make_napari_viewer()
    widget = ObjectsWidget(viewer)
    widget.review_image.value = viewer.add_image(_stack()[1], name="slice", scale=SCALE[1:])
    widget.review_checkpoint.file.value = _checkpoint(tmp_path / "m.safetensors")
    widget.review_device.value = "cpu"
    widget.store.value = tmp_path / "store"
    widget.log_path.value = tmp_path / "mine.jsonl"
    widget.rank_objects()
    wait_for(qtbot, widget)
    assert widget.queue_table is not None and len(widget.queue_table) == N, widget.status.value
    top = widget.next_error()
    assert widget.objects_layer.value.selected_label == top
    record = widget.decide("delete")
    assert record["samples"] and not (widget.objects_layer.value.data == top).any()
    assert json.loads((tmp_path / "mine.jsonl").read_text())["decision"] == "delete"


def test_the_selected_objects_signals_are_all_shown_compactly(ranked, qtbot):
    """Besides the strongest signals in the "next likely error" line, every signal of the object being
    decided is shown (the CSV's names and values, strongest first), with what each measures in the
    tooltip; clicking another row of the queue shows that object's; the panel stays within 450 px."""
    from napari_segnets.review.signals import SIGNALS

    _viewer, widget, _ = ranked
    queue = widget.queue_table
    names = [n for n in SIGNALS if n in queue.columns]
    assert widget.signals_label.value == ""
    top = widget.next_error()
    text = widget.signals_label.value
    assert text.startswith(f"all signals of object {top} ")
    row = queue.row(top)
    for n in names:
        value = float(row[n])
        assert f"{n} {'0' if value == 0 else f'{value:.2g}'}" in text
    assert all(f"{n}: {SIGNALS[n]}" in widget.signals_label.tooltip for n in names)
    other = int(queue["id"][-1])
    widget.table.selectRow(widget.table.row_of(other))  # a click on another row of the queue
    assert widget.current == other and widget.signals_label.value.startswith(f"all signals of object {other} ")
    scroll = getattr(widget.native, "_segnets_scroll", None)  # the docked page, when scrolled
    page = scroll.widget() if scroll is not None else widget.native
    assert page.minimumSizeHint().width() <= 450  # the text wraps; it never widens the panel
