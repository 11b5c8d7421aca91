"""Shared pieces of the command line: the parser, required options, slice ranges, I/O, output."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import InputError


class UsageError(InputError):
    """The command line itself is wrong (unknown flag, missing option, bad value)."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises :class:`UsageError` instead of printing usage and exiting.

    ``main`` turns it into one line on stderr and exit code 2.
    """

    def error(self, message: str):  # noqa: D102 - argparse API
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def add_required(parser: argparse.ArgumentParser, *flags: str, **kwargs) -> None:
    """Add an option that must be given on the command line *or* in the config file.

    argparse's own ``required=True`` would reject a value that comes from ``--config``,
    so :func:`check_required` enforces it after the file is merged.
    """
    kwargs["help"] = (kwargs.get("help") or "") + " (required)"
    action = parser.add_argument(*flags, **kwargs)
    required = parser.get_default("_required") or []
    parser.set_defaults(_required=[*required, (action.dest, flags[0])])


def check_required(args: argparse.Namespace) -> None:
    missing = [flag for dest, flag in getattr(args, "_required", []) if getattr(args, dest) is None]
    if missing:
        raise UsageError(
            f"missing {', '.join(missing)} (give it on the command line or in --config; "
            f"see `{args._prog} --help`)"
        )


def add_common(parser: argparse.ArgumentParser) -> None:
    """Options every subcommand has."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="YAML or TOML file of options (names as the long flags); flags given here override it",
    )
    parser.add_argument(
        "--no-progress",
        action="store_true",
        default=None,
        help="never show a progress bar (by default one is shown when stderr is a terminal)",
    )


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        default="auto",
        help="auto (CUDA, then Apple MPS, then CPU), cpu, cuda, cuda:N or mps (default: auto)",
    )


def options_of(args: argparse.Namespace) -> dict[str, Any]:
    """The run's options as a plain dict (internal keys and --config left out)."""
    skip = {"config", "no_progress"}
    return {k: v for k, v in vars(args).items() if not k.startswith("_") and k not in skip}


def option_dests(parser: argparse.ArgumentParser) -> set[str]:
    return {a.dest for a in parser._actions if a.dest not in ("help", "config")}


def parse_range(text: str | None, n: int, what: str = "--slices") -> range | None:
    """Parse ``A:B`` (Python-style, end exclusive; ``A`` alone means one slice) against ``n`` slices."""
    if text is None:
        return None
    s = str(text).strip()
    try:
        if ":" in s:
            a, b = s.split(":", 1)
            start = int(a) if a.strip() else 0
            stop = int(b) if b.strip() else n
        else:
            start = int(s)
            stop = start + 1
    except ValueError:
        raise InputError(f"{what} {text!r} is not a range; write A:B, e.g. 20:30 (end excluded).") from None
    if start < 0:
        start += n
    if stop < 0:
        stop += n
    if not 0 <= start < stop <= n:
        raise InputError(
            f"{what} {text!r} does not fit the stack of {n} slice(s); give A:B with 0 <= A < B <= {n}."
        )
    return range(start, stop)


def existing(path: str | None, what: str) -> Path:
    """A path that must exist, or a clear error."""
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"{what} {p} does not exist; check the path.")
    return p


def read_array(path: str, what: str, *, key: str | None = None, lazy: bool | None = None):
    """Read an image/mask through :func:`napari_segnets.io.read` (any format it takes)."""
    from ..io import read

    p = existing(path, what)
    array, meta = read(p, key=key, lazy=lazy)
    for note in meta.get("notes") or []:
        warn(f"{p.name}: {note}")
    return array, meta


def load_checkpoint(path: str, device: str = "cpu"):
    from .. import checkpoints

    p = existing(path, "Checkpoint")
    return checkpoints.load(p, device=device)


def run_job(job, args: argparse.Namespace, *, callback=None):
    """Drive a core generator, with a tqdm bar on a terminal unless ``--no-progress``."""
    from ..progress import drive

    bar = False if getattr(args, "no_progress", None) else None
    return drive(job, callback=callback, bar=bar)


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def info(message: str) -> None:
    print(message, file=sys.stderr)


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=False, default=_json_default))


def _json_default(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def print_table(rows: list[dict[str, Any]], columns: list[str], *, floats: str = ".4f") -> None:
    """A plain aligned text table on stdout."""

    def cell(v):
        if isinstance(v, float):
            return format(v, floats)
        return "" if v is None else str(v)

    cells = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


def command(sub, name: str, run, *, help: str, description: str | None = None, prog_name=None):
    """Add a subcommand parser wired to ``run(args) -> int`` with the common options."""
    p = sub.add_parser(name, help=help, description=description or help)
    full = prog_name or name
    p.set_defaults(_run=run, _parser=p, _name=full, _prog=f"napari-segnets {full}", _required=[])
    add_common(p)
    return p
