"""The command line: one clear line and a non-zero exit for every user error, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from hwsim.records import Record, write_results
from hwsim.suites.cli import main


def _one_line_error(capsys, argv, fragment):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert err.startswith("hwsim: error:") and fragment in err
    assert "\n" not in err and "Traceback" not in err


def test_unknown_hardware(capsys):
    _one_line_error(capsys, ["hw", "show", "no-such-gpu"], "unknown hardware 'no-such-gpu'")


def test_unknown_suite(capsys):
    _one_line_error(capsys, ["suite", "run", "no-such-suite"], "unknown suite 'no-such-suite'")


def test_bad_yaml(capsys, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ndevice: [1, 2\n")
    _one_line_error(capsys, ["hw", "show", str(path)], "malformed YAML")


def test_bad_results_file(capsys, tmp_path):
    path = tmp_path / "r.json"
    path.write_text("[]")
    _one_line_error(capsys, ["compare", str(path)], "not an hwsim results file")


def test_hw_list_and_show(capsys):
    assert main(["hw", "list"]) == 0
    assert "t3-gpu" in capsys.readouterr().out
    assert main(["hw", "show", "t3-gpu"]) == 0
    out = capsys.readouterr().out
    assert "1.4 GHz" in out and "150 GB/s" in out and "500 ns" in out


def test_compare_markdown_to_file(capsys, tmp_path):
    sim = Record("toy", {"n": 1}, "time", 2.0, "s", "simulated", "cpu")
    meas = Record("toy", {"n": 1}, "time", 1.6, "s", "measured", "cpu")
    a, b = write_results(tmp_path / "a.json", [sim]), write_results(tmp_path / "b.json", [meas])
    assert main(["compare", str(a), str(b), "--format", "json", "--out", str(tmp_path / "c.json")]) == 0
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["summary"]["median_abs_rel_error"] == pytest.approx(0.25)


def test_console_script_runs_as_a_process():
    done = subprocess.run([sys.executable, "-m", "hwsim.suites.cli", "hw", "show", "nope"], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
