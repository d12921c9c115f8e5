"""Join simulated records with a reference (measured, or paper) and report the error of every row.

The join key is (suite, case, metric). Rows on one side only are listed, never dropped: a
missing measurement is information too. Every verdict uses :func:`hwsim.records.within_tolerance`.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from dataclasses import dataclass
from typing import Iterable, Literal

from hwsim.errors import RecordsError
from hwsim.records import TOLERANCE, Record, relative_error, within_tolerance
from hwsim.suites.tables import Table

Format = Literal["table", "markdown", "csv", "json"]
FORMATS: tuple[str, ...] = ("table", "markdown", "csv", "json")
Reference = Literal["measured", "paper"]
REFERENCES: tuple[str, ...] = ("measured", "paper")


@dataclass(frozen=True)
class Row:
    suite: str
    case: str
    metric: str
    unit: str
    simulated: float | None
    measured: float | None
    """The reference value: measured here, or the paper's figure (see :attr:`Comparison.against`)."""

    @property
    def rel_error(self) -> float | None:
        """(simulated - reference) / |reference|; None where a side is missing or the reference is zero."""
        if self.simulated is None or self.measured is None:
            return None
        return relative_error(self.simulated, self.measured)

    @property
    def family(self) -> str:
        """The operator family of the row: the case's ``family`` field, else its ``op``, else the
        metric's prefix (the part before the first ``_``)."""
        fields = dict(part.split("=", 1) for part in self.case.split(",") if "=" in part)
        return fields.get("family") or fields.get("op") or self.metric.split("_", 1)[0]

    @property
    def within(self) -> bool | None:
        if self.simulated is None or self.measured is None or self.measured == 0:
            return None
        return within_tolerance(self.simulated, self.measured)


@dataclass(frozen=True)
class Comparison:
    rows: tuple[Row, ...]
    against: Reference = "measured"

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


def compare(records: Iterable[Record], against: Reference = "measured") -> Comparison:
    """Pair each simulated record with the reference record (measured or paper) of the same key."""
    sides: dict[str, dict[tuple[str, str, str], Record]] = {"simulated": {}, "measured": {}}
    for record in records:
        if record.source not in ("simulated", against):
            continue
        side = sides["simulated" if record.source == "simulated" else "measured"]
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
    return Comparison(tuple(rows), against)


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:+.1f}%"


def summary_lines(c: Comparison) -> list[str]:
    lines = [f"joined rows: {len(c.joined)}; simulated only: {len(c.only_simulated)}; "
             f"{c.against} only: {len(c.only_measured)}"]
    if c.worst is not None and c.worst.rel_error is not None and c.median_abs_rel_error is not None:
        w, worst_error = c.worst, c.worst.rel_error
        inside = sum(1 for r in c.joined if r.within)
        lines.append(f"median |rel error|: {c.median_abs_rel_error * 100:.1f}%; "
                     f"worst: {abs(worst_error) * 100:.1f}% ({w.suite} {w.case} {w.metric}); "
                     f"within ±{TOLERANCE:.0%}: {inside} of {len(c.joined)}")
    return lines


def _cells(r: Row) -> list[str]:
    verdict = "—" if r.within is None else ("yes" if r.within else "no")
    return [r.suite, r.case, r.metric, r.unit, _number(r.simulated), _number(r.measured), _percent(r.rel_error),
            verdict]


def headers(c: Comparison) -> list[str]:
    return ["suite", "case", "metric", "unit", "simulated", c.against, "error", f"within ±{TOLERANCE:.0%}"]


def to_table(c: Comparison) -> Table:
    """The comparison as a table (data); the CLI lays it out."""
    table = Table(title=f"simulated vs {c.against}", caption="\n".join(summary_lines(c)))
    for h in headers(c):
        table.add_column(h, justify="right" if h in ("simulated", c.against, "error") else "left")
    for r in c.rows:
        table.add_row(*_cells(r))
    return table


@dataclass(frozen=True)
class FamilySummary:
    family: str
    rows: int
    median_abs_rel_error: float
    worst_abs_rel_error: float
    worst_case: str


def family_summary(c: Comparison) -> list[FamilySummary]:
    """Per operator family (see :attr:`Row.family`): joined rows, median and worst |relative error|."""
    groups: dict[str, list[Row]] = {}
    for r in c.joined:
        groups.setdefault(r.family, []).append(r)
    out = []
    for family, rows in sorted(groups.items()):
        errors = [abs(r.rel_error or 0.0) for r in rows]
        worst = max(rows, key=lambda r: abs(r.rel_error or 0.0))
        out.append(FamilySummary(family, len(rows), statistics.median(errors), max(errors),
                                 f"{worst.suite} {worst.case}"))
    return out


def family_table(c: Comparison) -> Table:
    """The per-family summary as a table (data)."""
    table = Table(title=f"per-family error, simulated vs {c.against}")
    table.add_column("family")
    table.add_column("rows", justify="right")
    table.add_column("median |error|", unit="%", justify="right", number_format=".1f")
    table.add_column("worst |error|", unit="%", justify="right", number_format=".1f")
    table.add_column("worst case")
    for f in family_summary(c):
        table.add_row(f.family, f.rows, f.median_abs_rel_error * 100, f.worst_abs_rel_error * 100, f.worst_case)
    return table


def to_json(c: Comparison) -> str:
    worst = c.worst
    return json.dumps({
        "against": c.against,
        "rows": [{"suite": r.suite, "case": r.case, "metric": r.metric, "unit": r.unit, "simulated": r.simulated,
                  c.against: r.measured, "rel_error": r.rel_error, "within_tolerance": r.within} for r in c.rows],
        "summary": {"joined": len(c.joined), "only_simulated": len(c.only_simulated),
                    f"only_{c.against}": len(c.only_measured), "median_abs_rel_error": c.median_abs_rel_error,
                    "worst_abs_rel_error": abs(worst.rel_error) if worst and worst.rel_error is not None else None,
                    "tolerance": TOLERANCE, "within_tolerance": sum(1 for r in c.joined if r.within)},
        "families": [{"family": f.family, "rows": f.rows, "median_abs_rel_error": f.median_abs_rel_error,
                      "worst_abs_rel_error": f.worst_abs_rel_error, "worst_case": f.worst_case}
                     for f in family_summary(c)],
    }, indent=1) + "\n"


def to_csv(c: Comparison) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["suite", "case", "metric", "unit", "simulated", c.against, "rel_error", "within_tolerance"])
    for r in c.rows:
        writer.writerow([r.suite, r.case, r.metric, r.unit, r.simulated, r.measured, r.rel_error, r.within])
    return buffer.getvalue()
