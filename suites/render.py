"""The CLI's presentation of tables: rich (fitted to the terminal), markdown, CSV or JSON.

Fitting rule for rich: a word is never split. A column is at least as wide as its longest word
(a number is one word), headers and text wrap between words, and a table too wide for the terminal
is cut into column groups that each repeat the first (key) column.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Iterable, Literal, Sequence

from rich import box
from rich.console import Console
from rich.table import Table as RichTable

from hwsim.suites.tables import Table

Format = Literal["table", "markdown", "csv", "json"]
FORMATS: tuple[str, ...] = ("table", "markdown", "csv", "json")
_COLUMN_OVERHEAD = 3  # rich's padding (1 + 1) and one border per column
_TABLE_OVERHEAD = 1   # the closing border


def _longest_word(text: str) -> int:
    return max((len(w) for w in text.split()), default=0)


def _column_widths(table: Table) -> tuple[list[int], list[int]]:
    """(narrowest width that splits no word, width that wraps nothing) of each column."""
    narrow, wide = [], []
    for i, column in enumerate(table.columns):
        cells = [table.text(row, i) for row in table.rows]
        narrow.append(max([_longest_word(column.header), 1] + [_longest_word(c) for c in cells]))
        wide.append(max([len(column.header), 1] + [len(line) for c in cells for line in c.splitlines() or [""]]))
    return narrow, wide


def column_groups(table: Table, width: int) -> list[list[int]]:
    """Column indices per printed block: all in one when they fit, else groups that repeat column 0."""
    narrow, _ = _column_widths(table)
    n = len(table.columns)
    if n == 0 or sum(narrow) + _COLUMN_OVERHEAD * n + _TABLE_OVERHEAD <= width:
        return [list(range(n))]
    groups: list[list[int]] = []
    current = [0]
    used = narrow[0] + _COLUMN_OVERHEAD + _TABLE_OVERHEAD
    for i in range(1, n):
        cost = narrow[i] + _COLUMN_OVERHEAD
        if len(current) > 1 and used + cost > width:
            groups.append(current)
            current, used = [0], narrow[0] + _COLUMN_OVERHEAD + _TABLE_OVERHEAD
        current.append(i)
        used += cost
    groups.append(current)
    return groups


def to_rich(table: Table, width: int) -> list[RichTable]:
    """One or more rich tables that together show every cell, none wider than ``width``."""
    narrow, _ = _column_widths(table)
    groups = column_groups(table, width)
    out = []
    for g, indices in enumerate(groups):
        suffix = f" ({g + 1}/{len(groups)})" if len(groups) > 1 else ""
        rich = RichTable(title=(table.title + suffix) if table.title else None, box=box.SQUARE,
                         caption=table.caption or None if g == len(groups) - 1 else None)
        for i in indices:
            col = table.columns[i]
            rich.add_column(col.header, justify=table.justify_of(i), min_width=narrow[i], overflow="fold")
        for row in table.rows:
            rich.add_row(*(table.text(row, i) for i in indices))
        out.append(rich)
    return out


def print_tables(tables: Iterable[Table], console: Console) -> None:
    for table in tables:
        for rich in to_rich(table, console.width):
            console.print(rich)


def to_markdown(table: Table) -> str:
    def esc(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", "<br>")

    lines = [f"**{esc(table.title)}**", ""] if table.title else []
    lines.append("| " + " | ".join(esc(c.header) for c in table.columns) + " |")
    lines.append("|" + "".join("---:|" if table.justify_of(i) == "right" else "---|" for i in range(len(table.columns))))
    lines += ["| " + " | ".join(esc(table.text(row, i)) for i in range(len(table.columns))) + " |" for row in table.rows]
    if table.caption:
        lines += [""] + table.caption.splitlines()
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([c.header for c in table.columns])
    for row in table.rows:
        writer.writerow(["" if c is None else c for c in row])
    return buffer.getvalue()


def render_document(tables: Sequence[Table], fmt: Format, notes: Sequence[str] = (),
                    extra: dict[str, Any] | None = None) -> str:
    """Every table (and note) of one command as text in a non-terminal format."""
    if fmt == "json":
        return json.dumps({**(extra or {}), "tables": [t.to_dict() for t in tables], "notes": list(notes)},
                          indent=1, allow_nan=False) + "\n"
    if fmt == "markdown":
        parts = [to_markdown(t) for t in tables] + ([("\n".join(f"- {n}" for n in notes) + "\n")] if notes else [])
        return "\n".join(parts)
    if fmt == "csv":
        return "\n".join((f"# {t.title}\n" if t.title else "") + to_csv(t) for t in tables)
    raise ValueError(f"format {fmt!r} is not a document format")
