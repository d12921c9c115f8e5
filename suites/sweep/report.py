"""The end of a sweep: a summary table of one metric and, for one or two numeric axes, a figure.

Figures: one numeric axis gives a line per combination of the other varying keys; two numeric
axes give a heat map (when nothing else varies). A record's own case keys beyond the sweep's
(kernels-basic reports one record per kernel size) count as further lines.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from hwsim.records import CaseValue, Record
from hwsim.suites.render import to_markdown
from hwsim.suites.sweep.grid import Case, Grid
from hwsim.suites.tables import Cell, Table

MAX_LINES = 12


def _numeric(values: Sequence[CaseValue]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


_OVERRIDDEN = re.compile(r"^(?P<base>[^\[]+)\[[^\]]*=[^\]]*\]$")


def _base_name(value: CaseValue) -> CaseValue:
    """'t3-gpu[topology.link...=7.5e+10]' -> 't3-gpu': the overrides are the sweep's own axes already."""
    if isinstance(value, str):
        m = _OVERRIDDEN.match(value)
        if m:
            return m.group("base")
    return value


def _text(value: CaseValue | None) -> str:
    if value is None:
        return "—"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def matches(record: Record, where: Mapping[str, str]) -> bool:
    """Whether the record's case has every ``key=value`` of ``where`` (numbers compare as numbers: 4096 = 4096.0)."""
    for key, text in where.items():
        if key not in record.case:
            return False
        value = record.case[key]
        if str(value) == text or _text(value) == text or _base_name(value) == text:
            continue
        try:
            if isinstance(value, (int, float)) and not isinstance(value, bool) and float(text) == float(value):
                continue
        except ValueError:
            pass
        return False
    return True


def select(records: Mapping[str, list[Record]], where: Mapping[str, str]) -> dict[str, list[Record]]:
    """The records the summary and figure show: those matching ``where``, and never a paper's figure
    (a suite returns those beside its own for ``compare --against paper``; a sweep varies the model)."""
    return {cid: [r for r in rs if r.source != "paper" and matches(r, where)] for cid, rs in records.items()}


def default_metric(records: Mapping[str, list[Record]]) -> str | None:
    for rs in records.values():
        if rs:
            return rs[0].metric
    return None


def metric_rows(grid: Grid, records: Mapping[str, list[Record]], metric: str) -> list[tuple[Case, str, Record]]:
    """(case, inner label, record) for every record of ``metric``; the label names the record's own case keys."""
    picked = [(case, r) for case in grid.cases for r in records.get(case.case_id, []) if r.metric == metric]
    # a record key is a dimension of its own when it takes several values within one case (a kernel
    # size); one that only follows the sweep (a hardware name with the overrides in it) is not
    seen: dict[tuple[str, str], set[str]] = {}
    for case, r in picked:
        for k, v in r.case.items():
            if k not in case.params:
                seen.setdefault((case.case_id, k), set()).add(repr(_base_name(v)))
    varying = list(dict.fromkeys(k for (_, k), values in seen.items() if len(values) > 1))
    return [(case, ",".join(f"{k}={_text(_base_name(r.case[k]))}" for k in varying if k in r.case), r)
            for case, r in picked]


def summary_table(grid: Grid, records: Mapping[str, list[Record]], errors: Mapping[str, str],
                  metric: str | None) -> Table:
    """One row per case: its axes, its status and the metric (a number; a range when a case has several)."""
    axes = list(grid.axes)
    units = {r.unit for rs in records.values() for r in rs if r.metric == metric}
    table = Table(title=f"sweep {grid.suite}: {len(grid.cases)} cases" + (f", metric {metric}" if metric else ""))
    for key in axes:
        table.add_column(key, justify="right")
    table.add_column("status")
    table.add_column(metric or "value", next(iter(units)) if len(units) == 1 else "", justify="right")
    for case in grid.cases:
        values = [r for r in records.get(case.case_id, []) if r.metric == metric]
        shown: Cell
        if case.case_id in records:
            status = "done"
            if not values:
                shown = None
            elif len(values) == 1:
                shown = values[0].value
            else:
                low, high = min(v.value for v in values), max(v.value for v in values)
                shown = f"{low:.4g} to {high:.4g} ({len(values)} records)"
        elif case.case_id in errors:
            status, shown = "failed", errors[case.case_id]
        else:
            status, shown = "not run", None
        table.add_row(*[_cell(case.params.get(k)) for k in axes], status, shown)
    return table


def _cell(value: CaseValue | None) -> Cell:
    return value if isinstance(value, (int, float, str)) or value is None else str(value)


def markdown_summary(grid: Grid, records: Mapping[str, list[Record]], errors: Mapping[str, str],
                     metric: str | None) -> str:
    """The summary table as markdown (``summary.md`` in the sweep directory)."""
    return to_markdown(summary_table(grid, records, errors, metric))


def _collapse_zipped(grid: Grid, keys: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Keys that move one-to-one with an earlier key (a zip group) are one axis, drawn by the earlier one."""
    kept: list[str] = []
    companions: dict[str, list[str]] = {}
    for key in keys:
        for lead in kept:
            pairs = {(c.params[lead], c.params[key]) for c in grid.cases}
            if len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs}):
                companions.setdefault(lead, []).append(key)
                break
        else:
            kept.append(key)
    return kept, companions


def _axis_label(key: str, companions: Mapping[str, list[str]]) -> str:
    return key + "".join(f"\n(with {k})" for k in companions.get(key, []))


def figure(grid: Grid, records: Mapping[str, list[Record]], metric: str, path: Path) -> tuple[Path | None, str]:
    """Draw the metric over the numeric axes; returns (path or None, what was drawn or why not)."""
    rows = metric_rows(grid, records, metric)
    if not rows:
        return None, f"no records of metric {metric!r} to draw"
    numeric_all = [k for k in grid.axes if _numeric([c.params[k] for c in grid.cases if k in c.params])
                   and all(k in c.params for c in grid.cases)]
    numeric, companions = _collapse_zipped(grid, numeric_all)
    others = [k for k in grid.axes if k not in numeric_all]
    if len(numeric) not in (1, 2):
        return None, f"no figure: the grid has {len(numeric)} numeric axes (a figure needs one or two)"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    unit = rows[0][2].unit
    if len(numeric) == 1:
        x_key = numeric[0]
        lines: dict[str, list[tuple[float, float]]] = {}
        for case, inner, r in rows:
            label = ",".join([f"{k}={_text(case.params.get(k))}" for k in others] + ([inner] if inner else []))
            lines.setdefault(label, []).append((float(case.params[x_key]), r.value))  # type: ignore[arg-type]
        if len(lines) > MAX_LINES:
            return None, f"no figure: {len(lines)} lines of {metric} (at most {MAX_LINES}); fix the other axes"
        fig, ax = plt.subplots(figsize=(6, 4))
        for label, points in lines.items():
            points.sort()
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label or metric)
        xs = [float(c.params[x_key]) for c in grid.cases]  # type: ignore[arg-type]
        if min(xs) > 0 and max(xs) / min(xs) > 100:
            ax.set_xscale("log")
        ys = [p[1] for points in lines.values() for p in points]
        if min(ys) > 0 and max(ys) / min(ys) > 30:
            ax.set_yscale("log")
        ax.set_xlabel(_axis_label(x_key, companions))
        ax.set_ylabel(f"{metric} ({unit})")
        if len(lines) > 1 or next(iter(lines)):
            ax.legend(fontsize="x-small", loc="best")
        drawn = f"line plot of {metric} over {x_key}"
    else:
        if others or any(inner for _, inner, _ in rows):
            return None, (f"no heat map: besides {numeric[0]} and {numeric[1]}, "
                          f"{', '.join(others) or 'the records case keys'} vary; fix them to one value")
        x_key, y_key = numeric[1], numeric[0]
        xs = sorted({float(c.params[x_key]) for c, _, _ in rows})  # type: ignore[arg-type]
        ys = sorted({float(c.params[y_key]) for c, _, _ in rows})  # type: ignore[arg-type]
        grid_values = [[math.nan] * len(xs) for _ in ys]
        for case, _, r in rows:
            grid_values[ys.index(float(case.params[y_key]))][xs.index(float(case.params[x_key]))] = r.value  # type: ignore[arg-type]
        fig, ax = plt.subplots(figsize=(6, 4.5))
        image = ax.imshow(grid_values, origin="lower", aspect="auto", cmap="viridis")
        ax.set_xticks(range(len(xs)), [f"{x:.3g}" for x in xs], rotation=45)
        ax.set_yticks(range(len(ys)), [f"{y:.3g}" for y in ys])
        finite = [v for row in grid_values for v in row if not math.isnan(v)]
        middle = (min(finite) + max(finite)) / 2
        for i, row in enumerate(grid_values):
            for j, value in enumerate(row):
                if not math.isnan(value):
                    ax.text(j, i, f"{value:.3g}", ha="center", va="center", fontsize=7,
                            color="black" if value > middle else "white")
        ax.set_xlabel(_axis_label(x_key, companions))
        ax.set_ylabel(_axis_label(y_key, companions))
        fig.colorbar(image, ax=ax, label=f"{metric} ({unit})")
        drawn = f"heat map of {metric} over {y_key} x {x_key}"
    ax.set_title(f"{grid.suite}: {metric}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path, drawn


__all__ = ["default_metric", "figure", "markdown_summary", "matches", "metric_rows", "select", "summary_table"]
