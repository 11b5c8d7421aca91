"""The README tells the truth and runs.

Every shell command in the README's "Set up" and "Command line" sections is taken from the README
itself (nothing is listed here), so a command added there is tested without touching this file:

- "Command line": the bash blocks run in order, as written, in an empty temporary directory, with
  only their budgets shortened by textual substitution (:data:`SHORTER`); each run must succeed and
  every file a command names with ``--out``/``--plot``/``--mosaic`` must exist afterwards.
- The Python example runs as written (its ``minutes=`` shortened) next to the sample data.
- "Set up": the ``pip install`` lines are checked, not re-run (installing torch and the package again
  takes minutes and a network): every extra they name exists in pyproject.toml and a pinned torch is
  the torch installed here. The test-suite command is checked the same way (it is this suite). The
  bare ``napari-segnets`` (open the viewer) runs under the X display with a short timeout: the
  napari-segnets window must appear.

``napari-segnets`` runs the entry point pyproject.toml declares, with this Python and this checkout
(what ``pip install -e .`` makes), so a stale console script elsewhere on PATH cannot hide a broken one.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SECTIONS = ("Set up", "Command line")

# Budgets shortened for the test: (pattern, replacement function). Only numbers change.
SHORTER = [
    (r"--minutes (\d+(?:\.\d+)?)", lambda m: f"--minutes {float(m.group(1)) / 100:g}"),
    (r"--epochs (\d+)", lambda m: "--epochs 1"),
    (r"--size (\d+)", lambda m: f"--size {min(int(m.group(1)), 256)}"),
    (r"--repeats (\d+)", lambda m: "--repeats 1"),
]
OUTPUT_FLAGS = ("--out", "--plot", "--mosaic", "--summary")


def section(text: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def shell_blocks(text: str) -> list[str]:
    return re.findall(r"^```(?:bash|sh|shell|console)\n(.*?)^```", text, re.S | re.M)


def commands(block: str) -> list[str]:
    """The block's commands: continuation lines joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", "", block)
    return [
        ln.strip() for ln in joined.splitlines() if ln.strip() and not ln.strip().startswith("#")
    ]


def shorten(command: str) -> str:
    for pattern, repl in SHORTER:
        command = re.sub(pattern, repl, command)
    return command


def _readme_commands(title: str) -> list[str]:
    text = README.read_text()
    found = [c for b in shell_blocks(section(text, title)) for c in commands(b)]
    assert found, f"no shell commands in the README's '{title}' section"
    return found


@pytest.fixture
def bin_dir(tmp_path) -> Path:
    """``napari-segnets`` as pip would install it from pyproject.toml, and ``python`` = this Python."""
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, func = scripts["napari-segnets"].split(":")
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "napari-segnets"
    script.write_text(
        f"#!{sys.executable}\nimport sys\nfrom {module} import {func}\nsys.exit({func}())\n"
    )
    script.chmod(0o755)
    for name in ("python", "python3"):
        (folder / name).symlink_to(sys.executable)
    return folder


def _env(bin_dir: Path) -> dict:
    path = os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")])
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    # one torch thread per process: the test machine's cores are shared
    return dict(os.environ, PATH=path, PYTHONPATH=pythonpath, OMP_NUM_THREADS="1")


def test_no_placeholder_notation_is_presented_as_runnable():
    for title in SECTIONS:
        for command in _readme_commands(title):
            assert not re.search(r"\[--?[\w-]+", command), f"optional-flag notation in: {command}"
            assert "<" not in command and "..." not in command, f"a placeholder in: {command}"


def test_shortening_only_changes_budgets():
    cmd = "napari-segnets train --minutes 5 --epochs 30 --out m.safetensors; bench --size 2048"
    assert (
        shorten(cmd)
        == "napari-segnets train --minutes 0.05 --epochs 1 --out m.safetensors; bench --size 256"
    )
    assert shorten("napari-segnets predict --out p.zarr") == "napari-segnets predict --out p.zarr"


def test_setup_pip_lines_match_the_package():
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = set(meta["optional-dependencies"])
    import torch

    checked = 0
    for line in _readme_commands("Set up"):
        for part in (p.strip() for p in line.split("&&")):
            words = shlex.split(part)
            if words[:2] != ["pip", "install"]:
                continue
            checked += 1
            for word in words[2:]:
                if word == "-e":
                    continue
                if word.startswith("."):  # the package itself, with extras
                    named = re.fullmatch(r"\.(?:\[([\w,-]+)\])?", word)
                    assert named, f"cannot read {word!r}"
                    missing = set(filter(None, (named.group(1) or "").split(","))) - extras
                    assert not missing, f"README installs extras {missing} that pyproject lacks"
                elif word.startswith("torch=="):
                    pinned = word.split("==")[1]
                    assert torch.__version__.split("+")[0] == pinned, (
                        f"README pins torch {pinned}, the tested one is {torch.__version__}"
                    )
                else:
                    pytest.fail(f"README set-up installs {word!r}: add a check for it here")
    assert checked >= 2


def test_setup_test_command_is_this_suite():
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    runs = [p.strip() for ln in _readme_commands("Set up") for p in ln.split("&&") if "pytest" in p]
    assert runs, "the README no longer says how to run the tests"
    for run in runs:
        words = shlex.split(run)
        assert words[-3:] == ["python3", "-m", "pytest"], run
        assert any(
            d.startswith("pytest") for d in meta["project"]["optional-dependencies"]["testing"]
        )
        assert run in (REPO / ".ci" / "run").read_text(), f"CI does not run the README's {run!r}"


@pytest.mark.gui
def test_setup_viewer_command_opens_the_window(bin_dir, tmp_path):
    viewer = [
        p.strip()
        for ln in _readme_commands("Set up")
        for p in ln.split("&&")
        if p.strip() == "napari-segnets"
    ]
    assert viewer, "the README's set-up no longer opens the viewer"
    if shutil.which("xwininfo") is None:
        pytest.skip("xwininfo (x11-utils) is needed to see the window")
    log = (tmp_path / "viewer.log").open("w+")
    proc = subprocess.Popen(
        shlex.split(viewer[0]),
        cwd=tmp_path,
        env=_env(bin_dir),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            tree = subprocess.run(
                ["xwininfo", "-root", "-tree"], capture_output=True, text=True
            ).stdout
            seen = '"napari-segnets"' in tree
            if seen or time.monotonic() > deadline:
                break
            try:  # ask the X server again in half a second, unless the command ends first
                proc.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                pass
        log.seek(0)
        assert seen, f"no napari-segnets window (exit code {proc.poll()}):\n{log.read()[-3000:]}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.mark.slow
def test_command_line_section_runs_in_order(bin_dir, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    steps = [shorten(c) for c in _readme_commands("Command line")]
    script = "set -euo pipefail\n" + "\n".join(steps) + "\n"
    proc = subprocess.run(
        ["bash", "-x", "-c", script],
        cwd=work,
        env=_env(bin_dir),
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, (
        f"a README command failed (exit {proc.returncode}):\n{proc.stderr[-6000:]}\n{proc.stdout[-2000:]}"
    )
    outputs = [
        w for c in steps for f, w in zip(shlex.split(c), shlex.split(c)[1:]) if f in OUTPUT_FLAGS
    ]
    assert outputs, "no command names an output"
    missing = [o for o in outputs if not (work / o).exists()]
    assert not missing, f"README commands ran but did not write {missing}"


def test_python_example_runs(tmp_path):
    """The README's Python example runs as written (its training budget shortened), from a folder that holds
    the sample data as a clone does, and ends with measured objects."""
    blocks = re.findall(r"^```python\n(.*?)^```", README.read_text(), re.S | re.M)
    assert blocks, "the README has no Python example"
    code = re.sub(r"minutes=(\d+(?:\.\d+)?)", lambda m: f"minutes={float(m.group(1)) / 100:g}", "\n".join(blocks))
    (tmp_path / "sample_data").symlink_to(REPO / "sample_data")
    check = "\nassert len(table) == int(mito.max()), (int(mito.max()), len(table))\n"  # any model quality
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
               OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", code + check], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
