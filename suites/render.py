"""The CLI's presentation of tables: rich (fitted to the terminal), markdown, CSV or JSON.

Fitting rule for rich: a number is never split. A column is at least as wide as its longest number
and, up to half the terminal, its longest word; headers and text wrap between words (a word longer
than that, such as a file path, folds); a table too wide for the terminal is cut into column groups
that each repeat the first (key) column.
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


def _word_cap(width: int) -> int:
    """The widest a column grows to keep a long text word whole: two such columns fit side by side."""
    return max(8, (width - 2 * _COLUMN_OVERHEAD - _TABLE_OVERHEAD) // 2)


def _column_widths(table: Table, width: int | None = None) -> tuple[list[int], list[int]]:
    """(narrowest width that splits no number and no word up to the cap, width that wraps nothing) per column."""
    cap = _word_cap(width) if width is not None else None
    narrow, wide = [], []
    for i, column in enumerate(table.columns):
        cells = [table.text(row, i) for row in table.rows]
        numbers = [len(table.text(row, i)) for row in table.rows if isinstance(row[i], (int, float))]
        words = max([_longest_word(column.header), 1] + [_longest_word(c) for c in cells])
        narrow.append(max([min(words, cap) if cap is not None else words] + numbers))
        wide.append(max([len(column.header), 1] + [len(line) for c in cells for line in c.splitlines() or [""]]))
    return narrow, wide


def column_groups(table: Table, width: int) -> list[list[int]]:
    """Column indices per printed block: all in one when they fit, else groups that repeat column 0."""
    narrow, _ = _column_widths(table, width)
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


def _allot(narrow: list[int], wide: list[int], budget: int) -> list[int]:
    """Widths between narrow and wide summing to at most ``budget``: spare room goes where text would wrap most."""
    widths = list(narrow)
    spare = budget - sum(widths)
    while spare > 0:
        wanting = [i for i, w in enumerate(widths) if w < wide[i]]
        if not wanting:
            break
        share = max(1, spare // len(wanting))
        for i in sorted(wanting, key=lambda i: widths[i] - wide[i]):
            grow = min(share, wide[i] - widths[i], spare)
            widths[i] += grow
            spare -= grow
            if spare == 0:
                break
    return widths


def to_rich(table: Table, width: int) -> list[RichTable]:
    """One or more rich tables that together show every cell, none wider than ``width``.

    Column widths are set here (not left to rich), so a column never narrows below its longest number.
    """
    narrow, wide = _column_widths(table, width)
    groups = column_groups(table, width)
    out = []
    for g, indices in enumerate(groups):
        budget = width - _COLUMN_OVERHEAD * len(indices) - _TABLE_OVERHEAD
        widths = dict(zip(indices, _allot([narrow[i] for i in indices], [wide[i] for i in indices], budget),
                          strict=True))
        suffix = f" ({g + 1}/{len(groups)})" if len(groups) > 1 else ""
        rich = RichTable(title=(table.title + suffix) if table.title else None, box=box.SQUARE,
                         caption=table.caption or None if g == len(groups) - 1 else None)
        for i in indices:
            col = table.columns[i]
            rich.add_column(col.header, justify=table.justify_of(i), width=widths[i], overflow="fold")
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
    columns = range(len(table.columns))
    lines.append("|" + "".join("---:|" if table.justify_of(i) == "right" else "---|" for i in columns))
    lines += ["| " + " | ".join(esc(table.text(row, i)) for i in columns) + " |" for row in table.rows]
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
