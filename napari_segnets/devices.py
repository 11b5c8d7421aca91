"""Device choice: ``auto`` picks CUDA, then Apple MPS, then the CPU."""

from __future__ import annotations

from .errors import InputError


def resolve_device(device: str | None = "auto"):
    """Return the ``torch.device`` to run on.

    Parameters
    ----------
    device : str
        ``"auto"`` (CUDA, then MPS, then CPU), or an explicit torch device string
        such as ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"mps"``.
    """
    import torch

    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(
            f"Unknown device {device!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'."
        ) from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"Device {device!r} was asked for but no CUDA GPU is available; use 'auto' or 'cpu'.")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError(f"Device {device!r} was asked for but Apple MPS is not available; use 'auto' or 'cpu'.")
    return dev


def describe_device(device) -> str:
    """A short human description, e.g. ``'cuda:0 (NVIDIA H100)'`` or ``'cpu (2 threads)'``."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    if dev.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(dev)
