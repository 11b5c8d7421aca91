"""Score: compare a Labels layer with ground truth per slice; flag slices that got worse."""

from __future__ import annotations

import numpy as np
from magicgui.widgets import ComboBox, Container, Label, PushButton, Table
from napari.layers import Image, Labels

from ..errors import InputError
from ._common import LayerChoice, looks_like_mask, predicted_here, scrolling, wrapping
from ._runner import JobRunner, guarded

# Shown when the core reports them, in this order (multiclass IoU/Dice are per-class dicts).
COLUMNS = ("iou", "dice", "mean_iou", "mean_dice", "rand_error", "vi", "pixel_accuracy")


def _as_mask(data, name: str, mode: str) -> np.ndarray:
    """The layer's data; an image layer scored as binary must be a binary mask (0/1, 0/255:
    :func:`napari_segnets.io.is_binary_mask`), else it is refused. ``score_stack`` reads any
    nonzero value as the object."""
    from ..io import is_binary_mask

    data = np.asarray(data)
    if mode != "multiclass" and name is not None and not is_binary_mask(data):
        # an image layer: a mask opened as an image, or a wrong pick (the EM image)
        raise InputError(
            f"Image layer '{name}' has {np.unique(data).size} different values, so it is not a "
            "mask; pick a Labels layer or a 0/nonzero mask image."
        )
    return data


def score_job(pred, truth, mode, *, image_names=(None, None)):
    """Score a stack (a progress generator so the GUI thread never waits).

    ``mode``: ``metrics.score_stack``'s (the widget's "mode" choice, ``evaluate --mode``).

    ``image_names``: the names of the prediction / truth when they are image layers
    (checked to be masks), None for Labels layers.
    """
    from .. import metrics
    from ..progress import Progress

    yield Progress("score", 0, 1, "scoring")
    pred = _as_mask(pred, image_names[0], mode)
    truth = _as_mask(truth, image_names[1], mode)
    result = metrics.score_stack(pred, truth, mode=mode)  # membrane: IoU/Dice plus Rand error and VI
    yield Progress("score", 1, 1, "scored")
    return result


class ScoreWidget(Container):
    """IoU and Dice (and, in membrane mode, Rand error and VI) per slice and overall, as a table.

    Sub-widgets: ``prediction``, ``truth``, ``baseline`` (optional earlier
    prediction, e.g. before the last fine-tune), ``mode`` (how masks are read, as
    ``evaluate --mode``), ``score_button``,
    ``table``, ``overall``, ``status``. After a run: ``scores`` (the core's
    ``score_stack`` result) and ``worse`` (slice indices that got worse).
    If no baseline layer is chosen, the previous scoring against the same truth
    layer is the baseline.
    """

    def __init__(self, viewer: napari.viewer.Viewer):  # noqa: F821
        self.viewer = viewer
        # Labels layers first; a mask opened as an image layer is offered after them
        self.prediction = LayerChoice(viewer, (Labels, Image), label="prediction", prefer=predicted_here)
        self.truth = LayerChoice(viewer, (Labels, Image), label="ground truth", differ_from=self.prediction,
                                 prefer=lambda layer: looks_like_mask(layer) and not predicted_here(layer))
        self.baseline = LayerChoice(viewer, Labels, label="compare with", nullable=True)
        self.baseline.value = None
        # binary by default, as evaluate --mode: a 0/255 mask's objects are its nonzero pixels
        self.mode = ComboBox(label="mode", choices=["binary", "multiclass", "membrane"], value="binary",
                             tooltip="how masks are read: binary (nonzero = object), multiclass (class ids) or "
                             "membrane (IoU/Dice plus Rand error and VI); as evaluate --mode")
        self.score_button = PushButton(text="Score")
        self.table = Table(value={"data": [], "index": [], "columns": ["slice", "iou", "dice", "change"]})
        self.overall = wrapping(Label(value=""))
        self.status = Label(value="")
        super().__init__(widgets=[self.prediction, self.truth, self.baseline, self.mode,
                                  self.score_button, self.overall, self.table, self.status])
        scrolling(self, pack=False)  # fits a laptop screen; the table takes the spare height
        self.runner = JobRunner(viewer, label=self.status, run_buttons=[self.score_button])
        self.score_button.changed.connect(self.run)
        self.scores = None
        self.worse: list[int] = []
        self._previous: dict[str, list[dict]] = {}

    def run(self, *_args):
        """Score the prediction (and the baseline); returns the worker or None."""
        return guarded(self._start, self.status)

    def _start(self):
        pred = self.prediction.require("prediction layer")
        truth = self.truth.require("ground-truth layer")
        if pred is truth:
            raise InputError("The prediction and the ground truth are the same layer; pick two layers.")
        if tuple(pred.data.shape) != tuple(truth.data.shape):
            raise InputError(
                f"'{pred.name}' is {tuple(pred.data.shape)} but '{truth.name}' is "
                f"{tuple(truth.data.shape)}; score layers of the same stack."
            )
        base = self.baseline.value
        mode = self.mode.value
        pred_data, truth_data = pred.data, truth.data
        base_data = base.data if base is not None else None
        names = tuple(layer.name if isinstance(layer, Image) else None for layer in (pred, truth))

        def job():
            def both():
                result = yield from score_job(pred_data, truth_data, mode, image_names=names)
                before = None
                if base_data is not None:
                    before = yield from score_job(base_data, truth_data, mode, image_names=(None, names[1]))
                return result, before
            return both()

        def done(out):
            result, before = out
            self._show(truth.name, result, before)

        return self.runner.start(job, title=f"score {pred.name}", on_done=done, torch_job=False)

    def _show(self, key, result, before) -> None:
        from ..curation import regressions

        rows = result["per_slice"]
        baseline_rows = before["per_slice"] if before is not None else self._previous.get(key)
        ov = result["overall"]
        columns = [c for c in COLUMNS if isinstance(ov.get(c), (int, float))]
        metric = "mean_iou" if "mean_iou" in columns else "iou"
        self.worse = regressions(baseline_rows, rows, key=metric) if baseline_rows else []
        old = {r["index"]: r for r in baseline_rows or []}
        data = []
        for r in rows:
            change = ""
            if r["index"] in old and metric in r and metric in old[r["index"]]:
                delta = r[metric] - old[r["index"]][metric]
                change = f"{delta:+.3f}" + ("  WORSE" if r["index"] in self.worse else "")
            data.append([r["index"], *(_fmt(r.get(c)) for c in columns), change])
        self.table.value = {"data": data, "index": [str(r[0]) for r in data], "columns": ["slice", *columns, f"{metric} change"]}
        text = "overall: " + ", ".join(f"{c} {_fmt(ov.get(c))}" for c in columns)
        if self.worse:
            text += f"; worse than before on slices {self.worse}"
        self.overall.value = text
        self.scores = result
        self._previous[key] = rows


def _fmt(value) -> str:
    if value is None:
        return ""
    return "undefined" if not np.isfinite(value) else f"{float(value):.3f}"  # NaN: empty truth
