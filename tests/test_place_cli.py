"""``hwsim place``: problem files, solver options and one-line errors."""

from __future__ import annotations

import json

import pytest

from hwsim.suites.cli import main


def _write(tmp_path, text, name="p.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _error(capsys, argv, fragment):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("hwsim: error:") and fragment in err, err
    assert "\n" not in err and "Traceback" not in err


def test_place_solves_and_writes_json(tmp_path, capsys):
    problem = _write(tmp_path, "gpus: 2\ncapacity: 2\nintra_node_cost: 0.5\nloads: [[8, 1, 1, 6], [1, 8, 6, 1]]\n"
                               "routing: [[[0, 8, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [1, 0, 5, 0]]]\n")
    out = tmp_path / "out.json"
    assert main(["place", "--solver", "moetuner", "--problem", str(problem), "--out", str(out),
                 "--option", "method=joint", "--option", "time_limit_s=20"]) == 0
    doc = json.loads(out.read_text())
    assert doc["solver"] == "moetuner" and doc["info"]["gap"] == pytest.approx(0.0, abs=1e-9)
    gpus = [[e["gpus"][0] for e in layer] for layer in doc["layers"]]
    # the two heavy experts of each layer are split across the GPUs
    assert gpus[0][0] != gpus[0][3] and gpus[1][1] != gpus[1][2]
    assert "gap 0.00%" in capsys.readouterr().out


def test_place_synthetic_problem(tmp_path):
    problem = _write(tmp_path, "gpus: 4\ncapacity: 3\nsynthetic: {layers: 3, experts: 8, zipf_s: 1.0, "
                               "concentration: 0.5, token_slots: 1000, seed: 2}\n")
    assert main(["place", "--solver", "eplb", "--problem", str(problem)]) == 0


def test_infeasible_capacity_is_one_line(tmp_path, capsys):
    problem = _write(tmp_path, '{"gpus": 2, "capacity": 1, "loads": [[1, 2, 3]]}', "p.json")
    _error(capsys, ["place", "--solver", "moetuner", "--problem", str(problem)],
           "infeasible: 3 experts per layer do not fit on 2 GPUs x capacity 1")


@pytest.mark.parametrize("text,fragment", [
    ("gpus: 2\nloads: [[1, 2]]\n", "missing required field 'capacity'"),
    ("gpus: 2\ncapacity: 1\ncolour: red\nloads: [[1, 2]]\n", "unknown field(s) ['colour']"),
    ("gpus: two\ncapacity: 1\nloads: [[1, 2]]\n", "field 'gpus' must be an integer"),
    ("gpus: 2\ncapacity: 1\nloads: [[1, -2]]\n", "loads must be >= 0"),
    ("gpus: 2\ncapacity: 1\nloads: [[1, 2\n", "malformed YAML at line"),
    ("- 1\n- 2\n", "top level must be a mapping"),
])
def test_bad_problem_files(tmp_path, capsys, text, fragment):
    _error(capsys, ["place", "--solver", "greedy", "--problem", str(_write(tmp_path, text))], fragment)


def test_unknown_solver_and_bad_option(tmp_path, capsys):
    problem = _write(tmp_path, "gpus: 2\ncapacity: 1\nloads: [[1, 2]]\n")
    _error(capsys, ["place", "--solver", "nope", "--problem", str(problem)], "unknown placement solver 'nope'")
    _error(capsys, ["place", "--solver", "greedy", "--problem", str(problem), "--option", "x=1"], "rejects options ['x']")
    _error(capsys, ["place", "--solver", "moetuner", "--problem", str(problem), "--option", "speed=9"], "rejects options")


def test_place_from_routing_evaluates_and_prints_json(capsys):
    from hwsim.placement.routing import routing_file

    arxiv, github = routing_file("mixtral-8x7b", "arxiv"), routing_file("mixtral-8x7b", "github")
    assert main(["place", "--solver", "moetuner-replicate", "--routing", str(arxiv), "--evaluate", str(arxiv),
                 str(github), "--json", "--option", "time_limit_s=2"]) == 0
    doc = json.loads(capsys.readouterr().out)  # nothing but JSON on stdout (no solver banner)
    assert [e["file"] for e in doc["evaluate"]] == [str(arxiv), str(github)]
    for e in doc["evaluate"]:
        assert e["speedup_vs_contiguous"] == pytest.approx(e["contiguous_time_s"] / e["time_s"] - 1)
        assert 0 < e["token_tail_s"] < e["time_s"]


def test_place_routing_errors_name_the_file(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"junk")
    _error(capsys, ["place", "--solver", "greedy", "--routing", str(bad)], "bad.npz")
    problem = _write(tmp_path, "gpus: 2\ncapacity: 1\nloads: [[1, 2]]\n")
    _error(capsys, ["place", "--solver", "greedy", "--problem", str(problem), "--evaluate", str(bad)], "--evaluate needs --routing")
