"""Device choice (``auto`` picks CUDA, then Apple MPS, then the CPU) and reduced precision."""

from __future__ import annotations

from functools import lru_cache

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


@lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """Does this CPU compute bfloat16 natively (AVX-512 BF16 or AMX)? Linux flags; else False."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def autocast_dtype(device, amp=None):
    """The one precision decision for training and prediction: an autocast dtype or None (fp32).

    Parameters
    ----------
    device : torch.device or str
    amp : None, bool, {"bf16", "fp16"} or a torch dtype
        ``None`` (auto): bf16 on CUDA GPUs that support it (fp16 on older ones) and on CPUs
        that compute bf16 natively (:func:`cpu_has_bf16`; measured on the project's 2-core
        Zen 4: about 2x faster U-Net training and prediction, ``benchmarks/bf16_speed.py``),
        float32 elsewhere (MPS, older CPUs where bf16 is emulated and slower).
        ``True``: bf16 (fp16 on GPUs without bf16). ``False``: float32.
    """
    import torch

    dev = torch.device(device)
    if isinstance(amp, torch.dtype):
        return amp
    if amp is None:
        if dev.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if dev.type == "cpu" and cpu_has_bf16() else None
    if amp is False:
        return None
    if amp is True:
        if dev.type == "cuda" and not torch.cuda.is_bf16_supported():
            return torch.float16
        return torch.bfloat16
    names = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16,
             "float16": torch.float16}
    if amp in names:
        return names[amp]
    raise InputError(
        f"Unknown amp setting {amp!r}: use None (auto), True, False, 'bf16' or 'fp16'."
    )
