"""The explicit architecture registry: names -> builders, presets and parameter-budget matching."""

from __future__ import annotations

import inspect
import numbers

from ..errors import InputError

TASKS = ("segment", "autoencode")

# Defaults for ``base`` when neither base nor budget is given.
DEFAULT_BASE = {"unet": 16, "atrous": 32, "fcn32s": 16, "fcn16s": 16, "fcn8s": 16}

PRESETS: dict[str, dict[str, dict]] = {
    "unet": {
        # Ronneberger et al. 2015: 64 -> 1024 channels, dropout 0.3 after the two deepest blocks.
        "original": {
            "base": 64,
            "depth": 4,
            "up": "transposed",
            "dropout": 0.3,
            "dropout_depth": 2,
        },
        "unet32": {"base": 32, "depth": 4},
        "unet16": {"base": 16, "depth": 4},
        "unet8": {"base": 8, "depth": 4},
    },
    "atrous": {
        # Yu & Koltun 2016 context module (dilations 1, 2, 4, 8, 16, 1).
        "context32": {"base": 32, "dilations": [1, 2, 4, 8, 16, 1], "aspp": False},
        "context16": {"base": 16, "dilations": [1, 2, 4, 8, 16, 1], "aspp": False},
        "aspp32": {"base": 32, "dilations": [1, 2, 4, 8, 16, 1], "aspp": True},
    },
    **{
        fcn: {
            # Long et al. 2015 on VGG-16: 64 -> 512 channels, 4096-wide fc6 (7x7) and fc7.
            "vgg16": {"base": 64, "fc_channels": 4096, "fc_kernel": 7},
            "fcn16": {"base": 16},
            "fcn8": {"base": 8},
        }
        for fcn in ("fcn32s", "fcn16s", "fcn8s")
    },
    "linear": {"patch8": {"patch": 8, "components": 16}},
    "pca": {"patch8": {"patch": 8, "components": 16}},
}


def _unet(**kw):
    from .unet import UNet

    return UNet(**kw)


def _atrous(**kw):
    from .atrous import AtrousNet

    return AtrousNet(**kw)


def _fcn(variant):
    def make(**kw):
        from .fcn import FCN

        return FCN(variant=variant, **kw)

    return make


def _linear(**kw):
    from .pca import PatchLinearAE

    return PatchLinearAE(arch="linear", **kw)


def _pca(**kw):
    from .pca import PatchLinearAE

    return PatchLinearAE(arch="pca", **kw)


def _model_class(arch):
    if arch == "unet":
        from .unet import UNet as cls
    elif arch == "atrous":
        from .atrous import AtrousNet as cls
    elif arch.startswith("fcn"):
        from .fcn import FCN as cls
    else:
        from .pca import PatchLinearAE as cls
    return cls


BUILDERS = {
    "unet": _unet,
    "atrous": _atrous,
    "fcn32s": _fcn(32),
    "fcn16s": _fcn(16),
    "fcn8s": _fcn(8),
    "linear": _linear,
    "pca": _pca,
}

# Families whose width can be matched to a parameter budget.
BUDGET_ARCHS = ("unet", "atrous", "fcn32s", "fcn16s", "fcn8s")


def available() -> list[str]:
    """The architecture names :func:`build` accepts."""
    return list(BUILDERS)


def presets(arch: str | None = None) -> dict:
    """Named option sets: ``{arch: {preset: options}}``, or ``{preset: options}`` for one ``arch``."""
    if arch is None:
        return {a: {p: dict(o) for p, o in ps.items()} for a, ps in PRESETS.items()}
    _check_arch(arch)
    return {p: dict(o) for p, o in PRESETS.get(arch, {}).items()}


def _check_arch(arch) -> None:
    if arch not in BUILDERS:
        raise InputError(f"Unknown architecture {arch!r}: choose one of {', '.join(BUILDERS)}.")


def _check_options(arch: str, options: dict) -> None:
    params = inspect.signature(_model_class(arch).__init__).parameters
    allowed = {n for n in params if n not in ("self", "variant", "arch")}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise InputError(
            f"Unknown option(s) {', '.join(unknown)} for {arch!r}: valid options are "
            f"{', '.join(sorted(allowed))}."
        )


def build(
    arch: str,
    *,
    task: str = "segment",
    in_channels: int = 1,
    classes: int = 1,
    base: float | None = None,
    budget: int | None = None,
    preset: str | None = None,
    seed: int | None = None,
    **options,
):
    """Build a model by name.

    Parameters
    ----------
    arch : str
        One of :func:`available`: ``"unet"``, ``"atrous"``, ``"fcn32s"``, ``"fcn16s"``,
        ``"fcn8s"``, ``"linear"``, ``"pca"``.
    task : {"segment", "autoencode"}
        Segmentation (logits, ``classes`` channels) or autoencoding (``in_channels`` channels).
    in_channels, classes : int
        Input channels and segmentation classes (``classes`` is ignored for autoencoding).
    base : float, optional
        Width of the first stage (family default when omitted).
    budget : int, optional
        Target number of weights; the width is chosen so the model lands within 5% of it.
        Mutually exclusive with ``base``.
    preset : str, optional
        A named option set from :func:`presets`; explicit arguments override it.
    seed : int, optional
        Draw the initial weights from this seed (bit-identical on the CPU; torch's global random
        state is left as it was). ``None``: from torch's global random state.
    **options
        Family options (e.g. ``depth``, ``up``, ``dropout`` for the U-Net).

    Returns
    -------
    torch.nn.Module
        With ``arch``, ``task``, ``config``, ``out_channels``, ``size_multiple``, ``halo``
        and ``check_input``; ``build(**model.config)`` rebuilds the same architecture.
    """
    if seed is not None:
        import torch

        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise InputError(f"seed must be a whole number, got {seed!r}.")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            return build(arch, task=task, in_channels=in_channels, classes=classes, base=base,
                         budget=budget, preset=preset, **options)
    _check_arch(arch)
    if task not in TASKS:
        raise InputError(f"Unknown task {task!r}: use 'segment' or 'autoencode'.")
    for name, value in (("in_channels", in_channels), ("classes", classes)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise InputError(f"{name} must be a positive integer, got {value!r}.")
    in_channels, classes = int(in_channels), int(classes)  # plain ints keep config JSON-clean
    if preset is not None:
        known = PRESETS.get(arch, {})
        if preset not in known:
            raise InputError(
                f"Unknown preset {preset!r} for {arch!r}: choose one of {', '.join(known) or 'none'}."
            )
        merged = dict(known[preset])
        if base is not None or budget is not None:
            merged.pop("base", None)
        merged.update(options)
        base = merged.pop("base", base)
        options = merged
    _check_options(arch, options)
    kwargs = {"task": task, "in_channels": in_channels, "classes": classes, **options}
    if arch not in BUDGET_ARCHS:
        if base is not None or budget is not None:
            raise InputError(
                f"{arch!r} is sized by patch and components, not by base or budget: "
                "pass patch=... and components=... instead."
            )
        if task != "autoencode":
            raise InputError(
                f"{arch!r} is an autoencoder baseline: build it with task='autoencode'."
            )
        return BUILDERS[arch](**kwargs)
    if budget is not None:
        if base is not None:
            raise InputError("Give either base or budget, not both.")
        base = match_budget(arch, budget, **kwargs)
    if base is None:
        base = DEFAULT_BASE[arch]
    if isinstance(base, bool) or not isinstance(base, numbers.Real) or not base > 0:
        raise InputError(f"base must be a positive number of channels, got {base!r}.")
    base = int(base) if float(base).is_integer() else float(base)
    return BUILDERS[arch](base=base, **kwargs)


def count_parameters(model) -> int:
    """Number of trainable weights (buffers such as batch-norm statistics excluded)."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def _meta_model(arch: str, base: float, kwargs: dict):
    import torch

    with torch.device("meta"):
        return BUILDERS[arch](base=base, **kwargs)


def match_budget(arch: str, budget: int, **kwargs) -> float:
    """The ``base`` width whose model has the parameter count closest to ``budget``.

    Widths are ``round(base * multiplier)`` per stage, so a fractional ``base`` lets
    the stages round at different points and the count moves in small steps. Every
    width is non-decreasing in ``base``, so the count is too and bisection finds the
    two width settings either side of the budget. Models are built on the meta
    device (no memory, no initialisation).
    """
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or budget <= 0:
        raise InputError(f"budget must be a positive number of weights, got {budget!r}.")

    def count(b):
        return count_parameters(_meta_model(arch, b, kwargs))

    lo, hi = 0.5, 1.0
    smallest = count(lo)
    if budget < smallest:
        raise InputError(
            f"A budget of {int(budget):,} weights is below the smallest {arch!r} "
            f"({smallest:,} weights with these options): raise the budget."
        )
    while count(hi) < budget:
        lo, hi = hi, hi * 2
        if hi > 1e5:
            raise InputError(f"A budget of {int(budget):,} weights is too large for {arch!r}.")
    while hi - lo > 1e-4 * hi:  # finer than any two distinct width settings in practice
        mid = (lo + hi) / 2
        if count(mid) < budget:
            lo = mid
        else:
            hi = mid
    best = lo if abs(count(lo) - budget) < abs(count(hi) - budget) else hi
    # The shortest decimal inside the same width setting: a readable, stable config value.
    channels = _meta_model(arch, best, kwargs).channels
    for digits in range(1, 8):
        nice = round(best, digits)
        if nice > 0 and _meta_model(arch, nice, kwargs).channels == channels:
            return float(nice)
    return float(best)
