"""Worst Qt event-loop stall while the widgets train and predict (issue 7).

A QTimer fires every 10 ms on the GUI thread and records the gap between ticks;
a gap far above 10 ms is a stall the user would feel (napari's rule: a click
answers within 100 ms). Training and prediction run through the real widgets on
the synthetic sample, off the GUI thread, exactly as a user would start them.

Run (needs a display; on a headless box under Xvfb):

    PYTHONPATH=. xvfb-run -a python benchmarks/gui_stall.py [--size 256] [--slices 8] [--steps 20]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--slices", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--base", type=int, default=16)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--all-cores", action="store_true",
                        help="also run with torch on every core (the widgets normally leave one to the GUI)")
    args = parser.parse_args(argv)

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_segnets._widgets import SegmentWidget, TrainWidget
    from napari_segnets._widgets._runner import warm_up
    from napari_segnets._widgets._session import REGISTRY
    from napari_segnets.sample_data import synthetic_stack
    from tests._widget_helpers import StallProbe

    image, labels = synthetic_stack(shape=(args.slices, args.size, args.size), seed=0)
    viewer = napari.Viewer(show=True)
    img = viewer.add_image(image, name="em", scale=(40, 4, 4))
    truth = viewer.add_labels(labels["membranes"], name="membranes", scale=(40, 4, 4))
    QApplication.processEvents()
    rows = []

    def wait(widget):
        while widget.runner.running:
            QApplication.processEvents()
            time.sleep(0.002)

    def settle(seconds=1.0):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            QApplication.processEvents()
            time.sleep(0.002)

    # Creating the widgets starts the background import of the torch stack
    # (_runner.warm_up); the probe covers the docking and that import.
    t0 = time.perf_counter()
    with StallProbe() as opening:
        settle(0.1)
        train, seg = TrainWidget(viewer), SegmentWidget(viewer)
        viewer.window.add_dock_widget(train, name="Train", area="right")
        viewer.window.add_dock_widget(seg, name="Segment", area="right", tabify=True)
        warming = warm_up()
        while warming.is_alive():
            QApplication.processEvents()
            time.sleep(0.002)
    rows.append(("open widgets (+ background imports)", opening.summary(), time.perf_counter() - t0))

    # Attribute stalls: every new layer (the preview, a result) is timed, so the
    # table can tell napari's own layer creation apart from the rest of a job.
    from napari.components import ViewerModel

    adds: list[tuple[float, float]] = []

    def timed(method):
        def wrapper(*a, **k):
            start = time.perf_counter()
            try:
                return method(*a, **k)
            finally:
                adds.append((start, time.perf_counter()))
        return wrapper

    ViewerModel.add_labels = timed(ViewerModel.add_labels)
    ViewerModel.add_image = timed(ViewerModel.add_image)

    def split(probe) -> dict:
        """The probe's summary plus the worst gap that overlaps no layer creation."""
        out = probe.summary()
        windows = [(a - probe._t0, b - probe._t0) for a, b in adds]
        rest = [g for g, end in zip(probe.gaps, probe.when)
                if not any(a < end and b > end - g for a, b in windows)]
        out["worst_other_ms"] = 1000 * max(rest, default=0.0)
        out["new_layers"] = sum(1 for a, b in windows if 0 <= a and b <= (probe.when[-1] if probe.when else 0))
        return out

    def probed(widget):
        """Click ``widget``'s action under the probe; returns (summary, seconds)."""
        t0 = time.perf_counter()
        with StallProbe() as probe:
            settle(0.1)  # the probe must tick before the click: run() itself may stall
            widget.run()
            wait(widget)
            settle(0.5)  # the result's display happens after the worker ends
        return split(probe), time.perf_counter() - t0

    settle()
    with StallProbe() as idle:  # the same probe with nothing running
        settle(3.0)
    rows.append(("idle (no job)", idle.summary(), 3.0))
    # napari's own cost of showing a result: a new Labels layer the size of the stack, nothing else running
    import numpy as np

    for k in range(2):
        t0 = time.perf_counter()
        with StallProbe() as probe:
            settle(0.1)  # let the probe tick first: a stall before its first tick is invisible to it
            probe_layer = viewer.add_labels(np.zeros(image.shape, np.uint8), name=f"probe {k}", scale=(40, 4, 4))
            settle(0.5)
        rows.append((f"napari add_labels alone, no job ({k + 1})", split(probe), time.perf_counter() - t0))
        viewer.layers.remove(probe_layer)
        settle(0.3)
    modes = [("one core left to the GUI", None)]
    if args.all_cores:
        modes.append(("torch on all cores", lambda: (lambda: None)))
    from napari_segnets._widgets import _runner

    keep = _runner._leave_a_core_for_the_gui
    for label, patch in modes:
        _runner._leave_a_core_for_the_gui = patch or keep
        REGISTRY.clear()
        with tempfile.TemporaryDirectory() as tmp:
            train.image.value, train.labels_layer.value = img, truth
            train.base.value, train.crop.value, train.batch_size.value = args.base, 128, 4
            train.epochs.value, train.steps.value = args.epochs, args.steps
            train.device.value = "cpu"
            train.output.value = Path(tmp) / "m.safetensors"
            rows.append((f"train ({label})", *probed(train)))
            if "training preview" in viewer.layers:
                viewer.layers.remove("training preview")
            name = REGISTRY.names()[0]
            seg.image.value, seg.checkpoint.model.value = img, name
            seg.device.value, seg.scope.value = "cpu", "whole stack"
            rows.append((f"predict stack ({label})", *probed(seg)))
            seg.scope.value = "current slice"
            rows.append((f"predict slice ({label})", *probed(seg)))
            for layer in [lyr for lyr in viewer.layers if lyr.name.endswith(" labels")]:
                viewer.layers.remove(layer)
    _runner._leave_a_core_for_the_gui = keep
    viewer.close()

    load = os.getloadavg()
    print(f"# GUI stall probe: 10 ms QTimer on the GUI thread; stack {args.slices}x{args.size}x{args.size}, "
          f"U-Net base {args.base}, {args.epochs} epochs x {args.steps} steps, crop 128, batch 4")
    print(f"# {platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"{'job':44s} {'seconds':>8s} {'ticks':>6s} {'median ms':>10s} {'p99 ms':>8s} {'worst ms':>9s} "
          f"{'>100 ms':>8s} {'worst/idle':>10s} {'new layers':>10s} {'worst w/o layer add':>19s}")
    idle_worst = rows[1][1]["worst_ms"] or 1.0
    for job, s, secs in rows:
        print(f"{job:44s} {secs:8.1f} {s['ticks']:6d} {s['median_ms']:10.1f} {s['p99_ms']:8.1f} "
              f"{s['worst_ms']:9.1f} {s['over_100ms']:8d} {s['worst_ms'] / idle_worst:10.1f} "
              f"{s.get('new_layers', '-'):>10} "
              + (f"{s['worst_other_ms']:19.1f}" if "worst_other_ms" in s else f"{'-':>19s}"))
    result = {"rows": [{"job": j, "seconds": t, **s} for j, s, t in rows], "load": load}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
