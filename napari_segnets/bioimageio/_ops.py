"""The zoo's pre- and postprocessing ops, mapped onto the project's normalisation and torch."""

from __future__ import annotations

from ..errors import CheckpointError


def _scalar(value, what: str) -> float:
    if isinstance(value, (list, tuple)):
        if len(set(value)) != 1:
            raise CheckpointError(f"{what} differs per channel; napari-segnets images have one channel.")
        value = value[0]
    return float(value)


def normalization_from_ops(ops: list[dict]) -> dict:
    """A normalisation spec (:mod:`napari_segnets.io.normalize`) doing what the input ops declare.

    ``scale_range`` (per image), ``scale_linear``, ``zero_mean_unit_variance`` (per image),
    ``fixed_zero_mean_unit_variance`` and a final ``clip``; ``ensure_dtype`` is implied. Statistics
    are computed on the whole image, as the zoo does for one sample.
    """
    spec = None
    clip = None
    for op in ops:
        name, kw = op.get("id"), dict(op.get("kwargs") or {})
        if name == "ensure_dtype":
            continue
        if clip is not None:
            raise CheckpointError(f"The preprocessing has {name!r} after 'clip'; napari-segnets clips last.")
        if name == "clip":
            lo, hi = kw.get("min"), kw.get("max")
            clip = [float(lo) if lo is not None else None, float(hi) if hi is not None else None]
            continue
        if spec is not None:
            raise CheckpointError(f"The preprocessing chains two scalings (… then {name!r}); not supported.")
        if kw.get("reference_tensor"):
            raise CheckpointError(f"The preprocessing {name!r} refers to another tensor; not supported.")
        if name == "scale_range":
            spec = {"mode": "percentile", "low": float(kw.get("min_percentile", 0.0)),
                    "high": float(kw.get("max_percentile", 100.0)), "eps": float(kw.get("eps", 1e-6))}  # fmt: skip
        elif name == "scale_linear":
            gain, offset = _scalar(kw.get("gain", 1.0), "gain"), _scalar(kw.get("offset", 0.0), "offset")
            if gain == 0:
                raise CheckpointError("The preprocessing scale_linear has gain 0.")
            vmin = -offset / gain
            spec = {"mode": "fixed", "vmin": vmin, "vmax": vmin + 1.0 / gain}
        elif name == "zero_mean_unit_variance":
            spec = {"mode": "meanstd", "eps": float(kw.get("eps", 1e-6))}
        elif name == "fixed_zero_mean_unit_variance":
            mean, std = _scalar(kw["mean"], "mean"), _scalar(kw["std"], "std")
            eps = float(kw.get("eps", 1e-6))
            spec = {"mode": "fixed", "vmin": mean, "vmax": mean + std + eps}
        else:
            raise CheckpointError(f"The preprocessing op {name!r} is not supported by napari-segnets.")
    spec = spec or {"mode": "none"}
    spec["clip"] = clip
    return spec


def output_ops(ops: list[dict]):
    """A function applying the declared postprocessing to a torch tensor ``(N, C, Y, X)``."""
    steps = []
    for op in ops:
        name, kw = op.get("id"), dict(op.get("kwargs") or {})
        if name == "ensure_dtype":
            continue
        if name == "sigmoid":
            steps.append(lambda t: t.sigmoid())
        elif name == "softmax":
            if kw.get("axis", "channel") != "channel":
                raise CheckpointError("softmax over an axis other than the channel is not supported.")
            steps.append(lambda t: t.softmax(dim=1))
        elif name == "clip":
            lo, hi = kw.get("min"), kw.get("max")
            steps.append(lambda t, lo=lo, hi=hi: t.clamp(min=lo, max=hi))
        elif name == "scale_linear":
            g, o = _scalar(kw.get("gain", 1.0), "gain"), _scalar(kw.get("offset", 0.0), "offset")
            steps.append(lambda t, g=g, o=o: t * g + o)
        elif name == "binarize":
            thr = _scalar(kw.get("threshold", 0.5), "threshold")
            steps.append(lambda t, thr=thr: (t > thr).float())
        else:
            raise CheckpointError(
                f"The postprocessing op {name!r} depends on data napari-segnets does not have per tile."
            )

    def apply(t):
        for step in steps:
            t = step(t)
        return t

    return apply
