"""The correct-and-retrain helpers (napari_segnets.curation.corrections): no GUI needed."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segnets.curation import changed_region, edited_sample, mark_unreviewed, regressions
from napari_segnets.errors import InputError


def test_changed_region_is_the_box_of_the_edits():
    before = np.zeros((20, 30), np.uint8)
    after = before.copy()
    after[5:8, 10] = 1
    after[12, 4] = 1
    assert changed_region(before, after) == (slice(5, 13), slice(4, 11))
    assert changed_region(before, after, margin=100) == (slice(0, 20), slice(0, 30))
    assert changed_region(before, before) is None
    with pytest.raises(InputError):
        changed_region(before, after[:10])


def test_edited_sample_crops_with_context_and_ignores_unreviewed_pixels():
    image = np.arange(100 * 120, dtype=np.uint16).reshape(100, 120)
    before = np.zeros((100, 120), np.uint8)
    after = before.copy()
    after[50:55, 110:118] = 1  # near the right edge
    img, mask, region, changed = edited_sample(image, before, after, margin=2, min_size=64)
    y0, x0, y1, x1 = region
    assert (y1 - y0, x1 - x0) == (64, 64) and x1 == 120
    assert np.array_equal(img, image[y0:y1, x0:x1])
    assert changed == 40
    reviewed = mask != 255
    assert reviewed.sum() == (5 + 4) * (8 + 4)  # the changed box plus the margin
    assert mask[reviewed].max() == 1
    assert edited_sample(image, before, before) is None
    bad = after.copy()
    bad[0, 0] = 255
    with pytest.raises(InputError, match="reserved"):
        edited_sample(image, before, bad)


def test_mark_unreviewed_keeps_only_the_region():
    mask = np.ones((4, 4), np.uint8)
    out = mark_unreviewed(mask, (slice(1, 3), slice(0, 2)))
    assert out[1:3, 0:2].tolist() == [[1, 1], [1, 1]]
    assert (out == 255).sum() == 12
    assert np.array_equal(mark_unreviewed(mask, None), mask)


def test_regressions_find_slices_that_got_worse():
    before = [
        {"index": 0, "iou": 0.8, "rand_error": 0.1},
        {"index": 1, "iou": 0.5, "rand_error": 0.3},
        {"index": 2, "pixels": 0},
    ]
    after = [
        {"index": 0, "iou": 0.7, "rand_error": 0.05},
        {"index": 1, "iou": 0.6, "rand_error": 0.4},
        {"index": 2, "pixels": 0},
    ]
    assert regressions(before, after, key="iou") == [0]
    assert regressions(before, after, key="rand_error") == [1]  # lower is better
    assert regressions(before, before) == []
