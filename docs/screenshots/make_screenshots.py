"""Make the widget screenshots in docs/screenshots/ from a real napari window.

Run from the repository root (on a headless machine under Xvfb):

    PYTHONPATH=. xvfb-run -a -s "-screen 0 1920x1080x24" python docs/screenshots/make_screenshots.py

The window is a 1920x1080 laptop's (1920x1010 once the desktop's task bar and the
title bar are taken). Every picture is the whole main window, grabbed after the widget's action has
finished and Qt has processed its events, saved as a quantised PNG (< 300 KB).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))


def settle(seconds: float = 0.8) -> None:
    from qtpy.QtWidgets import QApplication

    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        QApplication.processEvents()
        time.sleep(0.01)


def wait(widget) -> None:
    while widget.runner.running:
        settle(0.05)
    if hasattr(widget, "plot"):
        widget.plot.wait()  # plots render in a background thread
    settle(1.5)  # queued layer refreshes


def save(viewer, name: str, *, max_bytes: int = 300_000) -> Path:
    from PIL import Image

    viewer.reset_view()
    settle(0.5)
    shot = viewer.screenshot(canvas_only=False, flash=False)
    image = Image.fromarray(np.asarray(shot)[..., :3])
    path = HERE / f"{name}.png"
    for colors, width in ((256, None), (128, None), (128, 1600), (128, 1400), (64, 1200)):
        img = image if width is None or image.width <= width else image.resize(
            (width, round(image.height * width / image.width)), Image.LANCZOS)
        img.quantize(colors=colors, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
        if path.stat().st_size <= max_bytes:
            break
    print(f"{path.name}: {image.width}x{image.height}, {path.stat().st_size // 1024} KB")
    return path


def front(viewer, title: str):
    from napari_segnets._widgets._launch import _dock_of

    widget = viewer.window.dock_widgets[title]
    _dock_of(widget).raise_()
    settle(0.3)
    return widget


def set_slice(viewer, layer, z: int) -> None:
    viewer.dims.set_point(0, layer.data_to_world([z, 0, 0])[0])


def main() -> None:
    from napari_segnets._widgets import launch
    from napari_segnets._widgets._session import REGISTRY

    viewer = launch(show=True)
    viewer.window._qt_window.resize(1920, 1010)
    settle(2.0)
    img = next(layer for layer in viewer.layers if layer._type_string == "image")
    classes = next(layer for layer in viewer.layers if layer._type_string == "labels")
    # the sample's class labels: 1 = membrane; train and score on membranes
    truth = viewer.add_labels((np.asarray(classes.data) == 1).astype(np.uint8), name="membranes (truth)",
                              scale=img.scale, visible=False)
    classes.visible = False
    set_slice(viewer, img, 3)
    classes.visible = True
    save(viewer, "overview")
    classes.visible = False
    tmp = Path(tempfile.mkdtemp(prefix="segnets-shots-"))

    # Train: a small U-Net on the membranes; live plot and preview of the slice in view
    train = front(viewer, "Train")
    train.image.value, train.labels_layer.value = img, truth
    train.base.value, train.epochs.value, train.steps.value = 8, 6, 15
    train.crop.value, train.batch_size.value, train.lr.value = 64, 4, 0.01
    train.val_slices.value = 1
    train.output.value = tmp / "membranes-unet.safetensors"
    train.run()
    wait(train)
    save(viewer, "train")

    # Segment the whole stack with it
    seg = front(viewer, "Segment")
    viewer.layers.remove("training preview")
    seg.image.value = img
    seg.checkpoint.model.value = REGISTRY.names()[0]
    seg.scope.value = "whole stack"
    seg.run()
    wait(seg)
    pred = seg.last_layer
    save(viewer, "segment")

    # Curate: paint a correction and add the edited region to the store
    cur = front(viewer, "Curate")
    cur.labels_layer.value = pred
    cur.store.value = tmp / "training-set"
    set_slice(viewer, img, 5)
    cur.scope.value = "current slice"
    cur.add_to_store()
    set_slice(viewer, img, 3)
    pred.brush_size = 14
    for x in range(90, 150, 6):
        pred.paint((3, 120, x), 1, refresh=True)
    cur.scope.value = "edited region"
    cur.add_to_store()
    settle(1.0)
    save(viewer, "curate")

    # Score against the ground truth
    score = front(viewer, "Score")
    score.prediction.value, score.truth.value = pred, truth
    score.mode.value = "membrane"
    score.run()
    wait(score)
    save(viewer, "score")

    # Objects: the sample's mitochondria as 3D objects, measured; the table, a histogram, the review section
    mito = viewer.add_labels((np.asarray(classes.data) == 2).astype(np.uint8), name="mitochondria (truth)",
                             scale=img.scale)
    obj = front(viewer, "Objects")
    obj.source.value, obj.image.value = mito, img
    obj.voxel.value = "40,5,5"
    obj.make_objects()
    wait(obj)
    obj.measure()
    wait(obj)
    if "volume_nm3" in list(obj.plot_measure.choices):
        obj.plot_measure.value = "volume_nm3"
    if not obj.review.opened:
        obj.review.toggle()  # unfold the review section (next likely error, accept / fixed / delete)
    set_slice(viewer, img, 3)
    settle(1.5)
    save(viewer, "objects")
    for layer in [layer for layer in viewer.layers if layer.name.startswith("mitochondria")]:
        layer.visible = False

    # Wavelets: two small autoencoders reconstruct the slice in view; mosaics side by side
    for arch, steps in (("unet", 40), ("atrous", 40)):
        train.task.value, train.arch.value = "autoencode", arch
        train.epochs.value, train.steps.value, train.base.value = 2, steps, 8
        train.output.value = tmp / f"{arch}-autoencoder.safetensors"
        train.run()
        wait(train)
        print(train.status.value)
    if "training preview" in viewer.layers:
        viewer.layers.remove("training preview")
    wav = front(viewer, "Wavelets")
    wav.wavelet.value = "db2"
    wav.image.value = img
    wav.models.value = REGISTRY.names("autoencode")
    wav.compare()
    while wav.runner.running or wav.comparison is None:
        settle(0.1)
    wait(wav)
    save(viewer, "wavelets")
    viewer.close()


if __name__ == "__main__":
    main()
