"""Run configuration files (YAML or TOML) so a command line run can be repeated exactly.

A config file is a flat mapping of option names (``images``, ``val_slices``,
``minutes``...; dashes or underscores) to values, optionally nested under a table
named after the subcommand (``[train]`` in TOML, ``train:`` in YAML). Command-line
flags override the file. After a run the CLI writes the *effective* configuration
(every option, defaults included, paths made absolute) beside its output with
:func:`write_effective`, and ``napari-segnets <command> --config THAT_FILE`` repeats it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import InputError

# Keys written by write_effective that are not options.
META_KEYS = ("command", "napari_segnets_version")


def load_config(path: str | os.PathLike, command: str | None = None) -> dict[str, Any]:
    """Read a YAML (``.yaml``/``.yml``) or TOML (``.toml``) config file into a flat dict.

    Parameters
    ----------
    path : path-like
        The file.
    command : str, optional
        The subcommand; a table of that name inside the file is merged over the top level.

    Returns
    -------
    dict
        Option names with underscores (``val-slices`` becomes ``val_slices``).
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"Config file {p} does not exist; check the path given to --config.")
    text = p.read_text(encoding="utf-8")
    suffix = p.suffix.lower()
    try:
        if suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            raise InputError(
                f"Config file {p.name} has an unknown type; use a .yaml, .yml or .toml file."
            )
    except InputError:
        raise
    except Exception as exc:  # yaml.YAMLError, tomllib.TOMLDecodeError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"Config file {p} could not be parsed ({first}); fix its syntax.") from exc
    if not isinstance(data, dict):
        raise InputError(f"Config file {p} must hold a mapping of option names to values.")
    flat = {_key(k): v for k, v in data.items() if not isinstance(v, dict)}
    if command is not None:
        written_for = flat.get("command")
        if written_for is not None and written_for != command:
            raise InputError(
                f"Config file {p} was written for `{written_for}`, not `{command}`; "
                f"run `napari-segnets {written_for} --config {p}`."
            )
        section = data.get(command)
        if isinstance(section, dict):
            flat.update({_key(k): v for k, v in section.items()})
    for key in META_KEYS:
        flat.pop(key, None)
    return flat


def _key(name: Any) -> str:
    return str(name).replace("-", "_")


def check_keys(config: dict[str, Any], allowed: set[str], source: str) -> None:
    """Refuse keys that are not options of the command (typos would be silently ignored)."""
    unknown = sorted(set(config) - set(allowed))
    if unknown:
        raise InputError(
            f"Unknown option(s) {', '.join(unknown)} in {source}; "
            f"valid ones are: {', '.join(sorted(allowed))}."
        )


def effective_path(output: str | os.PathLike) -> Path:
    """Where the effective config of a run writing ``output`` goes: ``<output>.config.yaml``."""
    out = Path(output)
    return out.with_name(out.name + ".config.yaml")


def write_effective(
    output: str | os.PathLike, command: str, options: dict[str, Any], *, path_keys=()
) -> Path:
    """Write the options a run used beside its output (atomically) and return the file's path.

    Parameters
    ----------
    output : path-like
        The run's main output (checkpoint, Zarr store, ...).
    command : str
        The subcommand, recorded so the file cannot be replayed with another one.
    options : dict
        Every option of the run, defaults included.
    path_keys : iterable of str
        Options holding paths: written absolute so the run repeats from any directory.
    """
    import yaml

    from . import __version__
    from .io.atomic import atomic_write_text

    body: dict[str, Any] = {"command": command, "napari_segnets_version": __version__}
    for key, value in sorted(options.items()):
        if key in path_keys and value is not None:
            value = [_abs(v) for v in value] if isinstance(value, list | tuple) else _abs(value)
        body[key] = _plain(value)
    target = effective_path(output)
    atomic_write_text(target, yaml.safe_dump(body, sort_keys=False))
    return target


def _abs(value: Any) -> Any:
    if isinstance(value, str) and "://" in value:  # a URL or scheduler address, not a path
        return value
    return str(Path(value).expanduser().resolve())


def _plain(value: Any) -> Any:
    """JSON/YAML-safe scalars and lists (tuples become lists, paths strings)."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value
