"""Objects from masks: shapes of known size, block-wise == in-memory, splitting, scoring, input rules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_segnets import objects as ob
from napari_segnets.errors import InputError


def ellipsoid(shape, centre_nm, radii_nm, voxel):
    grids = np.meshgrid(*[np.arange(s) * v for s, v in zip(shape, voxel)], indexing="ij")
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre_nm, radii_nm)) <= 1.0


def ellipsoid_surface(a, b, c, p=1.6075):  # Knud Thomsen's approximation (error < 1.1 %)
    return 4 * math.pi * (((a * b) ** p + (a * c) ** p + (b * c) ** p) / 3) ** (1 / p)


def blobs(shape=(24, 70, 90), seed=0, level=0.53):
    from scipy import ndimage as ndi

    return ndi.gaussian_filter(np.random.default_rng(seed).random(shape), 2) > level


@pytest.mark.parametrize("voxel", [(5.0, 5.0, 5.0), (20.0, 5.0, 5.0)])
def test_balls_and_ellipsoids_measure_close_to_analytic(voxel):
    shape = (int(420 / voxel[0]), 90, 160)
    shapes = [((200, 220, 200), (80, 80, 80)), ((200, 220, 560), (120, 70, 90))]
    labels = np.zeros(shape, np.uint16)
    for k, (centre, radii) in enumerate(shapes, start=1):
        labels[ellipsoid(shape, centre, radii, voxel)] = k
    table = ob.measure(labels, voxel_size=voxel)
    assert table.ids.tolist() == [1, 2]
    for k, (_centre, (a, b, c)) in enumerate(shapes):
        volume = 4 / 3 * math.pi * a * b * c
        assert table["volume_nm3"][k] == pytest.approx(volume, rel=0.04)
        assert table["surface_nm2"][k] == pytest.approx(ellipsoid_surface(a, b, c), rel=0.04)
    ball = table.row(1)
    assert ball["equivalent_diameter_nm"] == pytest.approx(160, rel=0.02)
    assert ball["sphericity"] == pytest.approx(1.0, abs=0.04)
    assert ball["centroid_y_nm"] == pytest.approx(220, abs=1)
    assert not ball["touches_border"]


def test_mask_encodings_give_the_same_objects():
    mask = blobs()
    ref = ob.label_objects(mask)
    assert ref.max() > 10 and ref.dtype == np.uint32
    for enc in (mask.astype(np.uint8), mask.astype(np.uint8) * 255, mask.astype(np.int32) * 7):
        np.testing.assert_array_equal(ob.label_objects(enc), ref)
    # probabilities, class-first as predict returns them (sigmoid: 1 channel; softmax: 2)
    p = mask.astype(np.float32) * 0.8 + 0.1
    np.testing.assert_array_equal(ob.label_objects(p[None]), ref)
    np.testing.assert_array_equal(ob.label_objects(np.stack([1 - p, p])), ref)
    np.testing.assert_array_equal(ob.label_objects(p), ref)  # one foreground map (Z, Y, X)
    stored = np.round(np.stack([1 - p, p]) * 255).astype(np.uint8)  # predict's uint8 x 255 on disk
    np.testing.assert_array_equal(ob.label_objects(stored, probability_scale=255), ref)
    # (C, Y, X) softmax of one image is told apart from a (Z, Y, X) stack by its sums
    np.testing.assert_array_equal(ob.label_objects(np.stack([1 - p[3], p[3]])), ob.label_objects(mask[3]))


def test_ambiguous_or_wrong_input_is_refused():
    p = np.random.default_rng(0).random((3, 4, 16, 16)).astype(np.float32)
    with pytest.raises(InputError, match="3 classes"):
        ob.label_objects(p / p.sum(0))
    assert ob.label_objects(p / p.sum(0), channel=2).shape == (4, 16, 16)
    with pytest.raises(InputError, match="not probabilities"):
        ob.label_objects(np.full((4, 16, 16), 7.0))
    with pytest.raises(InputError, match="voxel size"):
        ob.label_objects(blobs(), min_size=1000)
    with pytest.raises(InputError):
        ob.label_objects(np.zeros((2, 2, 3, 4, 4), np.uint8))


def test_hysteresis_min_size_and_border():
    vol = np.zeros((10, 40, 40), np.float32)
    vol[2:6, 5:15, 5:15] = 0.6  # never reaches the seed threshold
    vol[2:6, 20:30, 5:15] = 0.6
    vol[4, 25, 10] = 0.95
    vol[2:4, 32:34, 20:22] = 0.9  # 8 voxels: small
    vol[0:3, 20:30, 25:35] = 0.9  # touches z = 0
    assert ob.label_objects(vol).max() == 4
    assert ob.label_objects(vol, seed_threshold=0.8).max() == 3
    assert ob.label_objects(vol, seed_threshold=0.8, voxel_size=(10, 10, 10), min_size=9000).max() == 2
    only = ob.label_objects(vol, seed_threshold=0.8, drop_border=True, voxel_size=(10, 10, 10), min_size=9000)
    assert only.max() == 1 and only[4, 25, 10] == 1


@pytest.mark.parametrize("options", [
    {},
    {"threshold": 0.6, "seed_threshold": 0.7, "voxel_size": (10, 5, 5), "min_size": 25 * 250},
    {"threshold": 0.6, "drop_border": True},
    {"threshold": 0.6, "per_slice": True, "drop_border": True, "voxel_size": (10, 5, 5)},
])
def test_blockwise_equals_in_memory(options, tmp_path):
    import dask.array as da
    import zarr

    from napari_segnets.io import read

    rng = np.random.default_rng(1)
    from scipy import ndimage as ndi

    p = ndi.gaussian_filter(rng.random((26, 70, 90)).astype(np.float32), 2)
    p = (p - p.min()) / (p.max() - p.min())
    source = p if options else p > 0.6
    ref = ob.label_objects(source, **options)
    assert ref.max() > 5
    out = zarr.zeros(ref.shape, dtype=np.uint32, chunks=(9, 24, 32))
    n = ob.label_blockwise(source, out, block=(9, 24, 32), **options)  # many objects cross block faces
    assert n == ref.max()
    np.testing.assert_array_equal(out[:], ref)
    # lazy class-first input, written to a new OME-Zarr that io.read opens as labels
    lazy = da.from_array(np.stack([1 - p, p]), chunks=(1, 8, 35, 45)) if options else da.from_array(source)
    ob.label_blockwise(lazy, tmp_path / "labels.zarr", block=(13, 35, 45), **options)
    back, meta = read(tmp_path / "labels.zarr")
    np.testing.assert_array_equal(np.asarray(back), ref)
    if options.get("voxel_size"):
        assert tuple(meta["voxel_size"]) == tuple(options["voxel_size"])


def test_blockwise_refuses_split():
    with pytest.raises(InputError, match="in memory"):
        ob.label_blockwise(blobs(), np.zeros((24, 70, 90), np.uint32), split="distance")


def test_touching_balls_are_split():
    voxel = (20.0, 5.0, 5.0)
    shape = (24, 70, 110)
    a = ellipsoid(shape, (240, 175, 150), (90, 90, 90), voxel)
    b = ellipsoid(shape, (240, 175, 290), (90, 90, 90), voxel)
    mask = a | b
    assert ob.label_objects(mask, voxel_size=voxel).max() == 1
    two = ob.label_objects(mask, voxel_size=voxel, split="distance")
    assert two.max() == 2
    assert set(np.unique(two[a & ~b])) == {1} and set(np.unique(two[b & ~a])) == {2}
    assert (two > 0).sum() == mask.sum()  # nothing lost
    # on the probability map: lower between the two
    from scipy import ndimage as ndi

    prob = ndi.distance_transform_edt(mask, sampling=voxel).astype(np.float32)
    prob = 0.5 + 0.5 * prob / prob.max()
    prob[~mask] = 0.0
    assert ob.label_objects(prob[None], voxel_size=voxel, split="probability").max() == 2
    per = ob.label_objects(mask, voxel_size=voxel, split="distance", per_slice=True)
    assert len(np.unique(per[12])) == 3  # background and two halves in the middle section


def test_per_slice_labels_sections_separately():
    mask = np.zeros((3, 10, 10), bool)
    mask[:, 2:5, 2:5] = True
    labels = ob.label_objects(mask, per_slice=True)
    assert labels.max() == 3 and len(np.unique(labels[1])) == 2


def test_scores_of_labels_against_themselves_and_a_damaged_copy():
    truth = ob.label_objects(blobs())
    n = int(truth.max())
    same = ob.score_objects(truth, truth)
    assert same["f1"] == 1.0 and same["ap"] == 1.0 and same["count_error"] == 0
    assert same["volume_fraction_error"] == 0.0 and same["matched_volume_error"] == 0.0
    perm = np.concatenate([[0], 1 + np.random.default_rng(0).permutation(n)])
    shuffled = perm[truth]  # other ids, same objects
    shuffled[shuffled == shuffled.max()] = 0  # and one object missed
    s = ob.score_objects(shuffled.astype(np.int64), truth)
    assert s["tp"] == n - 1 and s["fn"] == 1 and s["fp"] == 0 and s["count_error"] == -1
    assert s["recall"] == pytest.approx((n - 1) / n) and s["precision"] == 1.0
    assert s["volume_fraction_error"] < 0


def test_matched_volume_error_and_ap_thresholds():
    truth = np.zeros((1, 20, 40), np.uint8)
    truth[0, 2:12, 2:12] = 1  # 100 voxels
    truth[0, 2:12, 20:30] = 2
    pred = np.zeros_like(truth)
    pred[0, 2:12, 2:10] = 5  # IoU 0.8, 20 % too small
    pred[0, 2:12, 20:25] = 6  # IoU 0.5
    s = ob.score_objects(pred, truth, voxel_size=(1, 2, 2))
    assert s["tp"] == 2 and s["f1"] == 1.0
    assert s["ap50"] == 1.0 and s["ap75"] == pytest.approx(0.5, abs=0.01)
    assert s["matched_volume_error"] == pytest.approx((-0.2 - 0.5) / 2)
    assert s["matched_volume_error_nm3"] == pytest.approx((-20 - 50) / 2 * 4)


def test_blockwise_memory_is_bounded_by_the_block_not_the_volume(tmp_path):
    """Labelling a Zarr volume allocates a few blocks' worth, not the volume (tracemalloc sees numpy)."""
    import tracemalloc

    import zarr

    shape, block = (48, 192, 192), (12, 48, 48)
    mask = zarr.open_array(str(tmp_path / "m.zarr"), mode="w", shape=shape, chunks=block, dtype=np.uint8)
    for z in range(0, shape[0], block[0]):
        mask[z:z + block[0]] = blobs((block[0], *shape[1:]), seed=z).astype(np.uint8) * 255
    # Once on a small volume first: the modules label_blockwise imports lazily (scipy.sparse.csgraph,
    # ...) would otherwise count as allocations (~4 MiB of code objects when this test runs alone).
    ob.label_blockwise(np.asarray(mask[:block[0], :96, :96]), tmp_path / "warm.zarr", block=block)
    tracemalloc.start()
    try:
        n = ob.label_blockwise(mask, tmp_path / "labels.zarr", block=block)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    labels_bytes = np.prod(shape) * 4  # the uint32 result held in memory would be this
    assert n > 50
    assert peak < labels_bytes / 4, f"peak {peak / 2**20:.1f} MiB for a {labels_bytes / 2**20:.1f} MiB result"


def test_a_partial_calibration_is_unknown_not_an_error_until_needed():
    """io.read gives None for an uncalibrated axis, e.g. (None, 4.0, 4.0): objects treat the voxel
    size as unknown, and say which axis is missing when one is required."""
    from napari_segnets.objects import check_voxel_size

    assert check_voxel_size((None, 4.0, 4.0), 3) is None
    assert check_voxel_size((None, 4.0, 4.0), 2) == (4.0, 4.0)
    with pytest.raises(InputError, match="unknown along z"):
        check_voxel_size((None, 4.0, 4.0), 3, required=True)


def test_typed_voxel_sizes_read_one_way():
    assert ob.parse_voxel_size("40,5,5", 3) == ob.parse_voxel_size("40 x 5 x 5", 3) == (40.0, 5.0, 5.0)
    assert ob.parse_voxel_size("40,5,5", 2) == (5.0, 5.0)  # a z-y-x size for one slice keeps y, x
    for text in ("a,b,c", "5,5", "0,5,5"):
        with pytest.raises(InputError, match="[Vv]oxel size"):
            ob.parse_voxel_size(text, 3)


def test_specks_are_dropped_by_default_in_voxels():
    """Objects of fewer than 2x2x2 voxels (2x2 pixels in 2D or per slice) are specks: dropped by default at any
    voxel size; ``min_voxels=0`` keeps them; ``min_size`` (nm^3) still wins when it is larger."""
    vol = np.zeros((8, 40, 40), np.uint8)
    vol[1:7, 5:15, 5:15] = 1  # 600 voxels
    vol[4, 30, 30] = 1  # 1 voxel
    vol[4, 30:32, 34:37] = 1  # 6 voxels, one slice
    vol[2:4, 20:22, 30:32] = 1  # 2x2x2 = 8 voxels: kept
    assert ob.speck_voxels(3) == 8 and ob.speck_voxels(2) == 4 and ob.speck_voxels(3, per_slice=True) == 4
    assert ob.label_objects(vol).max() == 2
    assert ob.label_objects(vol, voxel_size=(40.0, 4.0, 4.0)).max() == 2  # the same at any voxel size
    assert ob.label_objects(vol, min_voxels=0).max() == 4
    assert ob.label_objects(vol, voxel_size=(1, 1, 1), min_size=100).max() == 1
    assert ob.label_objects(vol[4]).max() == 2  # 2D: the 6-pixel piece stays, the 1-pixel speck goes
    # per slice: the box on 6 slices, the cube on 2 (4 pixels each), the 6-pixel piece; not the 1-pixel speck
    assert ob.label_objects(vol, per_slice=True).max() == 6 + 2 + 1
    with pytest.raises(InputError, match="whole number"):
        ob.label_objects(vol, min_voxels=-1)
    out = np.zeros(vol.shape, np.uint32)
    assert ob.label_blockwise(vol, out, block=(4, 20, 20)) == 2  # block-wise drops the same specks
    np.testing.assert_array_equal(out, ob.label_objects(vol))


def _slabs_and_fragments():
    labels = np.zeros((10, 60, 60), np.uint8)
    for k in range(6):  # six 990-voxel objects ...
        labels[:, 10 * k + 1:10 * k + 10, 1:12] = 1
    labels[0, 0, 30:33] = 1  # ... and fragments: 3, 12 and 40 voxels
    labels[5:7, 30:32, 30:33] = 1
    labels[2:4, 40:45, 40:44] = 1
    return labels


def test_typical_size_is_the_volume_weighted_median_that_fragments_do_not_move():
    sizes = [1000] * 6 + [40] * 20  # twenty fragments: the plain median is a fragment's size
    assert np.median(sizes) == 40 and ob.typical_size(sizes) == 1000
    assert ob.typical_size([]) == 0.0
    assert ob.fragment_cut(sizes) == 100 and ob.fragment_cut(sizes, 0) == 0
    assert ob.fragment_cut([1000, 10, 10, 10]) == 0  # fewer than 5 objects: no typical size, no cut
    with pytest.raises(InputError, match="fraction"):
        ob.fragment_cut(sizes, 1.5)
    # objects under the cut that hold more than a fifth of the voxels are not fragments: a merged network of
    # 10,000 voxels beside ten real 500-voxel objects keeps them
    network = [10_000] + [500] * 10
    assert ob.fragment_cut(network) == 0 and ob.fragment_cut(network, guard=False) == 1000
    vol = np.zeros((4, 40, 400), np.uint8)
    vol[:, :25, :100] = 1  # the network
    for k in range(10):
        vol[:, 30:35, 10 + 35 * k:35 + 35 * k] = 1  # ten 500-voxel objects
    report = {}
    assert ob.label_objects(vol, min_fraction=0.1, report=report).max() == 11
    assert report["fragments"] == 0 and report["not_fragments"] == 10
    assert ob.fragments_note(report).startswith("10 objects under a tenth of the typical object hold 33% of the")
    assert ob.fragments_note(report).endswith("kept; --min-size drops small objects, --split separates touching ones.")
    assert ob.fragments_note(report, remedy="a smaller 'min size'").endswith("kept; a smaller 'min size'.")


def test_fragments_are_dropped_when_asked_in_memory_and_block_wise_alike():
    """``min_fraction`` drops objects under that share of the typical object (the core keeps them unless
    asked, so ground truth is labelled whole); the report says how many and the cut, and the note says so."""
    vol = _slabs_and_fragments()
    assert ob.label_objects(vol, min_voxels=0).max() == 9  # 6 slabs + 3 fragments
    assert ob.label_objects(vol).max() == 8  # the 3-voxel one is a speck: dropped anyway
    report = {}
    kept = ob.label_objects(vol, min_fraction=0.1, report=report)
    assert kept.max() == 6 and report == {"fragments": 2, "fragment_cut": 99, "fraction": 0.1}
    out = np.zeros(vol.shape, np.uint32)
    block_report = {}
    assert ob.label_blockwise(vol, out, block=(4, 20, 20), min_fraction=0.1, report=block_report) == 6
    np.testing.assert_array_equal(out, kept)
    assert block_report == report
    note = ob.fragments_note(report, (5.0, 5.0, 5.0))
    assert note == ("2 fragments under a tenth of the typical object (99 voxels, 1.2e4 nm^3) dropped; "
                    "--min-fraction 0 keeps them.")
    assert ob.fragments_note({"fragments": 0, "fragment_cut": 99}) == ""
    for bad in (-0.1, 1.0, True):  # refused before any work, even with too few objects for a typical size
        with pytest.raises(InputError, match="fragment fraction"):
            ob.label_objects(vol[:1], min_fraction=bad)
        with pytest.raises(InputError, match="fragment fraction"):
            ob.label_blockwise(vol, out, min_fraction=bad)
