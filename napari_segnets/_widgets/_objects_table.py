"""A sortable Qt table of per-object measurements that updates row by row."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QAbstractItemView, QTableWidget, QTableWidgetItem

# Shown in the table (when the table has them), in this order; the CSV export has every column.
SHOWN = ("id", "rank", "score", "volume_nm3", "volume_vox3", "area_nm2", "surface_nm2", "perimeter_nm", "equivalent_diameter_nm",
         "sphericity", "circularity", "extent_z_nm", "intensity_mean", "touches_border")


class _Number(QTableWidgetItem):
    """A cell that sorts by its number, not its text."""

    def __init__(self, value) -> None:
        number = float(value)
        text = "" if np.isnan(number) else (f"{int(number)}" if float(number).is_integer() and abs(number) < 1e6
                                           else f"{number:.4g}")
        super().__init__(text)
        self.number = number
        self.setFlags(self.flags() & ~Qt.ItemFlag.ItemIsEditable)

    def __lt__(self, other) -> bool:
        return self.number < getattr(other, "number", float("inf"))


class ObjectsTable(QTableWidget):
    """Rows keyed by object id. ``show_table`` fills it, ``sync`` replaces or removes some rows."""

    def __init__(self) -> None:
        super().__init__(0, 0)
        self.setSortingEnabled(True)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.verticalHeader().setVisible(False)
        self.setMinimumHeight(150)
        self.columns: list[str] = []

    def show_table(self, table) -> None:
        self.setSortingEnabled(False)
        self.clearContents()
        self.columns = [c for c in SHOWN if c in table.columns]
        self.setColumnCount(len(self.columns))
        self.setHorizontalHeaderLabels([_header(c) for c in self.columns])
        self.setRowCount(len(table))
        for i in range(len(table)):
            self._fill(i, table, i)
        self.setSortingEnabled(True)
        self.resizeColumnsToContents()

    def _fill(self, row: int, table, i: int) -> None:
        for col, name in enumerate(self.columns):
            value = table[name][i] if name in table.columns else np.nan
            self.setItem(row, col, _Number(value))

    def row_of(self, object_id: int) -> int | None:
        for row in range(self.rowCount()):
            item = self.item(row, 0)
            if item is not None and int(item.number) == int(object_id):
                return row
        return None

    def id_at(self, row: int) -> int | None:
        item = self.item(row, 0)
        return None if item is None else int(item.number)

    def selected_ids(self) -> list[int]:
        rows = sorted({index.row() for index in self.selectedIndexes()})
        return [i for i in (self.id_at(r) for r in rows) if i is not None]

    def ids(self) -> list[int]:
        return [i for i in (self.id_at(r) for r in range(self.rowCount())) if i is not None]

    def sync(self, table, changed, removed) -> None:
        """Replace the rows of ``changed`` ids from ``table`` and remove ``removed`` ones."""
        self.setSortingEnabled(False)
        for object_id in removed:
            row = self.row_of(object_id)
            if row is not None:
                self.removeRow(row)
        for object_id in changed:
            i = table.index_of(object_id)
            if i is None:
                continue
            row = self.row_of(object_id)
            if row is None:
                row = self.rowCount()
                self.insertRow(row)
            self._fill(row, table, i)
        self.setSortingEnabled(True)

    def select_id(self, object_id: int) -> None:
        row = self.row_of(object_id)
        if row is None:
            self.clearSelection()
            return
        self.selectRow(row)
        self.scrollToItem(self.item(row, 0))


def _header(name: str) -> str:
    for unit in ("_nm3", "_nm2", "_nm"):
        if name.endswith(unit):
            return f"{name[: -len(unit)]} ({unit[1:].replace('3', '³').replace('2', '²')})"
    return name
