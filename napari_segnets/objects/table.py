"""The per-object table: one row per object, keyed by the object's id (its label value).

Columns are numpy arrays of equal length, units in their names (``volume_nm3``).
Later analyses add columns (e.g. per-object error signals) with :meth:`ObjectTable.set`;
edits replace or drop rows by id without touching the others.
"""

from __future__ import annotations

import csv
import io as _io
import json
import math

import numpy as np

from ..errors import InputError


class ObjectTable:
    """Per-object measurements.

    Parameters
    ----------
    columns : dict of str -> array
        Equal-length columns; ``"id"`` (the label value) is required and unique.
    voxel_size : tuple of float or None
        nm per voxel, z-y-x, of the labels measured.
    shape : tuple of int or None
        The shape of the labels measured (for the summary's volume).
    """

    def __init__(self, columns: dict, *, voxel_size=None, shape=None):
        if "id" not in columns:
            raise InputError("An object table needs an 'id' column.")
        n = len(columns["id"])
        cols = {}
        for name, values in columns.items():
            arr = np.asarray(values)
            if arr.shape != (n,):
                raise InputError(f"Column {name!r} has {arr.shape} values, the table {n} rows.")
            cols[str(name)] = arr
        cols["id"] = cols["id"].astype(np.int64)
        if len(np.unique(cols["id"])) != n:
            raise InputError("Object ids in a table must be unique.")
        self.columns = cols
        self.voxel_size = None if voxel_size is None else tuple(float(v) for v in voxel_size)
        self.shape = None if shape is None else tuple(int(s) for s in shape)

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self.columns["id"])

    @property
    def ids(self) -> np.ndarray:
        return self.columns["id"]

    @property
    def names(self) -> list[str]:
        return list(self.columns)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def index_of(self, object_id: int) -> int | None:
        """Row number of an object (None when it is not in the table)."""
        hit = np.flatnonzero(self.ids == int(object_id))
        return int(hit[0]) if hit.size else None

    def row(self, object_id: int) -> dict:
        i = self.index_of(object_id)
        if i is None:
            raise InputError(f"Object {object_id} is not in the table.")
        return {k: v[i].item() for k, v in self.columns.items()}

    def rows(self) -> list[dict]:
        return [{k: v[i].item() for k, v in self.columns.items()} for i in range(len(self))]

    # ----------------------------------------------------------------- editing
    def set(self, name: str, values) -> None:
        """Add or replace a column (one value per row, in row order)."""
        arr = np.asarray(values)
        if arr.shape != (len(self),):
            raise InputError(f"Column {name!r} needs {len(self)} values, got {arr.shape}.")
        self.columns[str(name)] = arr

    def drop(self, ids) -> None:
        """Remove the rows of ``ids`` (ids not in the table are ignored)."""
        keep = ~np.isin(self.ids, np.asarray(list(ids), np.int64))
        self.columns = {k: v[keep] for k, v in self.columns.items()}

    def update(self, other: ObjectTable, remove=()) -> None:
        """Drop ``remove`` and the ids of ``other``, then add ``other``'s rows, keeping id order.

        Columns only one side has are filled with NaN (numbers) or empty values.
        """
        self.drop(list(remove) + other.ids.tolist())
        names = list(self.columns) + [c for c in other.columns if c not in self.columns]
        merged = {}
        for name in names:
            a = self.columns.get(name)
            b = other.columns.get(name)
            ref = a if a is not None else b
            a = a if a is not None else _blank(ref, len(self))
            b = b if b is not None else _blank(ref, len(other))
            merged[name] = np.concatenate([a, b]) if a.dtype.kind == b.dtype.kind else np.concatenate(
                [a.astype(float), b.astype(float)])
        order = np.argsort(merged["id"], kind="stable")
        self.columns = {k: v[order] for k, v in merged.items()}

    def copy(self) -> ObjectTable:
        return ObjectTable({k: v.copy() for k, v in self.columns.items()}, voxel_size=self.voxel_size,
                           shape=self.shape)

    # ------------------------------------------------------------------ output
    def to_csv_text(self) -> str:
        buf = _io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(self.names)
        for i in range(len(self)):
            writer.writerow([_cell(self.columns[c][i]) for c in self.names])
        return buf.getvalue()

    def to_csv(self, path) -> str:
        """Write the table as CSV (atomic); returns the path."""
        from ..io import atomic_write_text

        atomic_write_text(path, self.to_csv_text())
        return str(path)

    def summary(self) -> dict:
        """Count, density, volume fraction and the mean and quartiles of each measure."""
        return summarize(self)


def _blank(ref: np.ndarray, n: int) -> np.ndarray:
    if ref.dtype.kind in "fc":
        return np.full(n, np.nan, ref.dtype)
    if ref.dtype.kind in "iub":
        return np.full(n, np.nan)
    return np.full(n, "", dtype=object)


def _cell(value):
    if isinstance(value, float | np.floating):
        return "" if math.isnan(value) else f"{float(value):.6g}"
    if isinstance(value, np.bool_ | bool):
        return int(value)
    return value.item() if isinstance(value, np.generic) else value


STATS_3D = ("volume_nm3", "surface_nm2", "equivalent_diameter_nm", "sphericity", "extent_z_nm",
            "intensity_mean")
STATS_2D = ("area_nm2", "perimeter_nm", "equivalent_diameter_nm", "circularity", "intensity_mean")


def summarize(table: ObjectTable) -> dict:
    """The summary of a table: see :meth:`ObjectTable.summary`."""
    three_d = "volume_nm3" in table.columns
    size_col = "volume_nm3" if three_d else "area_nm2"
    unit = "um3" if three_d else "um2"
    out: dict = {"count": len(table)}
    if table.voxel_size is not None and table.shape is not None:
        whole_nm = float(np.prod(table.shape)) * float(np.prod(table.voxel_size))
        scale = 1e9 if three_d else 1e6  # nm^3 per um^3, nm^2 per um^2
        out[f"{'volume' if three_d else 'area'}_{unit}"] = whole_nm / scale
        out[f"density_per_{unit}"] = len(table) / (whole_nm / scale) if whole_nm else float("nan")
        total = float(np.nansum(table[size_col])) if len(table) else 0.0
        out[f"{'volume' if three_d else 'area'}_fraction"] = total / whole_nm if whole_nm else float("nan")
    for name in STATS_3D if three_d else STATS_2D:
        if name not in table.columns:
            continue
        values = np.asarray(table[name], float)
        values = values[np.isfinite(values)]
        if values.size:
            q25, q50, q75 = np.percentile(values, [25, 50, 75])
            out[name] = {"mean": float(values.mean()), "q25": float(q25), "median": float(q50),
                         "q75": float(q75)}
        else:
            out[name] = {"mean": None, "q25": None, "median": None, "q75": None}
    return out


def summary_json(summary: dict) -> str:
    return json.dumps(summary, indent=2)
