"""Join simulated and measured records and report the error of every row, openly.

The join key is (suite, case, metric). Rows on one side only are listed, never dropped: a
missing measurement is information too.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from dataclasses import dataclass
from typing import Iterable, Literal

from rich.table import Table

from hwsim.errors import RecordsError
from hwsim.records import Record

Format = Literal["table", "markdown", "csv", "json"]
FORMATS: tuple[str, ...] = ("table", "markdown", "csv", "json")


@dataclass(frozen=True)
class Row:
    suite: str
    case: str
    metric: str
    unit: str
    simulated: float | None
    measured: float | None

    @property
    def rel_error(self) -> float | None:
        """(simulated - measured) / measured; None where a side is missing or measured is zero."""
        if self.simulated is None or self.measured is None or self.measured == 0:
            return None
        return (self.simulated - self.measured) / self.measured


@dataclass(frozen=True)
class Comparison:
    rows: tuple[Row, ...]

    @property
    def joined(self) -> tuple[Row, ...]:
        return tuple(r for r in self.rows if r.rel_error is not None)

    @property
    def only_simulated(self) -> tuple[Row, ...]:
        return tuple(r for r in self.rows if r.measured is None)

    @property
    def only_measured(self) -> tuple[Row, ...]:
        return tuple(r for r in self.rows if r.simulated is None)

    @property
    def median_abs_rel_error(self) -> float | None:
        errors = [abs(r.rel_error) for r in self.joined if r.rel_error is not None]
        return statistics.median(errors) if errors else None

    @property
    def worst(self) -> Row | None:
        return max(self.joined, key=lambda r: abs(r.rel_error or 0.0), default=None)


def compare(records: Iterable[Record]) -> Comparison:
    """Pair each simulated record with the measured record of the same key."""
    sides: dict[str, dict[tuple[str, str, str], Record]] = {"simulated": {}, "measured": {}}
    for record in records:
        side = sides[record.source]
        earlier = side.get(record.key)
        if earlier is not None and earlier.value != record.value:
            raise RecordsError(
                f"two {record.source} values for suite={record.suite} case={record.case_key} "
                f"metric={record.metric}: {earlier.value!r} and {record.value!r}; compare one run at a time"
            )
        side[record.key] = record
    rows = []
    for key in sorted(set(sides["simulated"]) | set(sides["measured"])):
        sim, meas = sides["simulated"].get(key), sides["measured"].get(key)
        if sim is not None and meas is not None and sim.unit != meas.unit:
            raise RecordsError(f"unit mismatch for {key}: simulated in {sim.unit!r}, measured in {meas.unit!r}")
        unit = (sim or meas).unit  # type: ignore[union-attr]
        rows.append(Row(key[0], key[1], key[2], unit, sim.value if sim else None, meas.value if meas else None))
    return Comparison(tuple(rows))


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:+.1f}%"


def summary_lines(c: Comparison) -> list[str]:
    lines = [f"joined rows: {len(c.joined)}; simulated only: {len(c.only_simulated)}; measured only: {len(c.only_measured)}"]
    if c.worst is not None:
        w = c.worst
        lines.append(f"median |rel error|: {c.median_abs_rel_error * 100:.1f}%; "  # type: ignore[operator]
                     f"worst: {abs(w.rel_error) * 100:.1f}% ({w.suite} {w.case} {w.metric})")  # type: ignore[arg-type]
    return lines


def _cells(r: Row) -> list[str]:
    return [r.suite, r.case, r.metric, r.unit, _number(r.simulated), _number(r.measured), _percent(r.rel_error)]


HEADERS = ["suite", "case", "metric", "unit", "simulated", "measured", "error"]


def render(c: Comparison, fmt: Format) -> str | Table:
    if fmt == "table":
        table = Table(title="simulated vs measured", caption="\n".join(summary_lines(c)))
        for h in HEADERS:
            table.add_column(h, justify="right" if h in ("simulated", "measured", "error") else "left")
        for r in c.rows:
            table.add_row(*_cells(r))
        return table
    if fmt == "markdown":
        lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
        lines += ["| " + " | ".join(_cells(r)) + " |" for r in c.rows]
        return "\n".join(lines + [""] + summary_lines(c)) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(HEADERS[:-1] + ["rel_error"])
        for r in c.rows:
            writer.writerow([r.suite, r.case, r.metric, r.unit, r.simulated, r.measured, r.rel_error])
        return buffer.getvalue()
    if fmt == "json":
        worst = c.worst
        return json.dumps({
            "rows": [{"suite": r.suite, "case": r.case, "metric": r.metric, "unit": r.unit, "simulated": r.simulated,
                      "measured": r.measured, "rel_error": r.rel_error} for r in c.rows],
            "summary": {"joined": len(c.joined), "only_simulated": len(c.only_simulated),
                        "only_measured": len(c.only_measured), "median_abs_rel_error": c.median_abs_rel_error,
                        "worst_abs_rel_error": abs(worst.rel_error) if worst and worst.rel_error is not None else None},
        }, indent=1) + "\n"
    raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
