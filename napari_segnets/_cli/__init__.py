"""The ``napari-segnets`` command.

``napari-segnets`` with no arguments opens napari with the sample stack and the
plugin's widgets. Subcommands run the same core headless::

    napari-segnets train --images IMG --masks MASK --arch unet --out model.safetensors
    napari-segnets predict --checkpoint model.safetensors --input stack.tif --out pred.zarr
    napari-segnets evaluate --prediction pred.zarr --truth mask.tif --json

The CLI holds no business logic: it parses, calls core functions (driving their
generators with :func:`napari_segnets.progress.drive`), prints, and maps errors
meant for people to one line on stderr and an exit code: 2 for bad input or
usage, 1 for failures, 130 when interrupted.

Run it as ``napari-segnets ...`` or ``python -m napari_segnets ...`` (the form
``torchrun`` takes). Each subcommand lives in its own module here and registers
itself in :func:`build_parser`; shared pieces are in :mod:`.common`.
"""

from __future__ import annotations

import sys

from .. import __version__
from ..errors import CheckpointError, InputError, SegnetsError
from . import analysis, common, objects, predict, review, store, train

PROG = "napari-segnets"
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def build_parser() -> common.Parser:
    """The full argument parser (subcommands register themselves)."""
    parser = common.Parser(
        prog=PROG,
        description="Segment and autoencode EM stacks with U-Net, atrous and FCN models. "
        "With no arguments: open napari with the sample stack and the plugin's widgets.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="_command", metavar="COMMAND", parser_class=common.Parser)
    for module in (train, predict, analysis, store, objects, review):
        module.register(sub)
    return parser


def parse(argv: list[str]):
    """Parse ``argv``; merge ``--config FILE`` under the flags; check required options."""
    from ..config import check_keys, load_config

    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        raise common.UsageError(f"choose a command (see `{PROG} --help`)")
    if args.config:
        leaf = args._parser
        config = load_config(args.config, command=args._name)
        check_keys(config, common.option_dests(leaf), f"config file {args.config}")
        leaf.set_defaults(**config)
        args = parser.parse_args(argv)  # flags given on the command line win over the file
    common.check_required(args)
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:
        return open_viewer()
    name = next((a for a in argv if not a.startswith("-")), "")
    prefix = f"{PROG} {name}".strip()
    try:
        args = parse(argv)
        prefix = args._prog
        return int(args._run(args) or EXIT_OK)
    except SystemExit as exc:  # --help and --version exit through argparse
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    except (InputError, CheckpointError) as exc:
        _error(prefix, exc)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(
            f"{prefix}: interrupted; what was saved is kept (the last good checkpoint; `predict` "
            "resumes when run again).",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except SegnetsError as exc:  # StoreError and other failures meant for people
        _error(prefix, exc)
        return EXIT_FAILURE


def _error(prefix: str, exc: BaseException) -> None:
    message = " ".join(str(exc).split()) or type(exc).__name__
    print(f"{prefix}: error: {message}", file=sys.stderr)


def open_viewer() -> int:
    """Open napari with the sample stack and the widgets docked (the no-argument path)."""
    # The one place the core reaches into the GUI wing, lazily: subcommands never load Qt.
    # tests/test_architecture.py allows exactly this import and no other.
    from .._widgets._launch import run_viewer

    run_viewer()
    return EXIT_OK
