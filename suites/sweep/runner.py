"""Run a grid: skip what is on disk, hand the rest to a backend, write each case as it arrives, report.

Ctrl-C stops the backend; every case already written stays, and the same command resumes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from hwsim.fileio import write_text_atomic
from hwsim.hardware import Hardware
from hwsim.records import Record, read_results, write_results
from hwsim.suites.registry import load_suite_target
from hwsim.suites.render import print_tables, to_markdown
from hwsim.suites.sweep import report
from hwsim.suites.sweep.executors import Backend
from hwsim.suites.sweep.grid import Grid, SweepError, check_metric
from hwsim.suites.sweep.store import SweepDir
from hwsim.suites.sweep.worker import Outcome, Task
from hwsim.suites.tables import Table


@dataclass
class SweepReport:
    grid: Grid
    out: SweepDir
    ran: list[str] = field(default_factory=list)        # case ids run by this call, in order of completion
    skipped: list[str] = field(default_factory=list)    # finished before this call
    failed: dict[str, str] = field(default_factory=dict)  # case id -> "Type: message"
    records: list[Record] = field(default_factory=list)  # merged, in grid order
    figure: Path | None = None
    figure_note: str = ""
    metric: str | None = None
    elapsed_s: float = 0.0
    case_s: float = 0.0          # sum of the cases' own run times: case_s / elapsed_s is the parallelism reached
    case_cpu_s: float = 0.0      # sum of the cases' CPU times: case_s well above it means the cores were shared
    summary: Table | None = None  # the summary table (data), for a caller that renders it in another format


def run_sweep(grid: Grid, out_dir: Path, backend: Backend, console: Console | None = None, *,
              metric: str | None = None, where: Mapping[str, str] | None = None, progress: bool = True) -> SweepReport:
    console = console or Console()
    out = SweepDir(Path(out_dir))
    out.remove_stale_temporaries()  # one sweep per directory at a time: a temporary here is a killed run's
    out.write_manifest(grid)
    by_id = {c.case_id: c for c in grid.cases}
    rep = SweepReport(grid=grid, out=out)
    rep.skipped = [c.case_id for c in grid.cases if out.is_done(c)]
    loaded: dict[str, Hardware] = {}
    tasks = [Task(grid.suite_target, c, grid.quick, grid.hardware_for(c, loaded))
             for c in grid.cases if not out.is_done(c)]
    console.print(f"sweep {grid.suite}: {len(grid.cases)} cases, {len(rep.skipped)} already done, "
                  f"{len(tasks)} to run on {backend.description}; results in {out.root}")
    started = time.perf_counter()
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                   TextColumn("{task.fields[done]} done, {task.fields[failed]} failed, {task.fields[left]} remaining"),
                   TextColumn("elapsed"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                   console=console, disable=not progress, transient=False)
    done = len(rep.skipped)
    wanted = metric or grid.metric
    if wanted is not None:
        source = "--metric" if metric else f"{grid.path}: field 'metric'"
        check_metric(load_suite_target(grid.suite_target), wanted, source)
    metric_seen = wanted is None
    if wanted is not None:
        seen_before = _metric_in(out, grid, wanted)
        if seen_before is False:
            raise SweepError(f"{'--metric' if metric else f'{grid.path}: field metric'}: suite {grid.suite!r} "
                             f"reports no metric {wanted!r} (a finished case in {out.cases_dir} has none)")
        metric_seen = bool(seen_before)

    with bar:
        task_id = bar.add_task(grid.suite, total=len(tasks), done=done, failed=0, left=len(tasks))

        def on_done(outcome: Outcome) -> None:
            nonlocal metric_seen
            case = by_id[outcome.case_id]
            out.write_outcome(case, outcome)
            if not metric_seen and outcome.ok:
                # a suite that does not declare its metrics: the first finished case tells, and a
                # metric it lacks stops the sweep now rather than after every case ran
                names = sorted({r.metric for r in outcome.records})
                if wanted not in names:
                    where = "--metric" if metric else f"{grid.path}: field 'metric'"
                    raise SweepError(f"{where}: suite {grid.suite!r} reports no metric {wanted!r} "
                                     f"(its first case reported: {', '.join(names) or 'no records'}); "
                                     f"the finished case is kept in {out.cases_dir}")
                metric_seen = True
            rep.ran.append(case.case_id)
            rep.case_s += outcome.elapsed_s
            rep.case_cpu_s += outcome.cpu_s
            if not outcome.ok:
                assert outcome.error is not None
                rep.failed[case.case_id] = f"{outcome.error['type']}: {outcome.error['message']}"
                console.print(f"[red]case failed[/red] {case.slug}: {rep.failed[case.case_id]} "
                              f"(details: {out.error_path(case)})")
            finished = len(rep.ran)
            bar.update(task_id, advance=1, done=done + finished - len(rep.failed), failed=len(rep.failed),
                       left=len(tasks) - finished)

        if tasks:
            try:
                backend.run(tasks, on_done)
            except KeyboardInterrupt:
                by_case = out.records(grid)  # the merged file of what is finished, so far
                write_results(out.merged, [r for c in grid.cases for r in by_case.get(c.case_id, [])])
                kept = len(by_case)
                console.print(f"[yellow]interrupted[/yellow]: {kept} finished cases are on disk in {out.cases_dir}; "
                              f"run the same command again to run the other {len(grid.cases) - kept}")
                raise
    rep.elapsed_s = time.perf_counter() - started
    finish(rep, console, metric, where or {})
    return rep


def _metric_in(out: SweepDir, grid: Grid, metric: str) -> bool | None:
    """Whether the first case finished before this call reported ``metric``; None when none has finished."""
    for case in grid.cases:
        if out.is_done(case):
            return any(r.metric == metric for r in read_results(out.result_path(case)))
    return None


def finish(rep: SweepReport, console: Console, metric: str | None, where: Mapping[str, str] | None = None) -> None:
    """Merge every finished case, print and write the summary, draw the figure.

    ``where`` picks the records the summary and figure show (a suite with many records per case,
    such as one per kernel size); the merged file keeps them all.
    """
    grid, out = rep.grid, rep.out
    by_case = out.records(grid)
    rep.records = [r for c in grid.cases for r in by_case.get(c.case_id, [])]
    errors = dict(rep.failed)
    for case in grid.cases:
        if case.case_id not in by_case and case.case_id not in errors:
            info = out.read_error(case)
            if info is not None:
                errors[case.case_id] = f"{info.get('type', '?')}: {info.get('message', '')}"
    rep.failed = {k: v for k, v in errors.items() if k not in by_case}
    write_results(out.merged, rep.records)
    shown = report.select(by_case, where or {})
    rep.metric = metric or grid.metric or report.default_metric(shown)
    if where and by_case and not any(shown.values()):
        console.print(f"[yellow]note:[/yellow] no record matches --where {where}")
    rep.summary = summary = report.summary_table(grid, shown, rep.failed, rep.metric)
    print_tables([summary], console)
    write_text_atomic(out.root / "summary.md", to_markdown(summary))
    if rep.metric is not None:
        rep.figure, rep.figure_note = report.figure(grid, shown, rep.metric, out.root / f"{rep.metric}.png")
    console.print(f"{len(by_case)} of {len(grid.cases)} cases done ({len(rep.ran) - len(rep.failed)} run now, "
                  f"{len(rep.skipped)} from before), {len(rep.failed)} failed; {len(rep.records)} records in "
                  f"{out.merged} ({rep.elapsed_s:.1f} s)")
    if rep.ran and rep.elapsed_s > 0:
        console.print(f"cases ran {rep.case_s:.1f} s in all ({rep.case_cpu_s:.1f} s of CPU) in {rep.elapsed_s:.1f} s: "
                      f"{rep.case_s / rep.elapsed_s:.2f} cases at a time on average")
    if rep.figure is not None:
        console.print(f"figure: {rep.figure} ({rep.figure_note})")
    elif rep.figure_note:
        console.print(f"[yellow]note:[/yellow] {rep.figure_note}")


__all__ = ["SweepReport", "finish", "run_sweep"]
