"""Pre-training on the stack itself: an autoencoder's encoder initialises a segmentation net.

A biologist with a new stack and a few strokes has plenty of unlabelled pixels. An autoencoder
of the same architecture and width (the project's own, ``task="autoencode"``) learns features
of that stack without labels; :func:`init_encoder` copies its encoder into the segmentation
model before training on the strokes. The U-Net's autoencoder is built without skip
connections by default (:func:`matching_autoencoder`): with them the first skip alone can
reconstruct the input, and the deep encoder stages would learn little.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..progress import Job, drive

_FCN = ("fcn32s", "fcn16s", "fcn8s")

# The encoder of each family: state-dict prefixes, and the config keys that fix its weights' shapes
# (two models whose values agree here have interchangeable encoders).
ENCODERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "unet": (("down.",), ("in_channels", "base", "depth")),
    "atrous": (("stem.", "context."), ("in_channels", "base", "dilations")),
    **{
        fcn: (
            ("stages.", "fc6.", "fc7."),
            ("in_channels", "base", "fc_channels", "fc_kernel", "convs", "batch_norm"),
        )
        for fcn in _FCN
    },
}


def _family(arch: str) -> str:
    return "fcn" if arch in _FCN else arch


def _encoder_spec(model, role: str):
    arch = getattr(model, "arch", None)
    if arch not in ENCODERS:
        raise InputError(
            f"The {role} is a {arch!r} model, which has no convolutional encoder to share; "
            f"use one of {', '.join(ENCODERS)}."
        )
    return ENCODERS[arch]


def encoder_state(model) -> dict:
    """The encoder's tensors (weights and batch-norm statistics) of ``model``, by state-dict name."""
    prefixes, _ = _encoder_spec(model, "model")
    return {k: v for k, v in model.state_dict().items() if k.startswith(prefixes)}


def matching_autoencoder(model, **options):
    """A fresh autoencoder whose encoder fits ``model`` (same architecture and width).

    ``options`` override the autoencoder's other settings; a U-Net's autoencoder has
    ``skips=False`` unless given.
    """
    from ..models import build

    _encoder_spec(model, "model")
    config = {k: v for k, v in model.config.items() if k not in ("task", "classes")}
    if model.arch == "unet":
        config["skips"] = False
    config.update(options)
    return build(**config, task="autoencode")


def init_encoder(model, source) -> dict:
    """Copy the encoder of ``source`` (a checkpoint path or a model) into ``model``, in place.

    Parameters
    ----------
    model : torch.nn.Module
        The segmentation model to initialise (from :func:`napari_segnets.models.build`).
    source : path-like or torch.nn.Module
        An autoencoder (or any model) of the same architecture, input channels and width.

    Returns
    -------
    dict
        ``source`` (path or ``None``), ``content_hash`` and ``normalization`` of a checkpoint
        source (train with that normalisation: the encoder learned those intensities),
        ``tensors`` copied (batch-norm statistics included) and ``weights`` (learned values copied).

    Raises
    ------
    InputError
        When the architectures or encoder settings differ (one sentence naming them).
    """
    import torch

    path, meta = None, {}
    if isinstance(source, str | Path):
        from .. import checkpoints
        from ..errors import CheckpointError

        path = Path(source)
        if not path.exists():
            raise CheckpointError(f"The encoder checkpoint {path} does not exist; check the path.")
        source, meta = checkpoints.load(path)
    name = f"the autoencoder {path}" if path else "the source model"
    _, keys = _encoder_spec(source, "source of the encoder")
    _encoder_spec(model, "model")
    if _family(source.arch) != _family(model.arch):
        raise InputError(
            f"The encoder of {name} comes from architecture {source.arch!r} but the model is "
            f"{model.arch!r}; train an autoencoder with --arch {model.arch} and the model's width."
        )
    differ = [k for k in keys if source.config.get(k) != model.config.get(k)]
    if differ:
        got = ", ".join(f"{k}={source.config.get(k)!r}" for k in differ)
        want = ", ".join(f"{k}={model.config.get(k)!r}" for k in differ)
        raise InputError(
            f"The encoder of {name} has {got} but the model has {want}; "
            "train the autoencoder with the same architecture and width as the model."
        )
    src, dst = encoder_state(source), model.state_dict()
    wrong = [k for k, v in src.items() if k not in dst or dst[k].shape != v.shape]
    if wrong or not src:  # the config check above should make this impossible
        raise InputError(
            f"The encoder of {name} does not fit the model (first mismatch: {wrong[:1]}); "
            "train the autoencoder with the same architecture and width as the model."
        )
    with torch.no_grad():
        for k, v in src.items():
            dst[k].copy_(v.to(dst[k].device))
    return {
        "source": None if path is None else str(path.resolve()),
        "content_hash": meta.get("content_hash"),
        "normalization": meta.get("normalization"),
        "tensors": len(src),
        "weights": int(sum(p.numel() for k, p in source.named_parameters() if k in src)),
    }


def pretrain_encoder_iter(
    model,
    image,
    *,
    minutes: float | None = 2.0,
    epochs: int = 10_000,
    steps_per_epoch=50,
    checkpoint=None,
    autoencoder: dict | None = None,
    **kwargs,
) -> Job[dict]:
    """Train the autoencoder matching ``model`` on an unlabelled ``image`` stack, then copy its encoder.

    Parameters
    ----------
    model : torch.nn.Module
        The segmentation model whose encoder is initialised in place.
    image : array-like
        ``(Y, X)`` or ``(Z, Y, X)`` intensities (the stack to be segmented; no labels needed).
    minutes, epochs, steps_per_epoch
        The autoencoder's budget (whichever ends first).
    checkpoint : path, optional
        Where to keep the autoencoder (reusable with :func:`init_encoder` or ``--init-encoder``).
    autoencoder : dict, optional
        Options of the autoencoder (see :func:`matching_autoencoder`), e.g. ``{"skips": True}``.
    **kwargs
        Other :func:`napari_segnets.training.train_iter` options (``seed``, ``crop``, ``lr`` ...).

    Returns
    -------
    dict
        :func:`init_encoder`'s summary, plus ``steps`` and ``seconds`` of the autoencoder run.
    """
    from .datasets import SliceDataset
    from .loop import train_iter

    kwargs.setdefault("loss", "mse")
    kwargs.setdefault("foreground_crop", 0.0)
    ae = matching_autoencoder(model, **(autoencoder or {}))
    result = yield from train_iter(
        ae, SliceDataset(image, None, name="unlabelled stack"), task="autoencode",
        minutes=minutes, epochs=epochs, steps_per_epoch=steps_per_epoch, checkpoint=checkpoint,
        **kwargs,
    )  # fmt: skip
    summary = init_encoder(model, ae)
    summary.update(steps=result.steps, seconds=result.seconds, checkpoint=result.checkpoint)
    return summary


def pretrain_encoder(model, image, *, callback=None, bar=None, **kwargs) -> dict:
    """Plain twin of :func:`pretrain_encoder_iter`."""
    return drive(pretrain_encoder_iter(model, image, **kwargs), callback=callback, bar=bar)
