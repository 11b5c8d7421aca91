"""Training state on disk: best/last checkpoints plus an optimizer sidecar (safetensors, no pickles).

A checkpoint ``best.safetensors`` (written by :func:`napari_segnets.checkpoints.save`) may have
a sidecar ``best.optim.safetensors`` holding the optimizer's tensors, with its JSON-able
remainder (param groups, step counters) in the safetensors header. Both carry the same
``state_id``; a sidecar whose id differs from its checkpoint's (a crash between the two
atomic writes) is ignored on resume rather than silently mixed with other weights.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import CheckpointError


def sidecar_path(checkpoint) -> Path:
    """``x.safetensors`` -> ``x.optim.safetensors``."""
    p = Path(checkpoint)
    return p.with_name(
        p.name[: -len(p.suffix)] + ".optim" + p.suffix if p.suffix else p.name + ".optim"
    )


def last_path(checkpoint) -> Path:
    """``x.safetensors`` -> ``x.last.safetensors`` (the state after the latest epoch, for resume)."""
    p = Path(checkpoint)
    return p.with_name(
        p.name[: -len(p.suffix)] + ".last" + p.suffix if p.suffix else p.name + ".last"
    )


def save_optimizer(path, optimizer, *, state_id: str, extra: dict | None = None) -> Path:
    """Write the optimizer state atomically as safetensors (tensors) + JSON header (the rest)."""
    import torch
    from safetensors.torch import save_file

    from ..io.atomic import atomic_path

    sd = optimizer.state_dict()
    tensors, rest = {}, {}
    for pid, st in sd["state"].items():
        for key, value in st.items():
            if torch.is_tensor(value):
                tensors[f"{pid}.{key}"] = value.detach().to("cpu").contiguous()
            else:
                rest.setdefault(str(pid), {})[key] = value
    header = {
        "param_groups": json.dumps(sd["param_groups"]),
        "state": json.dumps(rest),
        "state_id": state_id,
        "extra": json.dumps(extra or {}),
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=header)
    return Path(path)


def load_optimizer(path, optimizer, *, state_id: str | None = None, device="cpu") -> dict | None:
    """Load a sidecar into ``optimizer``; return its ``extra`` dict, or None when absent or mismatched."""
    from safetensors import safe_open

    path = Path(path)
    if not path.exists():
        return None
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as fh:
            header = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:  # a truncated or foreign file: refuse clearly
        raise CheckpointError(
            f"The optimizer state {path} cannot be read ({exc}); delete it to start a fresh optimizer."
        ) from exc
    if state_id is not None and header.get("state_id") != state_id:
        return None
    state: dict = {}
    for key, value in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    for pid, st in json.loads(header.get("state", "{}")).items():
        state.setdefault(int(pid), {}).update(st)
    groups = json.loads(header["param_groups"])
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError) as exc:
        raise CheckpointError(
            f"The optimizer state {path} does not fit this model/optimizer ({exc}); resume with the same "
            "architecture and optimizer, or start without resume."
        ) from exc
    return json.loads(header.get("extra", "{}"))


def save_training_state(
    path, model, metadata: dict, optimizer=None, extra: dict | None = None
) -> Path:
    """Checkpoint (atomic, via :mod:`napari_segnets.checkpoints`) and, optionally, its optimizer sidecar."""
    import uuid

    from .. import checkpoints

    state_id = uuid.uuid4().hex
    meta = dict(metadata)
    meta["training"] = dict(meta.get("training", {}), state_id=state_id)
    # The sidecar first: a crash after it but before the checkpoint leaves an id nobody matches.
    if optimizer is not None:
        save_optimizer(sidecar_path(path), optimizer, state_id=state_id, extra=extra)
    return checkpoints.save(path, model, metadata=meta)
