"""Large lazy stacks stay lazy in the Segment widget: one slice read, results on disk."""

from __future__ import annotations

import numpy as np
import pytest

from tests._widget_helpers import SCALE, Notes, set_slice, wait_for

pytestmark = pytest.mark.gui


class CountingStack:
    """A read-only (Z, Y, X) stack that counts the slices read from it (like a file-backed array)."""

    def __init__(self, data):
        self._data = data
        self.shape, self.dtype, self.ndim = data.shape, data.dtype, data.ndim
        self.reads: set[int] = set()

    def __getitem__(self, key):
        z = key[0] if isinstance(key, tuple) else key
        zs = range(self.shape[0])[z] if isinstance(z, slice) else [int(z)]
        self.reads.update(zs)
        return self._data[key]

    def __array__(self, dtype=None, copy=None):
        raise AssertionError("the whole stack was loaded into memory")


def test_dask_stack_current_slice_and_whole_stack_stay_lazy(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    import dask.array as da

    from napari_segnets import checkpoints, models
    from napari_segnets._widgets import SegmentWidget
    from napari_segnets._widgets._session import REGISTRY
    from napari_segnets.sample_data import synthetic_stack

    notes = Notes(monkeypatch)
    image, _labels = synthetic_stack(shape=(4, 64, 64), seed=1)
    source = CountingStack(image)
    lazy = da.from_array(source, chunks=(1, 64, 64), asarray=False)
    viewer = make_napari_viewer()
    layer = viewer.add_image(lazy, name="lazy em", scale=SCALE, contrast_limits=(0, 255))
    path = checkpoints.save(tmp_path / "m.safetensors", models.build("unet", base=8))
    REGISTRY.add(path, task="segment")
    widget = SegmentWidget(viewer)
    widget.image.value, widget.checkpoint.model.value, widget.device.value = layer, "m", "cpu"

    set_slice(viewer, layer, 2)
    source.reads.clear()
    widget.scope.value = "current slice"
    assert widget.run() is not None
    wait_for(qtbot, widget)
    out = widget.last_layer
    assert source.reads == {2}, f"read slices {sorted(source.reads)} for one slice"
    assert not isinstance(out.data, np.ndarray), "the output of a lazy stack lives on disk"
    assert out.data.shape == image.shape and tuple(out.scale) == SCALE
    assert isinstance(layer.data, da.Array)

    widget.scope.value = "whole stack"
    assert widget.run() is not None
    wait_for(qtbot, widget)
    out = widget.last_layer
    assert not isinstance(out.data, np.ndarray)
    assert out.data.shape == image.shape
    assert np.asarray(out.data[3]).shape == (64, 64)
    assert not notes.errors, notes.errors

    # the scratch stores behind lazy results go away with what shows them
    from napari_segnets._widgets._temp import temporary_root

    first = temporary_root(out.data)
    assert first is not None and first.is_dir()
    assert widget.run() is not None  # the same layer gets a new result: the old store is deleted
    wait_for(qtbot, widget)
    second = temporary_root(widget.last_layer.data)
    assert widget.last_layer is out and second is not None and second != first
    assert not first.exists() and second.is_dir()
    viewer.layers.remove(out)
    assert not second.exists(), "removing the layer deletes its scratch store"


def test_scratch_stores_are_deleted_at_exit_and_only_ours(tmp_path):
    import zarr

    from napari_segnets._widgets import _temp

    path = _temp.temporary_store()
    arr = zarr.open_array(path, mode="w", shape=(2, 4, 4), dtype=np.uint8)
    folder = _temp.temporary_root(arr)
    assert folder is not None and folder.is_dir() and folder.name.startswith("segnets-")
    other = zarr.open_array(tmp_path / "mine.zarr", mode="w", shape=(2, 4, 4), dtype=np.uint8)
    assert _temp.temporary_root(other) is None and not _temp.release(other)
    assert (tmp_path / "mine.zarr").exists(), "a user's own store is never touched"
    assert _temp.temporary_root(np.zeros(3)) is None
    _temp.cleanup()
    assert not folder.exists()
