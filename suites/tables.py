"""Tables as data: what a suite returns for people to read, beside the records it returns for tools.

A suite builds :class:`Table` objects and never prints; the CLI (:mod:`hwsim.suites.render`) lays
them out as rich, markdown, CSV or JSON. The builder methods mirror rich's (``add_column``,
``add_row``) so a suite reads the same as before, but nothing here depends on a terminal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

Cell = str | int | float | None
Justify = Literal["left", "right", "center"]


@dataclass(frozen=True)
class Column:
    """One column: a header, an optional unit shown with it, alignment and a number format."""

    name: str
    unit: str = ""
    justify: Justify = "left"
    number_format: str = ".4g"

    @property
    def header(self) -> str:
        return f"{self.name} ({self.unit})" if self.unit else self.name


@dataclass
class Table:
    """A titled grid of cells (text or numbers) with an optional caption."""

    title: str = ""
    caption: str = ""
    columns: list[Column] = field(default_factory=list)
    rows: list[tuple[Cell, ...]] = field(default_factory=list)

    def add_column(self, name: str, unit: str = "", *, justify: Justify | None = None,
                   number_format: str = ".4g", **_ignored: Any) -> None:
        """Add a column; numbers default to right alignment once rows show them (see :meth:`justify_of`)."""
        self.columns.append(Column(name, unit, justify or "left", number_format))
        self._explicit = getattr(self, "_explicit", set()) | ({len(self.columns) - 1} if justify else set())

    def add_row(self, *cells: Cell) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"table {self.title!r}: row has {len(cells)} cells for {len(self.columns)} columns")
        self.rows.append(tuple(cells))

    def justify_of(self, index: int) -> Justify:
        """A column's alignment: as given, else right when every filled cell is a number."""
        if index in getattr(self, "_explicit", set()):
            return self.columns[index].justify
        cells = [row[index] for row in self.rows if row[index] not in (None, "")]
        numeric = bool(cells) and all(isinstance(c, (int, float)) or _looks_numeric(str(c)) for c in cells)
        return "right" if numeric else "left"

    def text(self, row: tuple[Cell, ...], index: int) -> str:
        """The cell as shown: numbers through the column's format, None as an em dash."""
        return format_cell(row[index], self.columns[index].number_format)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: numbers stay numbers, so a script need not parse the text."""
        return {"title": self.title, "caption": self.caption,
                "columns": [{"name": c.name, "unit": c.unit} for c in self.columns],
                "rows": [[_json_cell(c) for c in row] for row in self.rows]}


def format_cell(value: Cell, number_format: str = ".4g") -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "—" if not math.isfinite(value) else format(value, number_format)
    return value


def _json_cell(value: Cell) -> Cell:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _looks_numeric(text: str) -> bool:
    """Text such as '+31%', '1.2x', '4.0e+06', '—' counts as a number for alignment."""
    core = text.strip().rstrip("x%×").lstrip("+-−≈~")
    if core in ("—", ""):
        return True
    try:
        float(core)
    except ValueError:
        return False
    return True
