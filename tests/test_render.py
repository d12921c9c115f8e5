"""Every suite's tables read correctly at 80 and 160 columns, and every command's ``--format json`` parses."""

from __future__ import annotations

import io
import json
import math

import pytest
from rich.console import Console

from hwsim.records import Record, write_results
from hwsim.suites.cli import main
from hwsim.suites.registry import BUILTIN_SUITES, SuiteContext, get_suite
from hwsim.suites.render import to_rich
from hwsim.suites.tables import Table

WIDTHS = (80, 160)
SLOW_SUITES = {"moetuner"}  # over ~20 s with --quick on a loaded 2-core machine (34 s measured)


def _rendered(table: Table, width: int) -> str:
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    for block in to_rich(table, width):
        console.print(block)
    return console.export_text()


def _check_fits(table: Table, width: int) -> None:
    text = _rendered(table, width)
    too_long = [line for line in text.splitlines() if len(line) > width]
    assert not too_long, f"{table.title!r} at {width} columns: {too_long[0]!r}"
    for row in table.rows:
        for i, cell in enumerate(row):
            if isinstance(cell, (int, float)) and not isinstance(cell, bool):
                shown = table.text(row, i)
                assert shown in text, f"{table.title!r} at {width}: number {shown!r} split or cut"


def _params(name: str) -> list:
    return [pytest.param(name, marks=pytest.mark.slow)] if name in SLOW_SUITES else [name]


@pytest.mark.parametrize("name", [p for n in sorted(BUILTIN_SUITES) for p in _params(n)])
def test_every_suite_quick_returns_tables_that_fit_80_and_160_columns(name):
    printed = io.StringIO()
    ctx = SuiteContext(hardware=None, quick=True, seed=0, console=Console(file=printed, width=120))
    result = get_suite(name).run(ctx)
    assert result.records
    assert printed.getvalue() == "", f"suite {name} printed instead of returning tables"
    assert result.tables, f"suite {name} returned no tables"
    for table in result.tables:
        assert all(isinstance(c, (str, int, float)) or c is None for row in table.rows for c in row)
        assert not any("[/" in c for row in table.rows for c in row if isinstance(c, str)), "rich markup in a cell"
        for width in WIDTHS:
            _check_fits(table, width)


def test_long_numbers_and_words_fit_without_splitting_a_number():
    table = Table(title="a deliberately awkward table with a long title that must wrap at narrow widths")
    table.add_column("case")
    for name in ("throughput", "latency", "bytes moved per iteration", "ratio", "note"):
        table.add_column(name, "s" if name == "latency" else "")
    for i in range(5):
        table.add_row(f"/a/very/long/path/to/some/file/number/{i}/that/cannot/fit.yaml", 40886.65 * 10**i,
                      1.23456789e-7 * i, 123456789012 * i, math.pi * i, "dtype=float32 size=1048576 " * 3)
    for width in (40, 80, 160):
        _check_fits(table, width)


def _json(capsys, argv: list[str]) -> object:
    code = main(argv)
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


def test_json_output_of_every_command_parses(capsys, tmp_path):
    assert _json(capsys, ["hw", "list", "--format", "json"])["tables"][0]["rows"]
    shown = _json(capsys, ["hw", "show", "t3-gpu", "--format", "json"])
    rows = {row[0]: row for row in shown["tables"][0]["rows"]}
    assert rows["topology.link.bandwidth"][:4] == ["topology.link.bandwidth", "150 GB/s", 150e9, "B/s"]
    assert _json(capsys, ["hw", "schema"])["properties"]["device"]
    assert _json(capsys, ["hw", "schema", "--format", "json"])["title"] == "hwsim hardware description"
    assert _json(capsys, ["suite", "list", "--format", "json"])["tables"][0]["rows"]
    run = _json(capsys, ["suite", "run", "link-sharing", "--quick", "--format", "json", "--out",
                         str(tmp_path / "ls.json")])
    assert run["suite"] == "link-sharing" and run["tables"][0]["rows"]
    sim = Record("toy", {"n": 1}, "latency_s", 2.0, "s", "simulated", "cpu")
    meas = Record("toy", {"n": 1}, "latency_s", 1.6, "s", "measured", "cpu")
    files = [str(write_results(tmp_path / "a.json", [sim])), str(write_results(tmp_path / "b.json", [meas]))]
    assert _json(capsys, ["compare", *files, "--format", "json"])
    problem = tmp_path / "p.yaml"
    problem.write_text("gpus: 2\ncapacity: 2\nloads: [[8, 1, 1, 6], [1, 8, 6, 1]]\n")
    placed = _json(capsys, ["place", "--solver", "greedy", "--problem", str(problem), "--format", "json",
                            "--out", str(tmp_path / "out.json")])
    assert placed["tables"][0]["columns"][0]["name"] == "objective"
    grid = tmp_path / "g.yaml"
    grid.write_text("axes:\n  load: [0.3, 0.6]\n")
    listed = _json(capsys, ["sweep", "link-sharing", "--grid", str(grid), "--list", "--format", "json"])
    assert len(listed["tables"][0]["rows"]) == 2
