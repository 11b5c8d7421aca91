"""Losses that honour an ignore value: unlabelled pixels contribute nothing, not even gradient.

Segmentation losses take logits ``(N, C, H, W)`` and integer targets ``(N, H, W)`` in which
``ignore_index`` marks pixels nobody labelled. With ``C == 1`` the model is binary (sigmoid);
otherwise the classes are exclusive (softmax). Autoencoder losses (``mse``, ``l1``) take a
reconstruction and a float target of the same shape, plus an optional boolean ``valid`` mask.

Ignored pixels are removed by selecting, not by multiplying a possibly non-finite value by
zero: an out-of-range target in a binary BCE would otherwise poison the sum with ``inf * 0``.
The default ``ignore_index`` is :data:`~napari_segnets.training.masks.IGNORE` (-1), the value
``to_targets`` gives unlabelled pixels: it is never a class.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..errors import InputError
from .masks import IGNORE

SEGMENT_LOSSES = ("bce", "dice", "bce_dice", "ce", "ce_dice", "focal")
AUTOENCODE_LOSSES = ("mse", "l1")
LOSSES = SEGMENT_LOSSES + AUTOENCODE_LOSSES


def _prepare(logits, target, ignore_index):
    """Valid mask and a target with ignored pixels set to class 0 (any legal value works)."""
    import torch

    if target.shape != (logits.shape[0], *logits.shape[2:]):
        raise InputError(
            f"The target has shape {tuple(target.shape)} but the logits {tuple(logits.shape)}; "
            "they must agree in batch size, height and width."
        )
    valid = target != ignore_index
    safe = torch.where(valid, target, torch.zeros_like(target)).long()
    return valid, safe


def _pixel_weights(safe, valid, class_weights, device):
    import torch

    if class_weights is None:
        return valid.float()
    w = torch.as_tensor(list(class_weights), dtype=torch.float32, device=device)
    return w[safe] * valid.float()


def _mean(values, weights):
    return (values * weights).sum() / weights.sum().clamp_min(1e-6)


def bce(logits, target, *, ignore_index=IGNORE, class_weights=None):
    """Binary cross-entropy on one logit channel; ``class_weights`` = ``(w_background, w_foreground)``."""
    import torch.nn.functional as F

    valid, safe = _prepare(logits, target, ignore_index)
    if class_weights is not None and len(class_weights) == 1:
        class_weights = (1.0, float(class_weights[0]))
    per_pixel = F.binary_cross_entropy_with_logits(logits[:, 0], safe.float(), reduction="none")
    return _mean(per_pixel, _pixel_weights(safe, valid, class_weights, logits.device))


def cross_entropy(logits, target, *, ignore_index=IGNORE, class_weights=None):
    """Softmax cross-entropy on integer labels ``0..C-1``."""
    import torch.nn.functional as F

    valid, safe = _prepare(logits, target, ignore_index)
    per_pixel = F.cross_entropy(logits, safe, reduction="none")
    return _mean(per_pixel, _pixel_weights(safe, valid, class_weights, logits.device))


def soft_dice(logits, target, *, ignore_index=IGNORE, class_weights=None, smooth=1.0):
    """1 - soft Dice over the batch; binary: the foreground; multi-class: mean over classes."""
    import torch
    import torch.nn.functional as F

    valid, safe = _prepare(logits, target, ignore_index)
    v = valid.unsqueeze(1).float()
    if logits.shape[1] == 1:
        prob = torch.sigmoid(logits)
        onehot = safe.unsqueeze(1).float()
    else:
        prob = torch.softmax(logits, dim=1)
        onehot = F.one_hot(safe, logits.shape[1]).permute(0, 3, 1, 2).float()
    prob = prob * v
    onehot = onehot * v
    dims = (0, 2, 3)
    inter = (prob * onehot).sum(dims)
    denom = prob.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + smooth) / (denom + smooth)
    if class_weights is not None and logits.shape[1] > 1:
        w = torch.as_tensor(list(class_weights), dtype=torch.float32, device=logits.device)
        return 1 - (dice * w).sum() / w.sum()
    return 1 - dice.mean()


def focal(logits, target, *, ignore_index=IGNORE, class_weights=None, gamma=2.0):
    """Focal loss (Lin et al. 2017): cross-entropy scaled by ``(1 - p_true) ** gamma``."""
    import torch
    import torch.nn.functional as F

    valid, safe = _prepare(logits, target, ignore_index)
    if logits.shape[1] == 1:
        if class_weights is not None and len(class_weights) == 1:
            class_weights = (1.0, float(class_weights[0]))
        ce = F.binary_cross_entropy_with_logits(logits[:, 0], safe.float(), reduction="none")
    else:
        ce = F.cross_entropy(logits, safe, reduction="none")
    p_true = torch.exp(-ce)
    per_pixel = (1 - p_true) ** gamma * ce
    return _mean(per_pixel, _pixel_weights(safe, valid, class_weights, logits.device))


def edge_smoothness(logits, image, *, sigma: float = 0.5, radius: int = 2):
    """Edge-aware Potts relaxation: neighbours of similar intensity should agree (weak labels).

    For every pixel pair ``(a, b)`` at most ``radius`` apart, ``w_ab * (1 - sum_c p_a,c p_b,c)``,
    the probability that the two take different classes, weighted by how alike they look:
    ``w_ab = exp(-(I_a - I_b)^2 / (2 (sigma * s)^2)) * exp(-|a - b|^2 / (2 radius^2))`` on the
    image smoothed over 3x3 pixels, ``s`` the crop's intensity spread. Averaged over pixels and
    normalised by the spatial weights, so it lies in [0, 1]. Cutting between dissimilar pixels (an
    edge) is cheap, cutting inside a uniform region is dear: labels spread from the strokes to the
    image's edges (a local form of the CRF losses of Tang et al. 2018, Obukhov et al. 2019). It
    reads no target, so unpainted pixels train through it and only through it.
    """
    import math

    import torch
    import torch.nn.functional as F

    prob = torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)
    if logits.shape[1] == 1:
        prob = torch.cat([1 - prob, prob], dim=1)
    img = F.avg_pool2d(image.float(), 3, stride=1, padding=1, count_include_pad=False).mean(1, keepdim=True)
    spread = img.flatten(1).std(dim=1).clamp_min(1e-6).view(-1, 1, 1, 1)
    total, norm = logits.new_zeros(()), 0.0
    h, w = logits.shape[2:]
    for dy in range(0, radius + 1):
        for dx in range(-radius, radius + 1):
            if (dy, dx) <= (0, 0) or dy * dy + dx * dx > radius * radius:
                continue  # each unordered pair once, inside the disc
            ya, yb = slice(0, h - dy), slice(dy, h)
            xa, xb = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
            diff = (img[:, :, ya, xa] - img[:, :, yb, xb]) / (sigma * spread)
            spatial = math.exp(-(dy * dy + dx * dx) / (2.0 * radius * radius))
            agree = (prob[:, :, ya, xa] * prob[:, :, yb, xb]).sum(1, keepdim=True)
            total = total + spatial * (torch.exp(-0.5 * diff * diff) * (1 - agree)).mean()
            norm += spatial
    return total / norm


def mse(output, target, *, valid=None):
    """Mean squared error over valid pixels (all pixels when ``valid`` is None)."""
    import torch

    if valid is None:
        return torch.mean((output - target) ** 2)
    valid = valid.expand_as(output)
    return torch.mean((output[valid] - target[valid]) ** 2) if valid.any() else output.sum() * 0


def l1(output, target, *, valid=None):
    """Mean absolute error over valid pixels (all pixels when ``valid`` is None)."""
    import torch

    if valid is None:
        return torch.mean(torch.abs(output - target))
    valid = valid.expand_as(output)
    return torch.mean(torch.abs(output[valid] - target[valid])) if valid.any() else output.sum() * 0


def make_loss(
    name: str,
    *,
    task: str = "segment",
    ignore_index: int = IGNORE,
    class_weights: Sequence[float] | None = None,
) -> Callable:
    """Return ``loss(output, target)`` for a name in :data:`LOSSES`.

    ``"bce_dice"`` on a multi-class model means cross-entropy + Dice (``"ce_dice"``), so one
    default serves binary and multi-class models.
    """
    if name not in LOSSES:
        raise InputError(f"Unknown loss {name!r}; choose one of {', '.join(LOSSES)}.")
    if task == "autoencode":
        if name not in AUTOENCODE_LOSSES:
            raise InputError(
                f"The loss {name!r} is for segmentation; autoencoders use 'mse' or 'l1'."
            )
        return mse if name == "mse" else l1
    if name in AUTOENCODE_LOSSES:
        raise InputError(
            f"The loss {name!r} is for autoencoders; segmentation uses one of {', '.join(SEGMENT_LOSSES)}."
        )
    kw = {"ignore_index": ignore_index, "class_weights": class_weights}

    def loss(logits, target):
        binary = logits.shape[1] == 1
        if name == "dice":
            return soft_dice(logits, target, **kw)
        if name == "focal":
            return focal(logits, target, **kw)
        if name in ("bce", "ce"):
            return bce(logits, target, **kw) if binary else cross_entropy(logits, target, **kw)
        base = bce(logits, target, **kw) if binary else cross_entropy(logits, target, **kw)
        return base + soft_dice(logits, target, **kw)

    loss.__name__ = name
    return loss
