"""The ``hwsim`` command line: hardware, suites, sweeps, compare. It presents; suites compute.

Every error a user can cause ends in one line on stderr and the exit code of its class
(:mod:`hwsim.errors`), never a traceback. Tables go to stdout in the ``--format`` asked for;
progress and "wrote ..." lines go to stderr, so ``--format json`` output always parses.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

import hwsim
from hwsim.engine import Tracer
from hwsim.errors import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    EXIT_PARTIAL,
    HwsimError,
    SuiteError,
)
from hwsim.fileio import write_text_atomic
from hwsim.hardware import Hardware, list_hardware, load_hardware
from hwsim.records import Provenance, read_results, write_results
from hwsim.suites import compare as compare_mod
from hwsim.suites.outputs import check_output_dir, check_output_file
from hwsim.suites.registry import (
    SuiteContext,
    get_suite,
    resolve_params,
    suite_info,
    suite_targets,
)
from hwsim.suites.render import FORMATS, print_tables, render_document
from hwsim.suites.tables import Table

DEFAULT_OUT_DIR = Path("results/latest")
EXIT_USER_ERROR = EXIT_BAD_INPUT
log = logging.getLogger("hwsim")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hwsim", description="Hardware-aware simulation, checked against real kernels.")
    p.add_argument("--version", action="version", version=f"hwsim {hwsim.__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log lines on stderr (-vv: debug)")
    p.add_argument("-q", "--quiet", action="store_true", help="only errors on stderr; tables still go to stdout")
    try:
        import shtab  # optional: `hwsim --print-completion bash` writes a shell completion script
        shtab.add_argument_to(p, ["--print-completion"])
    except ImportError:
        pass
    fmt = argparse.ArgumentParser(add_help=False)
    fmt.add_argument("--format", choices=FORMATS, default="table",
                     help="table (fitted to the terminal), markdown, csv or json (default table)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    hw = sub.add_parser("hw", help="hardware descriptions").add_subparsers(dest="hw_command", required=True,
                                                                          metavar="ACTION")
    hw.add_parser("list", help="list presets and user hardware files", parents=[fmt])
    show = hw.add_parser("show", help="show one hardware description", parents=[fmt])
    show.add_argument("name", help="preset name or path to a YAML file")
    hw.add_parser("schema", help="print the JSON Schema of hardware YAML files (for editors)", parents=[fmt])
    cal = hw.add_parser("calibrate", help="measure this machine and write a hardware YAML")
    cal.add_argument("--quick", action="store_true", help="fewer sizes and repeats (a few seconds)")
    cal.add_argument("--name", default="host", help="name of the written hardware (default: host)")
    cal.add_argument("--out", type=Path, help="where to write the YAML (default: the user hardware directory)")
    cal.add_argument("--no-gpu", action="store_true", help="skip the GPU even when CuPy finds one")
    cal.add_argument("--threads", type=int, default=1,
                     help="CPU threads the operator models are fitted on (default 1: timed by the thread's CPU "
                          "clock, repeatable on a shared machine)")

    suite = sub.add_parser("suite", help="benchmark suites").add_subparsers(dest="suite_command", required=True,
                                                                           metavar="ACTION")
    suite.add_parser("list", help="list suites", parents=[fmt])
    run = suite.add_parser("run", help="run a suite (or 'all')", parents=[fmt])
    run.add_argument("name", help="suite name, or 'all'")
    run.add_argument("--hw", help="hardware preset or YAML path (default: the suite's own)")
    run.add_argument("--measure", action="store_true", help="also measure the real kernels on this machine")
    run.add_argument("--quick", action="store_true", help="a smaller, faster version of the suite")
    run.add_argument("--out", type=Path, help=f"results file (a directory for 'all'; default {DEFAULT_OUT_DIR}/)")
    run.add_argument("--trace", type=Path, help="write a Chrome trace-event JSON of the simulation (open in Perfetto)")
    run.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    run.add_argument("--param", action="append", metavar="KEY=VALUE",
                     help="set a parameter the suite declares (repeatable); 'hwsim sweep' varies them over a grid")

    sweep = sub.add_parser("sweep", help="run a suite over a grid of suite and hardware parameters, in parallel",
                           parents=[fmt])
    sweep.add_argument("name", metavar="SUITE", help="suite name")
    sweep.add_argument("--grid", type=Path, required=True,
                       help="grid YAML: axes (cartesian), zip groups, explicit cases")
    sweep.add_argument("--out", type=Path, help=f"sweep directory (default {DEFAULT_OUT_DIR}/sweeps/SUITE-GRID/); "
                                                "rerunning into it skips finished cases")
    sweep.add_argument("--workers", type=int, help="local worker processes (default: one per CPU)")
    sweep.add_argument("--scheduler", metavar="ADDRESS", help="a running Dask scheduler, e.g. tcp://HOST:8786")
    sweep.add_argument("--executor", default="auto", choices=("auto", "dask", "process", "serial"),
                       help="auto: Dask when installed, else a process pool; serial: in this process")
    sweep.add_argument("--seed", type=int,
                       help="sweep seed; each case's seed derives from it and the case (default: the grid's, else 0)")
    sweep.add_argument("--quick", action="store_true", default=None, help="run every case in the suite's quick form")
    sweep.add_argument("--metric", help="metric of the summary and figure (default: the grid's, else the first)")
    sweep.add_argument("--where", action="append", metavar="KEY=VALUE",
                       help="show only records whose case has KEY=VALUE in the summary and figure (repeatable)")
    sweep.add_argument("--list", action="store_true", help="print the cases and exit without running")

    place = sub.add_parser("place", help="solve an expert-placement problem file with a named solver", parents=[fmt])
    place.add_argument("--solver", required=True,
                       help="solver name (built-in or from the hwsim.placement entry points)")
    source = place.add_mutually_exclusive_group(required=True)
    source.add_argument("--problem", type=Path, help="problem file (YAML or JSON; see suites/place.py)")
    source.add_argument("--routing", type=Path, metavar="FILE.npz",
                        help="build the problem from a routing-statistics file (format of placement/data/routing)")
    place.add_argument("--evaluate", type=Path, nargs="+", default=[], metavar="FILE.npz",
                       help="simulate the placement's EP layer time on each routing file (needs --routing)")
    place.add_argument("--hw", default="h100-sxm",
                       help="hardware preset or file for --routing/--evaluate (one GPU per EP rank)")
    place.add_argument("--json", action="store_true",
                       help="print the placement summary (objective, info, evaluate) as one JSON document")
    place.add_argument("--out", type=Path, help="write the placement as JSON here")
    place.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="solver option (repeatable)")

    val = sub.add_parser("validate", help="calibrate, then predict and measure held-out cases of every kernel family",
                         parents=[fmt])
    val.add_argument("--device", choices=("cpu", "gpu"), default="cpu", help="cpu (Numba/BLAS) or gpu (CuPy)")
    val.add_argument("--threads", type=int, help="CPU threads for Numba and BLAS (default: all)")
    val.add_argument("--quick", action="store_true", help="fewer repeats and the smaller cases")
    val.add_argument("--out", type=Path, help="write validate.json, validate.md and the fitted models here")
    val.add_argument("--seed", type=int, default=0, help="seed of the inputs (default 0)")

    cmp_ = sub.add_parser("compare", help="simulated vs measured (or vs paper), with the error of every row",
                          parents=[fmt])
    cmp_.add_argument("files", nargs="+", type=Path,
                      help="results files (simulated, measured and paper records, any mix)")
    cmp_.add_argument("--against", choices=compare_mod.REFERENCES, default="measured",
                      help="the reference: measured records (default) or the papers' figures (source: paper)")
    cmp_.add_argument("--out", type=Path,
                      help="also write the rendered comparison to this file (markdown for --format table)")
    return p


def _hw_list() -> Table:
    table = Table(title="hardware")
    for column in ("name", "kind", "devices", "description", "file"):
        table.add_column(column)
    for name, path in list_hardware().items():
        try:
            hw = load_hardware(path)
            table.add_row(name, hw.device.kind, hw.topology.devices, hw.description, str(path.name))
        except HwsimError as exc:
            table.add_row(name, "?", "?", f"unreadable: {exc}", str(path.name))
    return table


def _si(value: float, unit: str) -> str:
    if value == 0:
        return f"0 {unit}"
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""),
                           (1e-3, "m"), (1e-6, "µ"), (1e-9, "n")):
        if abs(value) >= factor:
            return f"{value / factor:.4g} {prefix}{unit}"
    return f"{value:.4g} {unit}"


def hardware_table(hw: Hardware) -> Table:
    """Every value of the hardware schema, unset optionals included: nothing is left out (``hwsim hw show``)."""
    from hwsim.hardware import schema as hw_schema

    table = Table(title=f"{hw.name}: {hw.description}")
    table.add_column("field")
    table.add_column("value")
    table.add_column("base value", justify="right", number_format=".6g")
    table.add_column("unit")
    table.add_column("description")
    for leaf in hw_schema.leaves(hw):
        value = leaf.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            shown = "not set" if value is None else str(value)
            table.add_row(leaf.path, shown, None, "", leaf.help)
        else:
            shown = _si(float(value), leaf.unit) if leaf.unit else f"{value:g}"
            table.add_row(leaf.path, shown, value, leaf.unit, leaf.help)
    return table


def _hw_show(name: str) -> Table:
    return hardware_table(load_hardware(name))


def _hw_schema(output: Output) -> None:
    """The JSON Schema of hardware files: always JSON, whatever --format says (it is a document, not a table)."""
    import json

    from hwsim.hardware import hardware_json_schema

    sys.stdout.write(json.dumps(hardware_json_schema(), indent=2, ensure_ascii=False) + "\n")


def _params(items: list[str]) -> dict[str, str | int | float | bool]:
    """``--param load=0.7 --param size_dist=lognormal``: values read as YAML scalars (numbers, true/false, text)."""
    from hwsim.suites.sweep.grid import SweepError, case_value

    params: dict[str, str | int | float | bool] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise SuiteError(f"--param {item!r}: expected KEY=VALUE")
        try:
            value = yaml.safe_load(text) if text else ""
        except yaml.YAMLError:
            raise SuiteError(f"--param {item!r}: the value must be a number, true/false or text") from None
        try:
            params[key] = case_value(value, "--param", key)
        except SweepError as exc:  # names the key and says what is wrong (a list, NaN, infinity)
            raise SuiteError(str(exc)) from None
    return params


class Output:
    """Where things go: tables to stdout in the chosen format, messages to stderr."""

    def __init__(self, fmt: str, quiet: bool = False) -> None:
        self.fmt = fmt
        self.out = Console()
        self.err = Console(stderr=True, quiet=quiet)
        self.json_parts: list[dict[str, Any]] = []

    def tables(self, tables: Sequence[Table], notes: Sequence[str] = (), **extra: Any) -> None:
        if self.fmt == "table":
            print_tables(tables, self.out)
            for note in notes:
                self.out.print(f"[yellow]note:[/yellow] {note}", highlight=False)
        elif self.fmt == "json":
            self.json_parts.append({**extra, "tables": [t.to_dict() for t in tables], "notes": list(notes)})
        else:
            sys.stdout.write(render_document(tables, self.fmt, notes))  # type: ignore[arg-type]

    def message(self, text: str) -> None:
        self.err.print(text, highlight=False)

    def finish(self) -> None:
        """JSON output is one document for the whole command, so it parses even for 'suite run all'."""
        if self.fmt == "json" and self.json_parts:
            import json
            doc = self.json_parts[0] if len(self.json_parts) == 1 else {"results": self.json_parts}
            sys.stdout.write(json.dumps(doc, indent=1, allow_nan=False) + "\n")


def _run_suites(output: Output, args: argparse.Namespace) -> int:
    names = list(suite_targets()) if args.name == "all" else [args.name]
    suites = [get_suite(n) for n in names]  # fail on an unknown name before running anything
    hardware: Hardware | None = load_hardware(args.hw) if args.hw else None
    if args.seed < 0:
        raise SuiteError(f"--seed must be non-negative, got {args.seed}")
    params = _params(args.param or [])  # no mutable default: argparse appends to it in place
    if params and args.name == "all":
        raise SuiteError("--param needs one suite, not 'all' (parameters belong to a suite)")
    for suite in suites:
        resolve_params(suite, params, where="--param")  # a typo fails before anything runs
    if args.name == "all":
        outs = [check_output_dir(args.out or DEFAULT_OUT_DIR, "--out") / f"{s.name}.json" for s in suites]
    else:
        outs = [args.out or DEFAULT_OUT_DIR / f"{suites[0].name}.json"]
    traces = [args.trace if len(suites) == 1 else args.trace.with_name(f"{args.trace.stem}-{s.name}{args.trace.suffix}")
              for s in suites] if args.trace else []
    for path in outs:  # an unwritable output fails now, not after the suite ran
        check_output_file(path, "--out")
    for path in traces:
        check_output_file(path, "--trace")
    provenance = Provenance.collect()
    failed: list[str] = []
    for i, suite in enumerate(suites):  # each suite's file lands as it finishes; a later failure keeps it
        out = outs[i]
        tracer = Tracer() if args.trace else None
        # A suite that still prints gets stderr, so stdout carries only the rendered tables.
        ctx = SuiteContext(hardware=hardware, measure=args.measure, quick=args.quick, seed=args.seed,
                           tracer=tracer, console=output.err, figures_dir=out.parent, params=params)
        output.err.rule(f"suite {suite.name}")
        started = time.perf_counter()
        result = suite.run(ctx)
        elapsed = time.perf_counter() - started
        records = [r if r.provenance is not None else replace(r, provenance=provenance) for r in result.records]
        write_results(out, records, provenance)
        output.tables(result.tables, result.notes, suite=suite.name, records_file=str(out))
        output.message(f"wrote {len(records)} records to {out} ({elapsed:.1f} s)")
        for figure in result.figures:
            output.message(f"figure: {figure}")
        if tracer is not None:
            trace_path = traces[i]
            tracer.write(trace_path)
            output.message(f"trace: {trace_path} ({len(tracer.spans)} spans; open it at ui.perfetto.dev)")
        if any(r.source == "measured" for r in records):
            comparison = compare_mod.compare(records)
            for line in compare_mod.summary_lines(comparison):
                output.message(line)
            output.message(f"details: hwsim compare {out}")
        failed += [f"{suite.name}:{name}" for name in result.failed_sections]
    if failed:
        output.message(f"failed sections (see the notes; the results file holds what finished): {', '.join(failed)}")
        return EXIT_PARTIAL
    return 0


def _sweep(output: Output, args: argparse.Namespace) -> int:
    from hwsim.suites.sweep import expand, make_backend, read_grid_file, run_sweep
    from hwsim.suites.sweep.grid import SweepError, check_metric

    if args.seed is not None and args.seed < 0:
        raise SweepError(f"--seed must be non-negative, got {args.seed}")
    suite = get_suite(args.name)
    grid = expand(read_grid_file(args.grid), str(args.grid), suite, seed=args.seed, quick=args.quick)
    if args.metric is not None:
        check_metric(suite, args.metric, "--metric")
    if args.list:
        quick = ", quick" if grid.quick else ""
        table = Table(title=f"{len(grid.cases)} cases of {suite.name} (seed {grid.seed}{quick})")
        for column in ("id", "seed", "case"):
            table.add_column(column)
        for case in grid.cases:
            table.add_row(case.case_id, case.seed, ", ".join(f"{k}={v}" for k, v in case.params.items()))
        output.tables([table])
        return 0
    backend = make_backend(args.executor, args.workers, args.scheduler)
    out = check_output_dir(args.out or DEFAULT_OUT_DIR / "sweeps" / f"{suite.name}-{args.grid.stem}", "--out")
    where: dict[str, str] = {}
    for item in args.where or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SweepError(f"--where {item!r}: expected KEY=VALUE")
        where[key] = value
    # progress and the summary go to the terminal; in another --format they go to stderr and the summary to stdout
    console = output.out if args.format == "table" else output.err
    rep = run_sweep(grid, out, backend, console, metric=args.metric, where=where)
    if args.format != "table" and rep.summary is not None:
        output.tables([rep.summary])
    return 1 if rep.failed else 0


def _compare(output: Output, args: argparse.Namespace) -> int:
    if args.out:
        check_output_file(args.out, "--out")
    records = [r for path in args.files for r in read_results(path)]
    comparison = compare_mod.compare(records, against=args.against)
    if args.format == "json":
        text = compare_mod.to_json(comparison)
    elif args.format == "csv":
        text = compare_mod.to_csv(comparison)
    else:
        text = render_document([compare_mod.to_table(comparison), compare_mod.family_table(comparison)], "markdown")
    if args.format == "table":
        output.tables([compare_mod.to_table(comparison), compare_mod.family_table(comparison)])
    else:
        sys.stdout.write(text)
    if args.out:
        write_text_atomic(args.out, text)
    return 0


def _suite_list() -> Table:
    table = Table(title="suites")
    for column in ("name", "default hardware", "from", "description", "parameters (--param, sweeps)"):
        table.add_column(column)
    for name, (_target, origin) in suite_targets().items():
        try:
            s = suite_info(name)
            params = ", ".join(f"{k}={v}" for k, v in s.parameter_defaults.items()) or "—"
            table.add_row(name, s.default_hardware, origin, s.description, params)
        except HwsimError as exc:
            table.add_row(name, "?", origin, str(exc), "")
    return table


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logging.basicConfig(level=level, format="hwsim: %(levelname)s: %(message)s", stream=sys.stderr, force=True)
    # libraries that set their own logger levels (distributed: INFO) stay quiet too
    for handler in logging.root.handlers:
        handler.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _configure_logging(args.verbose, args.quiet)
    output = Output(getattr(args, "format", "table"), quiet=args.quiet)
    console = output.out  # commands not yet split into compute and presentation print here
    try:
        try:
            if args.command == "hw":
                if args.hw_command == "list":
                    output.tables([_hw_list()])
                elif args.hw_command == "show":
                    output.tables([_hw_show(args.name)])
                elif args.hw_command == "schema":
                    _hw_schema(output)
                else:
                    from hwsim.suites.calibrate import calibrate_command
                    if args.threads < 1:
                        raise SuiteError(f"--threads must be at least 1, got {args.threads}")
                    if args.out is not None:
                        check_output_file(args.out, "--out")
                    else:
                        from hwsim.hardware.loader import user_hardware_dir
                        check_output_dir(user_hardware_dir(), "hw calibrate: the user hardware folder")
                    calibrate_command(console, quick=args.quick, name=args.name, out=args.out,
                                      use_gpu=not args.no_gpu, threads=args.threads)
                return 0
            if args.command == "suite":
                if args.suite_command == "list":
                    output.tables([_suite_list()])
                    return 0
                return _run_suites(output, args)
            if args.command == "sweep":
                return _sweep(output, args)
            if args.command == "validate":
                from hwsim.suites.validate import run_validate
                if args.out is not None:  # a folder; refused now, not after minutes of measuring
                    check_output_dir(args.out, "--out")
                validated = run_validate(device=args.device, threads=args.threads, quick=args.quick, seed=args.seed,
                                         out=args.out)
                output.tables(validated.tables, validated.notes)
                return 0
            if args.command == "place":
                from hwsim.suites.place import place_command
                if args.out is not None:
                    check_output_file(args.out, "--out")
                result = place_command(args.solver, args.problem, args.out, args.option, routing=args.routing,
                                       evaluate=args.evaluate, hw=args.hw)
                if args.json:
                    import json
                    sys.stdout.write(json.dumps(result.document, indent=1, allow_nan=False) + "\n")
                else:
                    output.tables(result.tables, result.notes)
                if args.out:
                    output.message(f"wrote {args.out}")
                return 0
            return _compare(output, args)
        finally:
            output.finish()
    except HwsimError as exc:
        print(f"hwsim: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("hwsim: interrupted; files already written are complete", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
