"""Bad input and faults (issue 11): every bad file, number or path is one line and exit 2; nothing finished is lost.

The CLI runs in-process (``main([...])`` with capsys) unless a test needs a real process.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from hwsim.errors import (
    EXIT_BAD_INPUT,
    HardwareError,
    PlacementError,
    RecordsError,
    SimulationError,
)
from hwsim.fileio import write_text_atomic
from hwsim.hardware import load_hardware
from hwsim.hardware.loader import PRESET_DIR
from hwsim.hardware.units import UnitError, parse_quantity, whole_bytes
from hwsim.records import Record, read_results, write_results
from hwsim.suites import registry
from hwsim.suites.cli import main
from hwsim.suites.registry import Parameter, SuiteContext, SuiteResult, resolve_params
from hwsim.suites.sweep import expand, read_grid_file, run_sweep
from hwsim.suites.sweep.executors import SerialBackend
from hwsim.suites.sweep.grid import SweepError

REPO = Path(__file__).resolve().parents[1]
T3_GPU = (PRESET_DIR / "t3-gpu.yaml").read_text()
PROBLEM = "gpus: 2\ncapacity: 2\nloads: [[8, 1, 1, 6], [1, 8, 6, 1]]\n"


# --- test doubles: suites that count their runs, declare metrics, or fail ---------------------------------------

class Counting:
    """Reports ``square`` and a seeded ``draw``; counts its runs so a test can prove nothing ran."""

    name = "bad-input-counting"
    description = "test double"
    default_hardware = "t3-gpu"
    parameters: ClassVar = {"x": Parameter(0, "a number"), "scale": Parameter(1.0, "a float")}
    runs = 0

    def run(self, ctx: SuiteContext) -> SuiteResult:
        type(self).runs += 1
        p = resolve_params(self, ctx.params)
        draw = float(np.random.default_rng(ctx.seed).random())
        case = {"x": p["x"]}
        return SuiteResult(records=[Record(self.name, case, "square", float(p["x"]) ** 2 * p["scale"], "1", "simulated", "t3-gpu"),
                                    Record(self.name, case, "draw", draw, "1", "simulated", "t3-gpu")])


class Declared(Counting):
    name = "bad-input-declared"
    metrics = ("square", "draw")


class Failing(Counting):
    name = "bad-input-failing"

    def run(self, ctx: SuiteContext) -> SuiteResult:
        raise SimulationError("this suite always fails, on purpose")


COUNTING, DECLARED, FAILING = Counting(), Declared(), Failing()


@pytest.fixture
def doubles(monkeypatch):
    for suite in (COUNTING, DECLARED, FAILING):
        monkeypatch.setitem(registry.BUILTIN_SUITES, suite.name, f"test_bad_input:{suite.name.split('-')[-1].upper()}")
    Counting.runs = 0
    return COUNTING


def _bad(capsys, argv, fragment, code=EXIT_BAD_INPUT):
    """The command fails with ``code`` and exactly one line on stderr containing ``fragment``."""
    got = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert got == code, err
    assert err.startswith("hwsim: error:") and fragment in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


# --- 1. one reading path; numbers finite and in range ----------------------------------------------------------

@pytest.mark.parametrize("value,fragment", [
    (float("nan"), "not a number"), (float("inf"), "infinite"), (float("-inf"), "infinite"),
    ("1e400 B/s", "too large for a float"), ("1e400", "too large for a float"), (10**400, "too large"),
    ("nan B/s", "cannot read"), ("1e308 TB/s", "too large for a float"),
])
def test_quantity_refuses_nan_inf_and_overflow(value, fragment):
    with pytest.raises(UnitError, match=fragment):
        parse_quantity(value, "bytes_per_s")


def test_whole_bytes():
    assert whole_bytes("64 B") == 64 and whole_bytes("1 KiB") == 1024
    with pytest.raises(UnitError, match="whole number of bytes"):
        whole_bytes("0.5 B")


@pytest.mark.parametrize("old,new,fragment", [
    ("bandwidth: 1 TB/s", "bandwidth: .nan", "field 'device.memory.bandwidth': value nan is not a number"),
    ("bandwidth: 1 TB/s", "bandwidth: .inf", "field 'device.memory.bandwidth': value inf is infinite"),
    ("bandwidth: 1 TB/s", "bandwidth: 1e400 B/s", "field 'device.memory.bandwidth': value '1e400 B/s' is infinite"),
    ("transaction: 64 B", "transaction: 0.5 B", "field 'device.memory.transaction': value '0.5 B'"),
    ("compute_units: 80", "compute_units: 1" + "0" * 400, "field 'device.compute_units'"),
    ("channels: 16", "channels: 1" + "0" * 400, "field 'device.memory.channels'"),
    ("compute_max: 1.0", "compute_max: .nan", "field 'device.efficiency.compute_max'"),
    ("latency: 500 ns", "latency: -5 ns", "field 'topology.link.latency': value '-5 ns' must be non-negative"),
])
def test_hardware_numbers_checked_at_load(tmp_path, capsys, old, new, fragment):
    path = tmp_path / "hw.yaml"
    assert old in T3_GPU
    path.write_text(T3_GPU.replace(old, new, 1))
    with pytest.raises(HardwareError, match="field") as info:
        load_hardware(path)
    assert str(path) in str(info.value) and fragment in str(info.value)
    _bad(capsys, ["hw", "show", path], fragment)


@pytest.mark.parametrize("value,fragment", [
    (".nan", "is not a number"), ("-5 us", "must be positive"), ("0 s", "must be positive"), ("fast", "cannot read"),
    ("1e400 s", "infinite"),
])
def test_a_calibrated_core_reference_is_checked_at_load(tmp_path, capsys, value, fragment):
    """The calibration's core-speed reference gates every later measurement: a bad one is refused
    with the file and field named (exit 2), never used."""
    text = (Path(__file__).parents[1] / "results" / "measured" / "cpu" / "host.yaml").read_text()
    lines = [ln for ln in text.splitlines() if ln.strip().startswith("core_reference:")]
    assert len(lines) == 1
    path = tmp_path / "host.yaml"
    path.write_text(text.replace(lines[0], f"    core_reference: {value}"))
    with pytest.raises(HardwareError) as info:
        load_hardware(path)
    assert str(path) in str(info.value) and "device.operators.core_reference" in str(info.value)
    assert fragment in str(info.value)
    _bad(capsys, ["hw", "show", path], "device.operators.core_reference")


@pytest.mark.parametrize("key,field", [
    ("copy_nontemporal", "copy_nontemporal"), ("copy_nontemporal_rate", "copy_nontemporal_rate"),
    ("gemv_cache", "gemv_cache"), ("gemv_dram", "gemv_dram"), ("gemv_dram_read_fraction", "gemv_dram_read_fraction"),
    ("gemm_pack_moves", "gemm_pack_moves"), ("topk_dense_block", "topk_dense_block"), ("line", "gather.0.line"),
])
@pytest.mark.parametrize("value", [".nan", ".inf", "fast", "-1"])
def test_the_calibrated_copy_gemv_gemm_and_top_k_fields_are_checked_at_load(tmp_path, capsys, key, field, value):
    """Each field calibration added for the copy past the caches, the GEMV from memory, the GEMM's
    packing passes and the top-k's dense blocks and sample gather: NaN, infinite, not a number or
    negative is refused with the file and the field named (exit 2)."""
    text = (Path(__file__).parents[1] / "results" / "measured" / "cpu" / "host.yaml").read_text()
    lines = [ln for ln in text.splitlines() if ln.strip().startswith(f"{key}:")]
    assert lines, key
    indent = lines[0][: len(lines[0]) - len(lines[0].lstrip())]
    path = tmp_path / "host.yaml"
    path.write_text(text.replace(lines[0], f"{indent}{key}: {value}", 1))
    with pytest.raises(HardwareError) as info:
        load_hardware(path)
    assert str(path) in str(info.value) and f"device.operators.{field}" in str(info.value)
    _bad(capsys, ["hw", "show", path], f"device.operators.{field}")


def test_non_utf8_and_binary_user_hardware_files_do_not_break_other_commands(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "home" / "hardware"
    folder.mkdir(parents=True)
    (folder / "latin.yaml").write_bytes("name: latin\ndescription: caf\u00e9\n".encode("latin-1"))
    (folder / "blob.yaml").write_bytes(bytes(range(256)) * 4)
    monkeypatch.setenv("HWSIM_HOME", str(tmp_path / "home"))
    assert load_hardware("t3-gpu").name == "t3-gpu"  # a stranger's file does not stop a preset from loading
    assert main(["hw", "list", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)["tables"][0]["rows"]
    unreadable = {r[0]: r[3] for r in rows if str(r[3]).startswith("unreadable")}
    assert "not UTF-8 text (byte 0xe9 at offset" in unreadable["latin"]
    assert "binary file (NUL byte at offset 0)" in unreadable["blob"]
    _bad(capsys, ["hw", "show", "latin"], "latin.yaml: hardware file is not UTF-8 text (byte 0xe9 at offset 28)")


def test_results_file_faults_name_the_file(tmp_path, capsys):
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"schema": "caf\xe9"}')
    _bad(capsys, ["compare", latin], f"{latin}: results file is not UTF-8 text (byte 0xe9 at offset 15)")
    good = Record("s", {"x": 1}, "latency_s", 1.0, "s", "simulated", "t3-gpu").to_dict()
    for bad, fragment in [({**good, "value": float("nan")}, "value must be a finite number"),
                          ({**good, "value": 10**400}, "field 'value' is too large"),
                          ({**good, "case": {"x": float("inf")}}, "field 'case.x' must be finite"),
                          ({**good, "provenance": {"packages": 5, "host": 3}}, None)]:
        path = tmp_path / "r.json"
        path.write_text(json.dumps({"schema": "hwsim.results/1", "provenance": None, "records": [bad]}))
        if fragment is None:  # provenance is informational: a wrong type is kept as text, not fatal
            assert read_results(path)[0].provenance.host == "3"
            continue
        with pytest.raises(RecordsError, match=fragment) as info:
            read_results(path)
        assert str(path) in str(info.value) and "records[0]" in str(info.value)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(RecordsError, match="nested too deeply"):
        read_results(deep)


@pytest.mark.parametrize("param,fragment", [
    ("load=.nan", "--param: load: value nan must be a finite number"),
    ("mean_size_bytes=.inf", "--param: mean_size_bytes: value inf must be a finite number"),
    ("mean_size_bytes=1e400", "value inf must be a finite number"),
    ("flows=[1]", "must be a string, number or boolean"),
])
def test_nan_and_inf_parameters_refused_before_running(capsys, param, fragment):
    _bad(capsys, ["suite", "run", "link-sharing", "--quick", "--param", param], fragment)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_parameter_check_refuses_non_finite_numbers(value):
    """The library path (a suite called with ctx.params directly) refuses them too."""
    with pytest.raises(registry.SuiteError, match="expected a finite number"):
        Parameter(1.0, "a float").check("scale", value, "here")


def test_corrupt_routing_npz_is_a_placement_error_naming_the_file(tmp_path):
    from hwsim.placement.routing import load_routing

    for name, data in [("trunc.npz", b"PK\x03\x04" + b"\x00" * 20), ("text.npz", b"not a zip at all"), ("empty.npz", b"")]:
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(PlacementError) as info:
            load_routing(path)
        assert str(path) in str(info.value)
    path = tmp_path / "missing.npz"
    np.savez(path, num_experts=np.array(8))
    with pytest.raises(PlacementError, match="missing arrays"):
        load_routing(path)


# --- 2. output paths before work; results per suite; file modes ------------------------------------------------

def _output_cases(tmp_path: Path) -> dict[str, Path]:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    folder = tmp_path / "folder"
    folder.mkdir()
    return {"directory": folder, "under a file": a_file / "out.json", "unwritable": Path("/proc/hwsim-no/out.json")}


@pytest.mark.parametrize("kind", ["directory", "under a file", "unwritable"])
def test_bad_output_paths_fail_before_any_work(tmp_path, capsys, doubles, kind):
    out = _output_cases(tmp_path)[kind]
    problem = tmp_path / "p.yaml"
    problem.write_text(PROBLEM)
    results = tmp_path / "r.json"
    write_results(results, [Record("s", {}, "latency_s", 1.0, "s", "simulated", "hw")])
    grid = tmp_path / "grid.yaml"
    grid.write_text("axes: {x: [1, 2]}\n")
    fragments = {"directory": "is a directory", "under a file": "is a file, so nothing can be written under it",
                 "unwritable": "cannot"}
    commands = [["suite", "run", doubles.name, "--out", out],
                ["suite", "run", doubles.name, "--out", tmp_path / "ok.json", "--trace", out],
                ["compare", results, "--out", out],
                ["place", "--solver", "eplb", "--problem", problem, "--out", out],
                ["hw", "calibrate", "--quick", "--no-gpu", "--out", out]]
    if kind != "directory":  # a sweep's and validate's --out is a folder
        commands.append(["sweep", doubles.name, "--grid", grid, "--out", out, "--executor", "serial"])
        commands.append(["validate", "--quick", "--out", out])
    for argv in commands:
        _bad(capsys, argv, fragments[kind])
    assert Counting.runs == 0  # every check came before any case ran


def test_sweep_out_that_is_a_file(tmp_path, capsys, doubles):
    grid = tmp_path / "grid.yaml"
    grid.write_text("axes: {x: [1, 2]}\n")
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    _bad(capsys, ["sweep", doubles.name, "--grid", grid, "--out", a_file, "--executor", "serial"], "is a file; give a folder")
    assert Counting.runs == 0


def test_suite_run_all_keeps_earlier_files_when_a_later_suite_fails(tmp_path, capsys, doubles, monkeypatch):
    from hwsim.suites import cli

    monkeypatch.setattr(cli, "suite_targets", lambda: {COUNTING.name: ("", "test"), FAILING.name: ("", "test")})
    assert main(["suite", "run", "all", "--out", str(tmp_path / "all")]) == SimulationError.exit_code
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "hwsim: error: this suite always fails, on purpose" and "Traceback" not in "".join(err)
    assert [r.metric for r in read_results(tmp_path / "all" / f"{COUNTING.name}.json")] == ["square", "draw"]
    assert not (tmp_path / "all" / f"{FAILING.name}.json").exists()


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_result_files_honour_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = write_results(tmp_path / "r.json", [Record("s", {}, "latency_s", 1.0, "s", "simulated", "hw")])
        text = write_text_atomic(tmp_path / "t.md", "x\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert stat.S_IMODE(text.stat().st_mode) == mode


# --- 3. grids checked before the first case; seeds from filled-in params ---------------------------------------

@pytest.mark.parametrize("text,fragment", [
    ("axes: {load: [.nan]}\n", "axes.load[0]: value nan must be a finite number"),
    ("axes: {load: [.inf]}\n", "axes.load[0]: value inf must be a finite number"),
    ("axes: {mean_size_bytes: ['1e400']}\n", "value inf must be a finite number"),
    ("fixed: {flows: 100000000000000000000000000000}\n", "fixed.flows: value"),
    ("hardware: no-such-gpu\naxes: {load: [0.5]}\n", "field 'hardware': unknown hardware 'no-such-gpu'"),
    ("axes: {hardware: [t3-gpu, no-such-gpu]}\n", "axes.hardware[1]: unknown hardware 'no-such-gpu'"),
    ("axes: {lod: [0.5]}\n", "has no parameter 'lod'"),
])
def test_grid_faults_stop_even_list(tmp_path, capsys, text, fragment):
    grid = tmp_path / "grid.yaml"
    grid.write_text(text)
    err = _bad(capsys, ["sweep", "link-sharing", "--grid", grid, "--list"], fragment)
    assert str(grid) in err


def test_unknown_metric_of_a_declaring_suite_fails_before_running(tmp_path, capsys, doubles):
    grid = tmp_path / "grid.yaml"
    grid.write_text("metric: latency_s\naxes: {x: [1, 2]}\n")
    _bad(capsys, ["sweep", DECLARED.name, "--grid", grid, "--list"], "reports no metric 'latency_s' (it reports: draw, square)")
    grid.write_text("axes: {x: [1, 2]}\n")
    _bad(capsys, ["sweep", DECLARED.name, "--grid", grid, "--metric", "latency_s", "--executor", "serial",
                  "--out", tmp_path / "out"], "--metric: suite 'bad-input-declared' reports no metric 'latency_s'")
    assert Counting.runs == 0


def test_unknown_metric_of_an_undeclaring_suite_stops_after_the_first_case(tmp_path, capsys, doubles):
    grid = tmp_path / "grid.yaml"
    grid.write_text("axes: {x: [1, 2, 3, 4]}\n")
    out = tmp_path / "out"
    _bad(capsys, ["sweep", COUNTING.name, "--grid", grid, "--metric", "latency_s", "--executor", "serial", "--out", out],
         "its first case reported: draw, square")
    assert Counting.runs == 1
    assert len(list((out / "cases").glob("*.json"))) == 1  # the finished case is kept
    # a rerun learns it from the finished case, before running anything
    _bad(capsys, ["sweep", COUNTING.name, "--grid", grid, "--metric", "latency_s", "--executor", "serial", "--out", out],
         "reports no metric 'latency_s'")
    assert Counting.runs == 1


def test_spelling_out_a_default_changes_neither_seed_nor_records(tmp_path, doubles):
    link = registry.get_suite("link-sharing")
    plain = expand({"axes": {"load": [0.5]}}, "a.yaml", link).cases[0]
    spelled = expand({"axes": {"load": [0.5], "weights": [1], "hardware": ["t3-gpu"]}}, "b.yaml", link).cases[0]
    assert (plain.seed, plain.case_id) == (spelled.seed, spelled.case_id)
    assert plain.params != spelled.params  # what the grid said is kept for slugs and tables
    other = expand({"axes": {"load": [0.5], "weights": [2]}}, "c.yaml", link).cases[0]
    assert other.seed != plain.seed
    # and a whole run: the same records, bit for bit
    a = run_sweep(expand({"cases": [{"x": 3}]}, "a.yaml", doubles), tmp_path / "a", SerialBackend(), progress=False)
    b = run_sweep(expand({"cases": [{"x": 3, "scale": 1.0}]}, "b.yaml", doubles), tmp_path / "b", SerialBackend(),
                  progress=False)
    assert [(r.metric, r.value) for r in a.records] == [(r.metric, r.value) for r in b.records]
    with pytest.raises(SweepError, match="appears twice"):  # within one grid the two spellings are one case
        expand({"cases": [{"x": 3}, {"x": 3, "scale": 1.0}]}, "d.yaml", doubles)


def test_grid_file_that_is_binary(tmp_path, capsys):
    grid = tmp_path / "grid.yaml"
    grid.write_bytes(b"axes:\n\x00\x01")
    _bad(capsys, ["sweep", "link-sharing", "--grid", grid, "--list"], "grid file is a binary file (NUL byte at offset 6)")
    with pytest.raises(SweepError):
        read_grid_file(grid)


# --- place ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("extra,fragment", [
    (["--option", "time_limit_s=abc"], "time_limit_s is a time in seconds and must be a number above 0"),
    (["--option", "time_limit_s=-1"], "time_limit_s is a time in seconds and must be a number above 0"),
    (["--option", "time_limit_s=.nan"], "must be a finite number"),
    (["--option", "gap_rel=2"], "gap_rel is a relative gap"),
])
def test_place_options(tmp_path, capsys, extra, fragment):
    problem = tmp_path / "p.yaml"
    problem.write_text(PROBLEM)
    _bad(capsys, ["place", "--solver", "moetuner", "--problem", problem, *extra], fragment)


@pytest.mark.parametrize("text,fragment", [
    ("gpus: 2\ncapacity: 2\nloads: [[0, 0, 0, 0], [0, 0, 0, 0]]\n", "every load is zero"),
    ("gpus: 2\ncapacity: 2\nintra_node_cost: .nan\nloads: [[1, 2]]\n", "field 'intra_node_cost' must be a finite number"),
    ("gpus: 100000000000\ncapacity: 2\nloads: [[1, 2]]\n", "field 'gpus' must be between 1 and 65536"),
    ("gpus: 2\ncapacity: 4\nsynthetic: {layers: 3, experts: 8, zipf_s: 1, concentration: 0.5, token_slots: -5}\n",
     "synthetic.token_slots must be a whole number from 1 to 100000000, got -5"),
    ("gpus: 2\ncapacity: 4\nsynthetic: {layers: a, experts: 8, zipf_s: 1, concentration: 0.5, token_slots: 5}\n",
     "synthetic.layers must be a whole number"),
    ("gpus: 2\ncapacity: 4\nsynthetic: {layers: 3, experts: 8, zipf_s: .nan, concentration: 0.5, token_slots: 5}\n",
     "synthetic.zipf_s must be a number from 0 to 100, got nan"),
    ("gpus: 2\ncapacity: 4\nsynthetic: {layers: 3, experts: 8, zipf_s: 1, concentration: 2, token_slots: 5}\n",
     "synthetic.concentration must be a number from 0 to 1, got 2"),
    ("gpus: 2\ncapacity: 4\nsynthetic: {layers: 3, experts: 8, zipf_s: 1, concentration: 0.5, token_slots: 5, seed: -1}\n",
     "synthetic.seed must be a whole number from 0"),
    ("gpus: 2\ncapacity: 4000\nsynthetic: {layers: 1000, experts: 4000, zipf_s: 1, concentration: 0.5, token_slots: 5}\n",
     "expert pairs is more than the 67108864 routing entries"),
])
def test_place_problem_faults_in_plain_words(tmp_path, capsys, text, fragment):
    problem = tmp_path / "p.yaml"
    problem.write_text(text)
    err = _bad(capsys, ["place", "--solver", "eplb", "--problem", problem], fragment)
    assert "int()" not in err and "n < 0" not in err  # no Python internals


def test_a_layer_without_tokens_is_balanced_not_nan(tmp_path, capsys):
    problem = tmp_path / "p.yaml"
    problem.write_text("gpus: 2\ncapacity: 2\nloads: [[0, 0, 0, 0], [1, 8, 6, 1]]\n")
    assert main(["place", "--solver", "eplb", "--problem", str(problem)]) == 0
    captured = capsys.readouterr()
    assert "nan" not in captured.out and "RuntimeWarning" not in captured.err


# --- a few through a real process: exit code, one line, no traceback ------------------------------------------

def test_subprocess_bad_inputs_are_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "HWSIM_HOME": str(tmp_path / "home")}
    (tmp_path / "home" / "hardware").mkdir(parents=True)
    (tmp_path / "home" / "hardware" / "latin.yaml").write_bytes(b"name: x\n# \xe9\n")
    grid = tmp_path / "g.yaml"
    grid.write_text("axes: {load: [.nan]}\n")
    for argv in (["hw", "show", "latin"], ["sweep", "link-sharing", "--grid", str(grid), "--list"],
                 ["compare", str(tmp_path), "--out", str(tmp_path)]):
        proc = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m", "hwsim", *argv], check=False,
                              capture_output=True,
                              text=True, env=env, cwd=tmp_path, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr


# --- the CLI matrix: each command x each kind of bad input -> exit 2, one line, no traceback --------------------

def _matrix_files(tmp: Path) -> dict[str, dict[str, Path]]:
    """For each input kind, the file each command reads (hardware, grid, problem, results)."""
    results = Record("s", {"x": 1}, "latency_s", 1.0, "s", "simulated", "hw").to_dict()
    good = {"hw": T3_GPU, "grid": "axes: {load: [0.5]}\n", "problem": PROBLEM,
            "results": json.dumps({"schema": "hwsim.results/1", "provenance": None, "records": [results]})}
    bad_text = {
        "nan": {"hw": T3_GPU.replace("bandwidth: 1 TB/s", "bandwidth: .nan"), "grid": "axes: {load: [.nan]}\n",
                "problem": "gpus: 2\ncapacity: 2\nloads: [[.nan, 1]]\n",
                "results": good["results"].replace('"value": 1.0', '"value": NaN')},
        "malformed": {"hw": T3_GPU.replace("  kind: gpu", "  kind: [gpu"), "grid": "axes: {load: [0.5\n",
                      "problem": "gpus: 2\ncapacity: 2\nloads: [[1, 2], 3]\n",
                      "results": good["results"].replace('"records": [', '"records": [1, ')},
        "negative": {"hw": T3_GPU.replace("capacity: 32 GB", "capacity: -32 GB"), "grid": "axes: {mean_size_bytes: [-1]}\n",
                     "problem": "gpus: 2\ncapacity: 2\nloads: [[1, -2]]\n",
                     "results": good["results"].replace('"case": {"x": 1}', '"case": {"x": [1]}')},
    }
    files: dict[str, dict[str, Path]] = {}
    for kind in ("non-utf8", "binary", *bad_text):
        folder = tmp / kind
        folder.mkdir()
        files[kind] = {}
        for what, text in good.items():
            path = folder / f"{what}.{'json' if what == 'results' else 'yaml'}"
            if kind == "non-utf8":
                path.write_bytes(text.encode() + "# caf\u00e9\n".encode("latin-1"))
            elif kind == "binary":
                path.write_bytes(b"\x00\x01\x02" + text.encode())
            else:
                path.write_text(bad_text[kind][what])
            files[kind][what] = path
    return files


INPUT_COMMANDS = {
    "hw show": lambda f: ["hw", "show", f["hw"]],
    "suite run --hw": lambda f: ["suite", "run", "link-sharing", "--quick", "--hw", f["hw"]],
    "sweep --grid": lambda f: ["sweep", "link-sharing", "--grid", f["grid"], "--list"],
    "place --problem": lambda f: ["place", "--solver", "eplb", "--problem", f["problem"]],
    "compare": lambda f: ["compare", f["results"]],
}


def test_cli_matrix_of_bad_inputs(tmp_path, capsys):
    files = _matrix_files(tmp_path)
    failures = []
    for kind, paths in files.items():
        for name, build in INPUT_COMMANDS.items():
            argv = [str(a) for a in build(paths)]
            code = main(argv)
            err = capsys.readouterr().err.strip()
            ok = code == EXIT_BAD_INPUT and len(err.splitlines()) == 1 and err.startswith("hwsim: error:") \
                and "Traceback" not in err
            if not ok:
                failures.append(f"{name} x {kind}: exit {code}: {err[-300:]}")
    assert not failures, "\n".join(failures)


def test_cli_matrix_of_bad_sizes_and_infeasible_problems(tmp_path, capsys):
    infeasible = tmp_path / "p.yaml"
    infeasible.write_text("gpus: 2\ncapacity: 1\nloads: [[1, 2, 3]]\n")  # 3 experts (n) on 2 slots (k): k < n
    for argv, fragment in [
        (["suite", "run", "link-sharing", "--quick", "--param", "mean_size_bytes=-1"], "must be at least 1"),
        (["suite", "run", "link-sharing", "--quick", "--param", "flows=-5"], "must be at least 10"),
        (["suite", "run", "link-sharing", "--quick", "--param", "load=2"], "must be at most 0.99"),
        (["place", "--solver", "moetuner", "--problem", infeasible], "infeasible: 3 experts per layer do not fit"),
        (["place", "--solver", "eplb", "--problem", infeasible], "infeasible"),
    ]:
        _bad(capsys, argv, fragment)


def test_calibrate_checks_the_user_hardware_folder_before_measuring(tmp_path, monkeypatch, capsys):
    home = tmp_path / "home-is-a-file"
    home.write_text("x")
    monkeypatch.setenv("HWSIM_HOME", str(home))
    _bad(capsys, ["hw", "calibrate", "--quick", "--no-gpu"], "is a file, so nothing can be written under it")


# --- 4. Ctrl-C as a terminal sends it: SIGINT to the whole process group -------------------------------------

def _dask_available() -> bool:
    from hwsim.suites.sweep.executors import dask_available
    return dask_available()


@pytest.mark.parametrize("executor", [
    "process", pytest.param("dask", marks=pytest.mark.skipif(not _dask_available(), reason="dask is not installed"))])
def test_ctrl_c_on_a_parallel_sweep_is_one_quiet_line(tmp_path, executor):
    """Workers hear the terminal's SIGINT too; they must not print tracebacks (issue 11: ~65 lines before).
    The sweep starts with SIGINT at its default, as from a terminal: a shell that starts the test run
    in the background passes SIGINT on ignored, and the sweep would then finish undisturbed (exit 0)."""
    import signal
    import time

    doc = {"fixed": {"flows": 12000}, "axes": {"load": [0.5, 0.6, 0.7, 0.8], "hw.topology.link.bandwidth": ["50 GB/s", "150 GB/s"]},
           "zip": [{"size_dist": ["exponential", "lognormal"], "mean_size_bytes": [1e6, 4e6]}]}
    grid = tmp_path / "grid.yaml"
    grid.write_text(json.dumps(doc))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "hwsim", "sweep", "link-sharing", "--grid", str(grid), "--out", str(out),
                             "--executor", executor, "--workers", "2"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        if list((out / "cases").glob("*--*[0-9a-f].json")):
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=90)
    finished = list((out / "cases").glob("*--*[0-9a-f].json"))
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["hwsim: interrupted; files already written are complete"], err
    assert finished and all(read_results(p) for p in finished)  # finished cases kept, whole
