"""Shared fixtures: paths to the public data beside the repo, tiny arrays, seeds."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def shared_data() -> Path:
    """The public EM datasets; the test is skipped when they are absent."""
    from napari_segnets.io.public import data_root

    root = data_root()
    if root is None:
        pytest.skip("public EM data not found: ../shared/data is absent (set SEGNETS_DATA to its path)")
    return root


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def _has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def pytest_collection_modifyitems(config, items):
    skip_gui = pytest.mark.skip(reason="no X display: run the tests under `xvfb-run -a`")
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # torch missing or broken: gpu tests cannot run anyway
        has_cuda = False
    skip_gpu = pytest.mark.skip(reason="no CUDA GPU on this machine")
    for item in items:
        if "gui" in item.keywords and not _has_display():
            item.add_marker(skip_gui)
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors: one thread is as fast, and far faster on a shared, oversubscribed CPU."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _fresh_session_registry():
    """Checkpoints "trained in this session" never leak from one test into the next.

    Only touches the registry once a widget test imported it: core tests stay napari-free.
    """

    def clear():
        session = sys.modules.get("napari_segnets._widgets._session")
        if session is not None:
            session.REGISTRY.clear()

    clear()
    yield
    clear()
