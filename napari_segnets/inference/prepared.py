"""The inference copy of a model (eval, on the device, batch norm folded, channels_last), cached.

Preparing means a deep copy plus folding: about half a GB and a fraction of a second for the
VGG-16 FCN, paid on every ``predict`` call (each GUI click, each chunk of a distributed run)
before this cache. The copy is kept per model object, device and options, and rebuilt when the
model's weights change: the key holds every parameter's and buffer's identity, storage address
and in-place version counter (optimizer steps, ``load_state_dict``, batch-norm statistics
updated in a training forward, ``p.data = ...`` all change it).
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections import OrderedDict

MAX_ENTRIES = 4  # prepared copies kept in all (least recently used dropped first)

_lock = threading.Lock()
_entries: OrderedDict = OrderedDict()  # (id(model), device, options) -> (weakref, version, net)
stats = {"hits": 0, "misses": 0}


def fold_batchnorm(model):
    """Fold every eval-mode ``BatchNorm2d`` that follows a ``Conv2d`` in a ``Sequential`` into it.

    The same function in one convolution instead of a convolution plus a pass over the feature map;
    changes outputs only by float rounding. Works in place: call it on a copy.
    """
    import torch
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = 0
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for first, second in zip(names, names[1:]):
            conv, bn = module._modules[first], module._modules[second]
            if (
                type(conv) is nn.Conv2d
                and type(bn) is nn.BatchNorm2d
                and bn.track_running_stats
                and conv.out_channels == bn.num_features
            ):
                with torch.no_grad():
                    module._modules[first] = fuse_conv_bn_eval(conv.eval(), bn.eval())
                module._modules[second] = nn.Identity()
                folded += 1
    return folded


def weights_version(model):
    """A key that changes whenever any parameter, buffer, submodule or forward hook of ``model`` changes.

    None if unknowable.

    Tensors made under ``torch.inference_mode`` carry no version counter: such models are
    prepared afresh every time.
    """
    try:
        tensors = tuple(
            (name, id(t), t.data_ptr(), t._version, t.device.type)
            for name, t in [*model.named_parameters(), *model.named_buffers()]
        )
    except RuntimeError:
        return None
    # Swapped submodules and added/removed hooks change what the copy must be too (deepcopy copies hooks).
    modules = tuple(
        (id(m), tuple(m._forward_hooks), tuple(m._forward_pre_hooks)) for m in model.modules()
    )
    return tensors, modules


def _prepare(model, device, channels_last: bool, fold: bool):
    import copy

    import torch

    net = copy.deepcopy(model).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    if fold:
        fold_batchnorm(net)
    net.to(device)
    if channels_last:
        net.to(memory_format=torch.channels_last)
    return net


def clear_prepared() -> None:
    """Drop every cached inference copy (e.g. to free GPU memory)."""
    with _lock:
        _entries.clear()
        _dead.clear()


_dead: list = []  # keys of models collected since; a weakref callback may run while _lock is held


def _forget(key) -> None:
    _dead.append(key)  # atomic; never takes the lock (the garbage collector can run anywhere)


def _sweep() -> None:
    """Drop entries of collected models; call with ``_lock`` held."""
    while _dead:
        key = _dead.pop()
        entry = _entries.get(key)
        if entry is not None and entry[0]() is None:
            del _entries[key]


@contextlib.contextmanager
def prepared_model(model, device, channels_last: bool = True, fold: bool = True, cache: bool = True):
    """Yield an inference copy of ``model``: eval mode, on ``device``, batch norm folded, channels_last.

    The caller's model is never modified (its mode, device, memory format and weights stay as they
    were). With ``cache=True`` the copy is kept for the next call with the same model, device and
    options, as long as the weights are unchanged (see :func:`weights_version`); it is read-only,
    so concurrent predictions may share it.
    """
    import torch

    key = (id(model), str(torch.device(device)), bool(channels_last), bool(fold))
    version = weights_version(model) if cache else None
    if version is not None:
        with _lock:
            _sweep()
            entry = _entries.get(key)
            if entry is not None and entry[0]() is model and entry[1] == version:
                _entries.move_to_end(key)
                stats["hits"] += 1
                net = entry[2]
            else:
                net = None
        if net is not None:
            yield net
            return
    stats["misses"] += 1
    net = _prepare(model, device, channels_last, fold)
    if version is not None:
        ref = weakref.ref(model, lambda _ref, key=key: _forget(key))
        with _lock:
            _sweep()
            _entries[key] = (ref, version, net)
            _entries.move_to_end(key)
            while len(_entries) > MAX_ENTRIES:
                _entries.popitem(last=False)
    yield net
