"""Measurements: lazy == in-memory, partial re-measuring, the table, the summary, proofreading edits."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segnets import objects as ob
from napari_segnets.errors import InputError
from napari_segnets.objects import edit


def sample(shape=(20, 60, 80), seed=2):
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    labels = ob.label_objects(ndi.gaussian_filter(rng.random(shape), 2) > 0.53)
    image = rng.integers(0, 255, shape).astype(np.uint8)
    return labels, image


def test_lazy_blocks_give_the_in_memory_table():
    import dask.array as da

    labels, image = sample()
    voxel = (10.0, 4.0, 4.0)
    ref = ob.measure(labels, image, voxel_size=voxel)
    assert len(ref) == labels.max() and ref.ids.tolist() == list(range(1, len(ref) + 1))
    # small blocks and a small halo: objects span blocks and some surfaces need their own crop
    lazy = ob.measure(da.from_array(labels, chunks=(7, 20, 30)), da.from_array(image, chunks=(7, 20, 30)),
                      voxel_size=voxel, block=(7, 20, 30), halo=2)
    assert lazy.names == ref.names
    for name in ref.names:
        np.testing.assert_allclose(lazy[name], ref[name], rtol=1e-6, err_msg=name)


def test_measuring_some_ids_matches_the_full_table():
    labels, image = sample()
    full = ob.measure(labels, image, voxel_size=(10, 4, 4))
    some = ob.measure(labels, image, voxel_size=(10, 4, 4), ids=[3, 5])
    assert some.ids.tolist() == [3, 5]
    for name in full.names:
        np.testing.assert_allclose(some[name], full[name][[2, 4]], err_msg=name)


def test_two_d_labels_and_summary(tmp_path):
    labels = np.zeros((50, 60), np.uint8)
    yy, xx = np.mgrid[:50, :60]
    labels[(yy - 25) ** 2 + (xx - 20) ** 2 <= 100] = 1  # disc of radius 10 px = 20 nm
    labels[40:50, 50:60] = 2  # a square at the border
    t = ob.measure(labels, voxel_size=(2, 2))
    assert t["area_nm2"][0] == pytest.approx(np.pi * 20**2, rel=0.03)
    assert t["perimeter_nm"][0] == pytest.approx(2 * np.pi * 20, rel=0.04)
    assert t["touches_border"].tolist() == [False, True]
    s = t.summary()
    assert s["count"] == 2 and s["area_fraction"] == pytest.approx((labels > 0).mean())
    assert s["density_per_um2"] == pytest.approx(2 / (50 * 60 * 4 / 1e6))
    path = t.to_csv(tmp_path / "o.csv")
    lines = open(path).read().splitlines()
    assert lines[0].startswith("id,voxels,area_nm2,perimeter_nm") and len(lines) == 3


def test_measure_refuses_bad_input():
    labels, image = sample()
    with pytest.raises(InputError, match="voxel size"):
        ob.measure(labels, image, voxel_size=None)
    with pytest.raises(InputError, match="shape"):
        ob.measure(labels, image[:3], voxel_size=(1, 1, 1))
    with pytest.raises(InputError, match="integers"):
        ob.measure(labels.astype(float), voxel_size=(1, 1, 1))


def test_table_update_keeps_other_rows_and_extra_columns():
    labels, image = sample()
    t = ob.measure(labels, image, voxel_size=(10, 4, 4))
    t.set("signal", np.arange(len(t), dtype=float))  # a later analysis adds a column
    before = t.copy()
    merged = labels.copy()
    e = edit.merge(merged, [2, 4])
    e.apply(merged)
    t.update(ob.measure(merged, image, voxel_size=(10, 4, 4), ids=e.measure), remove=e.removed)
    assert 4 not in t.ids and len(t) == len(before) - 1
    assert t.row(2)["voxels"] == before.row(2)["voxels"] + before.row(4)["voxels"]
    assert np.isnan(t.row(2)["signal"]) and t.row(3)["signal"] == before.row(3)["signal"]


def test_edits_merge_split_delete_relabel():
    voxel = (1.0, 1.0, 1.0)
    labels = np.zeros((12, 30, 50), np.uint16)
    zz, yy, xx = np.mgrid[:12, :30, :50]
    a = (zz - 6) ** 2 + (yy - 15) ** 2 + (xx - 14) ** 2 <= 36
    b = (zz - 6) ** 2 + (yy - 15) ** 2 + (xx - 24) ** 2 <= 36
    labels[a | b] = 7
    labels[1:3, 1:3, 40:45] = 9
    auto = edit.split(labels, 7, voxel_size=voxel)
    parts = auto.apply(labels.copy())
    assert len(np.unique(parts[a | b])) == 2 and auto.measure[0] == 7
    seeded = edit.split(labels, 7, seeds=[(6, 15, 12), (6, 15, 26)])
    two = seeded.apply(labels.copy())
    assert two[6, 15, 12] == 7 and two[6, 15, 26] == 10 and (two[a | b] > 0).all()
    with pytest.raises(InputError, match="inside"):
        edit.split(labels, 7, seeds=[(0, 0, 0), (6, 15, 26)])
    merged = edit.merge(two, [10, 7]).apply(two.copy())
    np.testing.assert_array_equal(merged, labels)
    gone = edit.delete(labels, [9]).apply(labels.copy())
    assert 9 not in gone
    renum, mapping = edit.relabel_sequential(labels)
    assert mapping == {7: 1, 9: 2}
    assert set(np.unique(renum.apply(labels.copy()))) == {0, 1, 2}
    with pytest.raises(InputError, match="not in the labels"):
        edit.delete(labels, [3])
    t = ob.measure(labels, voxel_size=voxel)
    assert edit.filter_ids(t, min_size=100) == [9]
    assert edit.filter_ids(t, drop_border=True) == [7]  # the balls reach z = 0 and z = 11
