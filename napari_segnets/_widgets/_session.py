"""The checkpoints known to this napari session (trained here or opened from files).

Widgets share one registry so that a model trained in the Train widget appears
at once in the Segment, Wavelets and Train (fine-tune parent) choosers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from psygnal import Signal

__all__ = ["REGISTRY", "CheckpointRegistry", "SessionCheckpoint"]


@dataclass
class SessionCheckpoint:
    """A checkpoint file and what we know about it without loading weights."""

    name: str
    path: Path
    task: str | None = None
    arch: str | None = None
    parent: str | None = None
    trained_here: bool = False
    metadata: dict = field(default_factory=dict, repr=False)


class CheckpointRegistry:
    """Name -> checkpoint, in the order they were added; emits ``changed``."""

    changed = Signal()

    def __init__(self) -> None:
        self._items: dict[str, SessionCheckpoint] = {}

    def add(self, path, *, task=None, arch=None, parent=None, trained_here=False, metadata=None,
            name=None) -> SessionCheckpoint:
        """Register ``path`` (again) and return its entry; names are unique per path."""
        path = Path(path)
        for item in self._items.values():
            if item.path == path:
                item.task = task or item.task
                item.arch = arch or item.arch
                item.parent = parent or item.parent
                item.trained_here = item.trained_here or trained_here
                item.metadata = metadata or item.metadata
                self.changed.emit()
                return item
        base = name or path.stem
        unique, n = base, 2
        while unique in self._items:
            unique, n = f"{base} ({n})", n + 1
        item = SessionCheckpoint(unique, path, task, arch, parent, trained_here, metadata or {})
        self._items[unique] = item
        self.changed.emit()
        return item

    def get(self, name: str) -> SessionCheckpoint | None:
        """The entry called ``name``, or None."""
        return self._items.get(name)

    def names(self, task: str | None = None) -> list[str]:
        """Registered names, optionally only those for ``task`` (unknown task matches)."""
        return [n for n, it in self._items.items() if task is None or it.task in (None, task)]

    def clear(self) -> None:
        """Forget every entry (tests; files are never touched)."""
        self._items.clear()
        self.changed.emit()

    def __len__(self) -> int:
        return len(self._items)


REGISTRY = CheckpointRegistry()
