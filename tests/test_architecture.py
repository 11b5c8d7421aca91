"""House rules: the core never imports Qt/napari/magicgui, and importing the package is cheap."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "napari_segnets"
GUI_MODULES = {
    "qtpy",
    "PyQt5",
    "PyQt6",
    "PySide2",
    "PySide6",
    "napari",
    "magicgui",
    "vispy",
    "superqt",
}


GUI_WING = ("napari_segnets._widgets", "napari_segnets._napari")
# The core may reach into the GUI wing in exactly these places, each inside a function (lazy):
# the command line's no-argument path opens the viewer. Nothing else.
ALLOWED_GUI_IMPORTS = {("napari_segnets/_cli/__init__.py", "napari_segnets._widgets._launch")}


def _is_gui_side(path: Path) -> bool:
    rel = path.relative_to(PKG)
    return rel.parts[0] in {"_widgets", "_qt"} or rel.name == "_napari.py"


def core_files() -> list[Path]:
    return [p for p in sorted(PKG.rglob("*.py")) if not _is_gui_side(p)]


def _module_name(path: Path) -> list[str]:
    """The dotted package of ``path`` (what a relative import is relative to), as parts."""
    return list(path.relative_to(PKG.parent).parts[:-1])


def imported_names(path: Path, tree: ast.AST):
    """(node, absolute module name, lazy) for every import in ``tree``, relative ones resolved.

    ``from X import Y`` yields both ``X`` and ``X.Y`` (Y may be a module); string literals given to
    ``importlib.import_module`` or ``__import__`` count as imports too, so they cannot dodge the rule.
    """
    package = _module_name(path)
    lazy_nodes = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lazy_nodes.update(id(n) for n in ast.walk(fn) if n is not fn)
    for node in ast.walk(tree):
        lazy = id(node) in lazy_nodes
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name, lazy
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module:
                yield node, module, lazy
            for alias in node.names:
                yield node, f"{module}.{alias.name}".lstrip("."), lazy
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in {"import_module", "__import__"} and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    yield node, arg.value, lazy
                else:  # a computed name cannot be checked statically
                    yield node, "<computed>", lazy


def _is_gui(name: str) -> bool:
    if name == "<computed>" or name.split(".")[0] in GUI_MODULES:
        return True
    return any(name == w or name.startswith(w + ".") for w in GUI_WING)


def gui_imports(path: Path) -> list[tuple[int, str, bool]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        (node.lineno, name, lazy)
        for node, name, lazy in imported_names(path, tree)
        if _is_gui(name)
    ]


def test_core_sources_never_import_gui_toolkits():
    offenders, used = [], set()
    for path in core_files():
        rel = path.relative_to(PKG.parent).as_posix()
        for lineno, name, lazy in gui_imports(path):
            allowed = [(f, t) for f, t in ALLOWED_GUI_IMPORTS if f == rel and name.startswith(t)]
            if allowed and lazy:
                used.update(allowed)
                continue
            offenders.append(
                f"{rel}:{lineno} imports {name}" + (" at module level" if allowed else "")
            )
    assert not offenders, (
        "core modules must not import the GUI (toolkits or _widgets):\n" + "\n".join(offenders)
    )
    assert used == ALLOWED_GUI_IMPORTS, (
        f"allowed GUI imports no longer used: {ALLOWED_GUI_IMPORTS - used}"
    )


@pytest.mark.parametrize(
    "source, lazy",
    [
        ("import napari", False),
        ("from napari import Viewer", False),
        ("from .. import _widgets", False),
        ("from .._widgets._launch import run_viewer", False),
        ("from .._widgets import launch", False),
        ("from .._napari import reader", False),
        ("def f():\n    import importlib\n    importlib.import_module('qtpy.QtCore')", True),
        ("__import__('magicgui')", False),
        ("import importlib\nname = 'napari'\nimportlib.import_module(name)", False),
    ],
)
def test_the_import_rule_sees_relative_and_dynamic_imports(tmp_path, source, lazy):
    # a pretend core module one level down (like napari_segnets/io/x.py): `..` is the package
    path = PKG / "io" / "_pretend.py"
    tree = ast.parse(source)
    found = [(name, lz) for node, name, lz in imported_names(path, tree) if _is_gui(name)]
    assert found, f"the rule missed a GUI import in: {source!r}"
    assert all(lz == lazy for _, lz in found)


def test_relative_imports_resolve_against_the_package():
    path = PKG / "_cli" / "__init__.py"
    names = {
        n
        for _, n, _ in imported_names(
            path, ast.parse("from .. import errors\nfrom . import common")
        )
    }
    assert {"napari_segnets", "napari_segnets.errors", "napari_segnets._cli.common"} <= names


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
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=PKG.parent
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"importing the core pulled in: {out.stdout.strip()}"


@pytest.mark.parametrize("heavy", ["torch", "pywt", "dask", "zarr", "h5py"])
def test_package_import_is_lazy(heavy):
    code = f"import sys, napari_segnets; print({heavy!r} in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=PKG.parent
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False", f"`import napari_segnets` imports {heavy} eagerly"
