"""The Objects widget: make objects, the table linked to the layer, merge, split, delete, undo, export."""

from __future__ import annotations

import numpy as np
import pytest

from tests._widget_helpers import wait_for

pytestmark = pytest.mark.gui

SCALE = (20.0, 5.0, 5.0)


def _balls():
    """Two touching balls (one object until split) and a separate small one, 0/255 as labs keep masks."""
    shape = (16, 60, 90)
    zz, yy, xx = np.meshgrid(*[np.arange(s) * v for s, v in zip(shape, SCALE)], indexing="ij")

    def ball(c, r):
        return (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= r**2

    a, b = ball((160, 150, 100), 70), ball((160, 150, 220), 70)
    c = ball((160, 150, 380), 40)
    mask = ((a | b | c) * 255).astype(np.uint8)
    return mask, a, b, c


@pytest.fixture
def made(make_napari_viewer, qtbot):
    from napari_segnets._widgets import ObjectsWidget

    viewer = make_napari_viewer()
    mask, a, b, c = _balls()
    viewer.add_labels(mask, name="mito", scale=SCALE)
    image = viewer.add_image((mask // 2 + 20).astype(np.uint8), name="em", scale=SCALE)
    widget = ObjectsWidget(viewer)
    widget.source.value = viewer.layers["mito"]
    widget.image.value = image
    assert widget.voxel.value == "20,5,5"  # from the layer's scale
    assert widget.make_objects() is not None
    wait_for(qtbot, widget)
    qtbot.waitUntil(lambda: widget.measurements is not None and not widget.runner.running, timeout=60_000)
    return viewer, widget, (a, b, c)


def test_make_objects_and_the_table_follows_the_layer(made):
    viewer, widget, (a, b, c) = made
    layer = viewer.layers["mito objects"]
    assert widget.status.value == "2 objects measured", widget.status.value
    assert tuple(layer.scale) == SCALE and layer.data.max() == 2
    assert widget.table.rowCount() == 2 and widget.table.ids() == [1, 2]
    assert widget.measurements["volume_nm3"][0] == pytest.approx((a | b).sum() * np.prod(SCALE))
    # clicking a row centres the view on the object and selects its label
    row = widget.table.row_of(2)
    widget.table.selectRow(row)
    assert layer.selected_label == 2
    z_world = viewer.dims.point[0]
    assert z_world == pytest.approx(widget.measurements.row(2)["centroid_z_nm"], abs=SCALE[0])
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    assert tuple(camera.center[-2:]) == pytest.approx(
        (widget.measurements.row(2)["centroid_y_nm"], widget.measurements.row(2)["centroid_x_nm"]), abs=1)
    # selecting a label selects its row
    layer.selected_label = 1
    assert widget.table.selected_ids() == [1]
    # sortable by number: largest volume first
    column = widget.table.columns.index("volume_nm3")
    from qtpy.QtCore import Qt

    widget.table.sortItems(column, Qt.SortOrder.DescendingOrder)
    assert widget.table.id_at(0) == 1


def test_split_merge_delete_and_undo(made, tmp_path):
    viewer, widget, (a, b, c) = made
    layer = viewer.layers["mito objects"]
    before = layer.data.copy()
    widget.table.selectRow(widget.table.row_of(1))
    widget.split_auto()
    assert set(np.unique(layer.data[a & ~b])) == {1} and set(np.unique(layer.data[b & ~a])) == {3}
    assert sorted(widget.table.ids()) == [1, 2, 3] and len(widget.measurements) == 3
    v3 = widget.measurements.row(3)["voxels"]
    assert v3 == (layer.data == 3).sum()
    # merge back
    widget.table.clearSelection()
    for object_id in (1, 3):
        widget.table.selectRow(widget.table.row_of(object_id))
    widget.table.selectionModel().select(
        widget.table.model().index(widget.table.row_of(1), 0),
        widget.table.selectionModel().SelectionFlag.Select | widget.table.selectionModel().SelectionFlag.Rows)
    assert sorted(widget.table.selected_ids()) == [1, 3]
    widget.merge()
    np.testing.assert_array_equal(layer.data, before)
    assert sorted(widget.table.ids()) == [1, 2]
    # undo the merge: napari's own history; the table follows
    widget.undo()
    assert sorted(widget.table.ids()) == [1, 2, 3] and (layer.data == 3).sum() == v3
    widget.undo()  # and the split
    np.testing.assert_array_equal(layer.data, before)
    assert sorted(widget.table.ids()) == [1, 2]
    # delete
    widget.table.clearSelection()
    widget.table.selectRow(widget.table.row_of(2))
    widget.delete()
    assert 2 not in layer.data and widget.table.ids() == [1]
    layer.undo()
    assert (layer.data == 2).sum() == c.sum()
    # export
    widget.csv_path.value = tmp_path / "objects.csv"
    path = widget.export_csv()
    assert open(path).readline().startswith("id,voxels,volume_nm3,surface_nm2")


def test_split_at_two_clicks_and_compare(made, qtbot):
    viewer, widget, (a, b, c) = made
    layer = viewer.layers["mito objects"]
    widget.start_seeds()
    widget.add_seed((8, 30, 18))
    widget.add_seed((8, 30, 46))
    assert layer.data[8, 30, 18] == 1 and layer.data[8, 30, 46] == 3
    assert (layer.data[a | b] > 0).all()
    # two label layers measured side by side: a histogram per condition
    truth = viewer.add_labels(np.where(a, 1, 0) + np.where(b & ~a, 2, 0), name="truth", scale=SCALE)
    widget.compare.value = truth
    widget.measure()
    wait_for(qtbot, widget)
    assert widget.other is not None and len(widget.other) == 2
    widget.plot.wait()
    assert widget.plot.image is not None


def test_refusals_are_sentences(make_napari_viewer, monkeypatch):
    from napari_segnets._widgets import ObjectsWidget
    from tests._widget_helpers import Notes

    notes = Notes(monkeypatch)
    viewer = make_napari_viewer()
    widget = ObjectsWidget(viewer)
    assert widget.make_objects() is None
    viewer.add_labels(np.zeros((4, 8, 8), np.uint8), name="empty")
    widget.objects_layer.value = viewer.layers["empty"]
    assert widget.measure() is None  # no voxel size
    assert "voxel size" in widget.status.value
    assert notes.errors


def test_objects_from_probabilities_and_slice_to_store(make_napari_viewer, qtbot, tmp_path):
    from napari_segnets._widgets import ObjectsWidget
    from napari_segnets.curation import Store

    viewer = make_napari_viewer()
    mask, a, b, c = _balls()
    p = np.where(mask > 0, 0.9, 0.05).astype(np.float32)
    prob = viewer.add_image(np.stack([1 - p, p]), name="probabilities", scale=(1.0, *SCALE))  # (C, Z, Y, X)
    em = viewer.add_image((mask // 2 + 20).astype(np.uint8), name="em", scale=SCALE)
    widget = ObjectsWidget(viewer)
    widget.source.value = prob
    assert widget.voxel.value == "20,5,5"
    widget.split.value = "probability"
    widget.make_objects()
    wait_for(qtbot, widget)
    qtbot.waitUntil(lambda: widget.measurements is not None and not widget.runner.running, timeout=60_000)
    layer = viewer.layers["probabilities objects"]
    assert layer.data.shape == mask.shape and tuple(layer.scale) == SCALE
    assert len(widget.measurements) == 2  # the touching pair stays one: no valley in a flat map
    widget.image.value = em
    widget.store.value = tmp_path / "store"
    viewer.dims.set_point(viewer.dims.ndim - 3, 8 * SCALE[0])  # the z axis (a 4D layer is open)
    record = widget.add_to_store()
    image, stored = Store(tmp_path / "store").load(record["id"])
    np.testing.assert_array_equal(stored, (layer.data[8] > 0).astype(np.uint8))
    np.testing.assert_array_equal(image, em.data[8])


def test_a_grey_image_as_source_is_refused(make_napari_viewer, monkeypatch):
    """An EM image picked as the source (an Image layer, like probabilities) is a notification, no job."""
    from napari_segnets._widgets import ObjectsWidget
    from tests._blobs import grey_image as _grey
    from tests._widget_helpers import Notes

    notes = Notes(monkeypatch)
    viewer = make_napari_viewer()
    em = viewer.add_image(_grey((4, 64, 64)), name="em", scale=SCALE)
    widget = ObjectsWidget(viewer)
    widget.source.value = em
    assert widget.make_objects() is None
    assert "'em' looks like a grey image" in widget.status.value
    assert notes.errors and "looks like a grey image" in notes.errors[-1]
    assert [layer.name for layer in viewer.layers] == ["em"]


def test_the_table_follows_napari_undo_and_redo(made):
    """Ctrl+Z on the layer (napari's own undo, ``layer.undo()``) after a merge, split or delete puts the
    rows back, measured again; redo takes them away again. Only the touched objects are re-measured."""
    viewer, widget, (a, b, c) = made
    layer = viewer.layers["mito objects"]
    widget.table.selectRow(widget.table.row_of(1))
    widget.split_auto()
    assert sorted(widget.table.ids()) == [1, 2, 3]
    split_volumes = {i: widget.measurements.row(i)["voxels"] for i in (1, 3)}
    widget.table.clearSelection()
    widget.table.selectRow(widget.table.row_of(1))
    widget.table.selectionModel().select(
        widget.table.model().index(widget.table.row_of(3), 0),
        widget.table.selectionModel().SelectionFlag.Select | widget.table.selectionModel().SelectionFlag.Rows)
    widget.merge()
    assert sorted(widget.table.ids()) == [1, 2] and len(widget.measurements) == 2
    merged = widget.measurements.row(1)["voxels"]
    measured = []
    refresh = widget.refresh_rows
    widget.refresh_rows = lambda ids: (measured.append(list(ids)), refresh(ids))
    layer.undo()  # the merge, undone by napari
    assert sorted(widget.table.ids()) == [1, 2, 3] and len(widget.measurements) == 3
    assert {i: widget.measurements.row(i)["voxels"] for i in (1, 3)} == split_volumes
    assert measured == [[1, 3]]  # the two objects the merge touched, once; not object 2
    layer.redo()  # and merged again
    assert sorted(widget.table.ids()) == [1, 2] and widget.measurements.row(1)["voxels"] == merged
    layer.undo()
    layer.undo()  # the split too: one object again
    assert sorted(widget.table.ids()) == [1, 2] and widget.measurements.row(1)["voxels"] == (a | b).sum()
    # delete, undo, redo
    widget.table.clearSelection()
    widget.table.selectRow(widget.table.row_of(2))
    widget.delete()
    assert widget.table.ids() == [1]
    layer.undo()
    assert sorted(widget.table.ids()) == [1, 2] and widget.measurements.row(2)["voxels"] == c.sum()
    layer.redo()
    assert widget.table.ids() == [1]
    viewer.dims.set_point(0, 3 * SCALE[0])  # other set_data events move nothing: nothing re-measured
    count = len(measured)
    layer.refresh()
    assert len(measured) == count


def _objects_of(viewer, qtbot, mask):
    """An Objects widget that has made and measured the objects of ``mask`` with its defaults."""
    from napari_segnets._widgets import ObjectsWidget

    viewer.add_labels(mask, name="mito", scale=SCALE)
    widget = ObjectsWidget(viewer)
    widget.source.value = viewer.layers["mito"]
    widget.make_objects()
    wait_for(qtbot, widget)
    qtbot.waitUntil(lambda: widget.measurements is not None and not widget.runner.running, timeout=60_000)
    return widget


def test_making_objects_drops_fragments_and_says_so_unless_told(make_napari_viewer, qtbot):
    """By default objects under a tenth of the typical object are dropped as fragments (as the CLI does) and
    the status says how many and how to keep them; 'drop < typical ×' = 0 keeps them. Specks (under 2x2x2
    voxels) are gone either way."""
    viewer = make_napari_viewer()
    mask = np.zeros((6, 40, 120), np.uint8)
    for k in range(6):
        mask[1:5, 5:15, 20 * k + 2:20 * k + 12] = 255  # six 400-voxel boxes
    mask[2:5, 25:28, 5:8] = 255  # 27 voxels: a fragment
    mask[3, 35, 60] = 255  # a 1-voxel speck
    widget = _objects_of(viewer, qtbot, mask)
    assert widget.fragments.value == "0.1"
    assert len(widget.measurements) == 6
    assert "1 fragment under a tenth of the typical object (40 voxels, 2e4 nm^3) dropped" in widget.status.value
    assert "'drop < typical ×' = 0 keeps them" in widget.status.value
    widget.fragments.value = "0"
    widget.make_objects()
    wait_for(qtbot, widget)
    qtbot.waitUntil(lambda: widget.measurements is not None and len(widget.measurements) == 7
                    and not widget.runner.running, timeout=60_000)
    assert "fragment" not in widget.status.value


def test_objects_kept_as_too_big_a_share_for_fragments_are_explained_in_the_widgets_words(make_napari_viewer, qtbot):
    """Ten real objects beside a merged network are kept (the fragment guard), and the note names the
    panel's own fields, not the command line's flags."""
    viewer = make_napari_viewer()
    mask = np.zeros((4, 40, 400), np.uint8)
    mask[:, :25, :100] = 255  # the network
    for k in range(10):
        mask[:, 30:35, 10 + 35 * k:35 + 35 * k] = 255  # ten 500-voxel objects
    widget = _objects_of(viewer, qtbot, mask)
    assert len(widget.measurements) == 11
    assert "10 objects under a tenth of the typical object" in widget.status.value
    assert "'min size nm³' drops small objects, 'split' separates touching ones" in widget.status.value
    assert "--" not in widget.status.value
