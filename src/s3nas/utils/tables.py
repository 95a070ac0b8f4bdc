"""CSV and Markdown tables: the one writer behind every table a command leaves in its run dir.

``csv_text``/``write_csv`` go through ``csv.DictWriter`` (a missing value or None is an empty cell) and
``write_csv`` writes atomically (``s3nas.utils.io``). ``markdown_table`` renders the pipe table of a list of
dicts: a header row, a ``|---|`` separator and one line per row, each cell formatted by its column's format
spec (None gives ``none``) or by a function of the whole row (for cells built from several fields).
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from s3nas.utils.io import atomic_write_text

#: a column's cell: a format spec for the row's value (``".3f"``) or a function of the whole row
CellFormat = Union[str, Callable[[Mapping[str, Any]], str]]


def csv_text(rows: Sequence[Mapping[str, Any]], columns: Optional[Sequence[str]] = None, *,
             extras: str = "raise") -> str:
    """CSV of ``rows`` under a header of ``columns`` (default: the first row's keys); keys of a row outside
    ``columns`` raise ValueError, or are left out with ``extras="ignore"``."""
    columns = list(columns) if columns is not None else list(rows[0]) if rows else []
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction=extras)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_csv(path: str | os.PathLike[str], rows: Sequence[Mapping[str, Any]],
              columns: Optional[Sequence[str]] = None, *, extras: str = "raise") -> Path:
    """Write ``csv_text(rows, columns)`` to ``path`` atomically; returns the path."""
    return atomic_write_text(path, csv_text(rows, columns, extras=extras))


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str],
                   formats: Optional[Mapping[str, CellFormat]] = None, *, headers: Optional[Sequence[str]] = None,
                   none: str = "", default: Callable[[Any], str] = str) -> str:
    """Markdown pipe table of ``rows`` (one line each, newline-terminated) over ``columns``.

    ``headers``: the header cells (default: the column names). ``formats``: per column, a format spec applied
    to the row's value (None becomes ``none``) or a function of the row; other columns go through ``default``.
    """
    formats = formats or {}
    headers = list(headers) if headers is not None else list(columns)
    if len(headers) != len(columns):
        raise ValueError(f"markdown_table: {len(headers)} headers for {len(columns)} columns")

    def cell(row: Mapping[str, Any], column: str) -> str:
        spec = formats.get(column)
        if callable(spec):
            return spec(row)
        value = row[column]
        if spec is None:
            return default(value)
        return none if value is None else format(value, spec)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row, c) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"
