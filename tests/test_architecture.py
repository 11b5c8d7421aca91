"""House rules: the core never imports Qt/napari/magicgui, and importing the package is cheap."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "napari_segnets"
GUI_MODULES = {"qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "magicgui", "vispy", "superqt"}


def _is_gui_side(path: Path) -> bool:
    rel = path.relative_to(PKG)
    return rel.parts[0] in {"_widgets", "_qt"} or rel.name == "_napari.py"


def core_files() -> list[Path]:
    return [p for p in sorted(PKG.rglob("*.py")) if not _is_gui_side(p)]


def test_core_sources_never_import_gui_toolkits():
    offenders = []
    for path in core_files():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in GUI_MODULES:
                    offenders.append(f"{path.relative_to(PKG.parent)}:{node.lineno} imports {name}")
    assert not offenders, "core modules must not import GUI toolkits:\n" + "\n".join(offenders)


def test_importing_every_core_module_loads_no_gui_toolkit():
    modules = []
    for path in core_files():
        rel = path.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules.append(".".join(parts))
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {sorted(GUI_MODULES)!r})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PKG.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"importing the core pulled in: {out.stdout.strip()}"


@pytest.mark.parametrize("heavy", ["torch", "pywt", "dask", "zarr", "h5py"])
def test_package_import_is_lazy(heavy):
    code = f"import sys, napari_segnets; print({heavy!r} in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PKG.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False", f"`import napari_segnets` imports {heavy} eagerly"
