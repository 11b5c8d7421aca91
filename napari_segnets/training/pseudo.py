"""Self-training on sparse strokes: the net labels the unpainted pixels it is sure of.

Strokes label about 1% of a slice, all of it far from the boundaries and mostly on the structures
the user thought of; the net never learns from the other 99%. Part way through a run the net
predicts the training slices; every unpainted pixel whose probability for one class is at least
``confidence`` gets that class as its label (a pseudo-label), and training goes on with strokes
plus pseudo-labels. The pseudo-labels are re-made from the current weights at each refresh, so a
pixel the net changes its mind about drops out again. Painted pixels always keep the user's label.
(Self-training with confidence thresholds, as in Lee 2013 "Pseudo-label" and, for scribbles,
Lee and Jeong 2020 "Scribble2Label".) Opt-in: see ``setup.SPARSE_SELF_TRAINING`` for what it
measured.
"""

from __future__ import annotations

import numpy as np

from .masks import IGNORE


def pseudo_labels_iter(
    model, images, strokes, *, confidence: float, device="cpu", ignore_index: int = IGNORE
):
    """Strokes plus the model's confident predictions on their unpainted pixels (a generator).

    Yields one :class:`~napari_segnets.progress.Progress` (stage ``"self-training"``) per
    painted slice, so a caller can cancel between slices; returns the targets.

    Parameters
    ----------
    model : torch.nn.Module
        A segmentation model (one output channel: sigmoid; several: softmax over classes).
    images : list of float32 (H, W)
        Normalised slices (as the training sampler holds them).
    strokes : list of int (H, W)
        Targets: class ids, ``ignore_index`` where nobody painted.
    confidence : float
        A pixel is labelled when one class has at least this probability (> 0.5).

    Returns one target per slice: the strokes where painted, the confident class elsewhere,
    ``ignore_index`` where the net is unsure. Slices nobody painted stay unlabelled (and are not
    predicted): self-training fills in around the user's strokes, it does not label a stack.
    """
    from ..inference import predict
    from ..progress import Progress

    if not 0.5 < confidence < 1:
        raise ValueError(f"confidence must be in (0.5, 1), got {confidence!r}")
    strokes = [np.asarray(t) for t in strokes]
    painted = [i for i, t in enumerate(strokes) if (t != ignore_index).any()]
    out = list(strokes)
    for n, i in enumerate(painted):
        prob = np.asarray(
            predict(model, images[i], device=device, output="probabilities", normalization={"mode": "none"}),
            dtype=np.float32,
        )
        if prob.ndim == 2:  # one channel: foreground probability
            label = (prob >= 0.5).astype(np.int64)
            sure = np.maximum(prob, 1.0 - prob) >= confidence
        else:
            label = prob.argmax(0).astype(np.int64)
            sure = prob.max(0) >= confidence
        target = strokes[i]
        new = np.where(target != ignore_index, target, np.where(sure, label, ignore_index))
        out[i] = new.astype(target.dtype, copy=False)
        yield Progress("self-training", n + 1, len(painted),
                       f"labelling what the net is sure of: slice {n + 1}/{len(painted)}")  # fmt: skip
    return out


def pseudo_labels(model, images, strokes, **kwargs) -> list[np.ndarray]:
    """Plain twin of :func:`pseudo_labels_iter`: the targets, without progress."""
    from ..progress import drive

    return drive(pseudo_labels_iter(model, images, strokes, **kwargs))
