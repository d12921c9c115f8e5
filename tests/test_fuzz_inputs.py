"""Fuzz every input format (issue 11): a mutated valid file is accepted or refused with hwsim's own error naming it.

Mutations: bytes flipped, inserted (NUL, non-UTF-8) or cut off; numbers replaced by NaN, infinity,
overflow, negative, zero, fractional and huge values; fields removed; values swapped for another type.
Whatever comes out, the loader must either return or raise an :class:`hwsim.errors.HwsimError`
whose message contains the file's path, never another exception. Examples are bounded so CI stays fast.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwsim.errors import HwsimError
from hwsim.hardware.loader import PRESET_DIR, load_hardware_file
from hwsim.records import Provenance, Record, read_results, write_results
from hwsim.suites import registry
from hwsim.suites.place import load_problem
from hwsim.suites.sweep import expand, read_grid_file

EXAMPLES = int(os.environ.get("HWSIM_FUZZ_EXAMPLES", "60"))  # CI: 60 each; raise it locally to dig deeper
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=os.environ.get("HWSIM_FUZZ_RANDOM") is None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

BAD_NUMBERS = [".nan", ".inf", "-.inf", "NaN", "Infinity", "1e400", "-1", "0", "0.5", "-0.0", "1e30",
               "99999999999999999999999999999", "1" + "0" * 400, "1e400 B/s", "-5 GB"]
WEIRD_VALUES: list[Any] = [None, "", "x", [], {}, True, [1, 2], {"a": 1}, float("nan"), float("inf"), -1, 0, 0.5,
                           10**30, 10**400, "1e400 B/s", "0.5 B", "\u00e9"]
_NUMBER_TOKEN = re.compile(rb"-?\d+(\.\d+)?([eE][-+]?\d+)?")


# --- mutations --------------------------------------------------------------------------------------------------

def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value in a parsed document (mapping keys and list indices)."""
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _paths(value, (*prefix, i))
    return found


def _structural(document: Any, dump: Callable[[Any], str]) -> st.SearchStrategy[bytes]:
    """Remove a field or replace a value by one of another type or a bad number, then dump the document again."""
    paths = _paths(document)

    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        doc = json.loads(json.dumps(document))  # a deep copy
        path = draw(st.sampled_from(paths))
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(st.sampled_from(WEIRD_VALUES))
        return dump(doc).encode("utf-8")

    return mutate()


def _textual(valid: bytes) -> st.SearchStrategy[bytes]:
    """Byte-level damage: flip, insert (NUL, Latin-1, invalid UTF-8), cut off; or one number made bad."""
    n = len(valid)
    numbers = [m.span() for m in _NUMBER_TOKEN.finditer(valid)]
    flip = st.tuples(st.integers(0, n - 1), st.integers(1, 255)).map(
        lambda a: valid[:a[0]] + bytes([valid[a[0]] ^ a[1]]) + valid[a[0] + 1:])
    insert = st.tuples(st.integers(0, n), st.sampled_from([b"\x00", b"\xe9", b"\xff\xfe", b"\xc3", b"\t", b"\n-", b"{"])).map(
        lambda a: valid[:a[0]] + a[1] + valid[a[0]:])
    cut = st.integers(0, n - 1).map(lambda i: valid[:i])
    options = [flip, insert, cut]
    if numbers:
        options.append(st.tuples(st.sampled_from(numbers), st.sampled_from(BAD_NUMBERS)).map(
            lambda a: valid[:a[0][0]] + a[1].encode() + valid[a[0][1]:]))
    return st.one_of(options)


def mutations(valid: bytes, document: Any, dump: Callable[[Any], str]) -> st.SearchStrategy[bytes]:
    return st.one_of(_textual(valid), _structural(document, dump))


def _yaml_dump(doc: Any) -> str:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def _json_dump(doc: Any) -> str:
    return json.dumps(doc)  # NaN and Infinity written as JavaScript does: what a careless tool produces


def accepts_or_names_the_file(load: Callable[[Path], Any], path: Path, data: bytes) -> None:
    path.write_bytes(data)
    try:
        load(path)
    except HwsimError as exc:
        message = str(exc)
        assert str(path) in message, f"error does not name the file: {message}"
        assert "\n" not in message.strip(), f"error is not one line: {message}"


# --- the formats ------------------------------------------------------------------------------------------------

HARDWARE = (PRESET_DIR / "t3-gpu.yaml").read_bytes()
GRID = b"""hardware: t3-gpu
quick: true
seed: 3
metric: mean_fct_s
fixed: {flows: 200}
axes:
  load: [0.5, 0.7]
  hw.topology.link.bandwidth: ["50 GB/s", "150 GB/s"]
zip:
  - {size_dist: [exponential, lognormal], mean_size_bytes: [1.0e+6, 2.0e+6]}
cases:
  - {load: 0.9, weights: 2}
"""
PROBLEM_YAML = b"""gpus: 4
capacity: 2
gpus_per_node: 2
intra_node_cost: 0.01
inter_node_cost: 0.1
loads: [[8, 1, 1, 6], [1, 8, 6, 1]]
routing: [[[0, 8, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [1, 0, 5, 0]]]
"""
PROBLEM_SYNTHETIC = b"gpus: 4\ncapacity: 3\nsynthetic: {layers: 3, experts: 8, zipf_s: 1.0, concentration: 0.5, token_slots: 1000, seed: 2}\n"


def _results_records() -> tuple[list[Record], Provenance]:
    prov = Provenance("2026-01-01T00:00:00+00:00", "host", "Linux x86_64", "3.11", "abc", {"numpy": "2.0"})
    records = [Record("t3", {"model": "gpt2", "tp": 8}, "latency_s", 1.5e-3, "s", "simulated", "t3-gpu", prov),
               Record("t3", {"model": "gpt2", "tp": 8}, "latency_s", 1.4e-3, "s", "paper", "t3-gpu", prov,
                      citation="T3 (ASPLOS'24) Fig. 12"),
               Record("t3", {"model": "gpt2", "tp": 8}, "bytes_moved_bytes", 1e9, "B", "measured", "host", None, note="n")]
    return records, prov


def _grid_loader(path: Path) -> Any:
    return expand(read_grid_file(path), str(path), registry.get_suite("link-sharing"))


def _numbers(node: Any) -> list[float]:
    """Every number in a dataclass tree (what a suite will compute with)."""
    if dataclasses.is_dataclass(node):
        return [x for f in dataclasses.fields(node) for x in _numbers(getattr(node, f.name))]
    if isinstance(node, dict):
        return [x for v in node.values() for x in _numbers(v)]
    return [float(node)] if isinstance(node, (int, float)) and not isinstance(node, bool) else []


@given(data=mutations(HARDWARE, yaml.safe_load(HARDWARE), _yaml_dump))
@FUZZ
def test_fuzz_hardware_yaml(tmp_path, data):
    path = tmp_path / "hw.yaml"
    accepts_or_names_the_file(load_hardware_file, path, data)
    try:
        hw = load_hardware_file(path)
    except HwsimError:
        return
    assert all(math.isfinite(x) and x >= 0 for x in _numbers(hw))  # accepted means usable: no NaN, inf, negative


@given(data=mutations(GRID, yaml.safe_load(GRID), _yaml_dump))
@FUZZ
def test_fuzz_grid_yaml(tmp_path, data):
    accepts_or_names_the_file(_grid_loader, tmp_path / "grid.yaml", data)


@given(data=st.one_of(mutations(PROBLEM_YAML, yaml.safe_load(PROBLEM_YAML), _yaml_dump),
                      mutations(PROBLEM_SYNTHETIC, yaml.safe_load(PROBLEM_SYNTHETIC), _yaml_dump)))
@FUZZ
def test_fuzz_problem_yaml(tmp_path, data):
    accepts_or_names_the_file(load_problem, tmp_path / "problem.yaml", data)


PROBLEM_JSON = json.dumps(yaml.safe_load(PROBLEM_YAML)).encode()


@given(data=mutations(PROBLEM_JSON, json.loads(PROBLEM_JSON), _json_dump))
@FUZZ
def test_fuzz_problem_json(tmp_path, data):
    accepts_or_names_the_file(load_problem, tmp_path / "problem.json", data)


@pytest.fixture(scope="module")
def results_file(tmp_path_factory) -> bytes:
    records, prov = _results_records()
    path = tmp_path_factory.mktemp("results") / "r.json"
    write_results(path, records, prov)
    return path.read_bytes()


@given(choice=st.data())
@FUZZ
def test_fuzz_results_json(tmp_path, results_file, choice):
    data = choice.draw(mutations(results_file, json.loads(results_file), _json_dump))
    path = tmp_path / "results.json"
    accepts_or_names_the_file(read_results, path, data)
    try:
        records = read_results(path)
    except HwsimError:
        return
    assert all(math.isfinite(r.value) for r in records)  # accepted means usable: no NaN slips through


# --- formats whose loaders other modules own: fuzzed here when importable ------------------------------------

def _trace_loader() -> Callable[[Path], Any] | None:
    from hwsim.workloads import serving

    load = getattr(serving, "load_trace", None) or getattr(serving, "load_azure_trace", None)
    return load


TRACE = (Path(__file__).resolve().parents[1] / "hwsim" / "workloads" / "data" / "traces" / "azure_llm_2023_conv.csv")


def _trace_bytes() -> bytes:
    return b"".join(TRACE.read_bytes().splitlines(keepends=True)[:12]) if TRACE.is_file() else b""


def _csv_rows(data: bytes) -> list[list[str]]:
    return [line.split(",") for line in data.decode().splitlines()]


def _csv_dump(rows: Any) -> str:
    return "\n".join(",".join("" if v is None else str(v) for v in (row if isinstance(row, list) else [row]))
                     for row in (rows if isinstance(rows, list) else [rows])) + "\n"


TRACE_BYTES = _trace_bytes()


def _trace_reads_through_fileio() -> bool:
    import inspect

    from hwsim.workloads import serving
    return "read_text_file" in inspect.getsource(serving)


@pytest.mark.skipif(not TRACE_BYTES or _trace_loader() is None, reason="no trace loader or shipped trace here")
@pytest.mark.xfail(not _trace_reads_through_fileio(), strict=False,
                   reason="the trace loader (hwsim/workloads/serving.py, the flover helper's) does not yet read "
                          "through fileio.read_text_file, so non-UTF-8 bytes escape as UnicodeDecodeError")
@given(data=mutations(TRACE_BYTES, _csv_rows(TRACE_BYTES), _csv_dump))
@FUZZ
def test_fuzz_trace_csv(tmp_path, data):
    load = _trace_loader()
    assert load is not None
    accepts_or_names_the_file(load, tmp_path / "trace.csv", data)


ROUTING = Path(__file__).resolve().parents[1] / "placement" / "data" / "routing" / "olmoe-1b-7b_arxiv.npz"


def _npz_arrays() -> dict[str, np.ndarray]:
    with np.load(ROUTING, allow_pickle=False) as data:
        return {k: np.asarray(data[k]) for k in data.files}


@pytest.mark.skipif(not ROUTING.is_file(), reason="no shipped routing file")
@given(kind=st.sampled_from(["bytes", "arrays"]), choice=st.data())
@FUZZ
def test_fuzz_routing_npz(tmp_path, kind, choice):
    from hwsim.placement.routing import load_routing

    path = tmp_path / "routing.npz"
    if kind == "bytes":
        valid = ROUTING.read_bytes()
        data = choice.draw(_textual(valid))
        accepts_or_names_the_file(load_routing, path, data)
        return
    arrays = _npz_arrays()
    key = choice.draw(st.sampled_from(sorted(arrays)))
    how = choice.draw(st.sampled_from(["drop", "nan", "negative", "scalar", "text", "shape", "huge"]))
    a = arrays[key]
    if how == "drop":
        del arrays[key]
    elif how == "nan":
        arrays[key] = np.full(a.shape, np.nan)
    elif how == "negative":
        arrays[key] = -np.ones(a.shape, dtype=a.dtype if a.dtype.kind in "if" else float)
    elif how == "scalar":
        arrays[key] = np.array(3)
    elif how == "text":
        arrays[key] = np.array(["x"] * max(a.size, 1))
    elif how == "shape":
        arrays[key] = np.zeros((2, 3, 4, 5))
    else:
        arrays[key] = np.full(a.shape if a.ndim else (), 2**62, dtype=np.int64)
    with path.open("wb") as handle:
        np.savez(handle, **arrays)
    accepts_or_names_the_file(load_routing, path, path.read_bytes())
