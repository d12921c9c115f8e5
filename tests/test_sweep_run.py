"""Running sweeps: Dask and pool runs equal a serial run, failures are isolated, a stopped sweep resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sweep_test_suites
from rich.console import Console

from hwsim.records import read_results
from hwsim.suites import registry
from hwsim.suites.cli import main
from hwsim.suites.sweep import expand, run_sweep
from hwsim.suites.sweep.executors import DaskBackend, ProcessBackend, SerialBackend, dask_available, make_backend

REPO = Path(__file__).resolve().parents[1]
# small but real: link-sharing simulates every flow of every case on the engine
LINK_GRID = {
    "fixed": {"flows": 1500},
    "axes": {"load": [0.5, 0.8], "hw.topology.link.bandwidth": ["50 GB/s", "150 GB/s"]},
    "zip": [{"size_dist": ["exponential", "lognormal"], "mean_size_bytes": [1e6, 4e6]}],
    "cases": [{"load": 0.9, "weights": 2}],
}


@pytest.fixture
def flaky(monkeypatch):
    monkeypatch.setitem(registry.BUILTIN_SUITES, sweep_test_suites.FLAKY.name, sweep_test_suites.TARGETS["sweep-test-flaky"])
    return sweep_test_suites.FLAKY


def _quiet() -> Console:
    return Console(file=open(os.devnull, "w"), width=120)


def _rows(records):
    return [r.to_dict(with_provenance=False) for r in records]


def _link_grid(doc=LINK_GRID, **kw):
    return expand(doc, "grid.yaml", registry.get_suite("link-sharing"), **kw)


@pytest.fixture(scope="module")
def serial_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("serial")
    return run_sweep(_link_grid(), out, SerialBackend(), _quiet(), progress=False)


def test_serial_run_writes_one_file_per_case_and_a_merged_file(serial_run):
    grid = serial_run.grid
    assert len(grid.cases) == 9 and not serial_run.failed and len(serial_run.ran) == 9
    files = sorted(p.name for p in serial_run.out.cases_dir.iterdir())
    assert files == sorted(f"{c.file_stem}.json" for c in grid.cases)
    merged = read_results(serial_run.out.merged)
    assert _rows(merged) == _rows(serial_run.records) and len(merged) == 4 * 9
    # the sweep's parameters are in every record's case, so cases stay apart when merged
    assert len({r.key for r in merged}) == len(merged)
    assert {r.case["hw.topology.link.bandwidth_bytes_per_s"] for r in merged if r.case["load"] != 0.9} == {5e10, 1.5e11}
    manifest = json.loads((serial_run.out.root / "sweep.json").read_text())
    assert [c["id"] for c in manifest["cases"]] == [c.case_id for c in grid.cases]


@pytest.mark.skipif(not dask_available(), reason="dask[distributed] is not installed (pip install 'hwsim[dist]')")
def test_local_dask_cluster_equals_serial_record_for_record(serial_run, tmp_path):
    rep = run_sweep(_link_grid(), tmp_path, DaskBackend(workers=2), _quiet(), progress=False)
    assert not rep.failed and sorted(rep.ran) == sorted(c.case_id for c in rep.grid.cases)
    assert _rows(rep.records) == _rows(serial_run.records)


def test_process_pool_equals_serial_record_for_record(serial_run, tmp_path):
    rep = run_sweep(_link_grid(), tmp_path, ProcessBackend(workers=2), _quiet(), progress=False)
    assert _rows(rep.records) == _rows(serial_run.records)


def test_a_case_gives_the_same_records_in_any_grid(serial_run, tmp_path):
    alone = {"cases": [{"mean_size_bytes": 4e6, "hw.topology.link.bandwidth": 150e9, "size_dist": "lognormal",
                        "load": 0.8, "flows": 1500}]}
    rep = run_sweep(_link_grid(alone), tmp_path, SerialBackend(), _quiet(), progress=False)
    [case] = rep.grid.cases
    same = next(c for c in serial_run.grid.cases if c.case_id == case.case_id)
    assert case.seed == same.seed
    assert _rows(rep.records) == _rows(read_results(serial_run.out.result_path(same)))


def test_failing_case_is_recorded_and_the_others_complete(flaky, tmp_path):
    grid = expand({"fixed": {"fail_on": 2}, "axes": {"x": [0, 1, 2, 3, 4]}}, "grid.yaml", flaky)
    rep = run_sweep(grid, tmp_path, ProcessBackend(workers=2), _quiet(), progress=False)
    failed = next(c for c in grid.cases if c.params["x"] == 2)
    assert list(rep.failed) == [failed.case_id]
    assert "ValueError: case x=2 fails on purpose" in rep.failed[failed.case_id]
    error = json.loads(rep.out.error_path(failed).read_text())
    assert error["type"] == "ValueError" and error["case"]["x"] == 2 and "Traceback" in error["traceback"]
    assert sorted(r.value for r in rep.records if r.metric == "square") == [0.0, 1.0, 9.0, 16.0]
    assert not rep.out.result_path(failed).exists()
    # the CLI reports it and exits non-zero; a rerun retries only the failed case
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text("fixed: {fail_on: 2}\naxes: {x: [0, 1, 2, 3, 4]}\n")
    assert main(["sweep", flaky.name, "--grid", str(grid_file), "--out", str(tmp_path), "--executor", "serial"]) == 1


def test_interrupted_case_stops_the_sweep_and_a_rerun_runs_only_the_rest(flaky, tmp_path, monkeypatch):
    grid = expand({"axes": {"x": list(range(6))}}, "grid.yaml", flaky)
    monkeypatch.setenv(sweep_test_suites.INTERRUPT_ENV, "3")
    with pytest.raises(KeyboardInterrupt):
        run_sweep(grid, tmp_path, SerialBackend(), _quiet(), progress=False)
    done_before = {c.case_id for c in grid.cases if (tmp_path / "cases" / f"{c.file_stem}.json").exists()}
    assert done_before == {c.case_id for c in grid.cases[:3]}
    monkeypatch.delenv(sweep_test_suites.INTERRUPT_ENV)
    rep = run_sweep(grid, tmp_path, SerialBackend(), _quiet(), progress=False)
    assert set(rep.skipped) == done_before and rep.ran == [c.case_id for c in grid.cases[3:]]
    assert sorted(r.value for r in rep.records if r.metric == "square") == [x * x for x in range(6)]


@pytest.mark.parametrize("executor, sig", [
    ("serial", signal.SIGKILL),  # the process dies at once, perhaps mid-write
    pytest.param("dask", signal.SIGINT, marks=pytest.mark.skipif(not dask_available(), reason="dask is not installed")),
])
def test_stopped_sweep_process_reruns_only_the_unfinished_cases(executor, sig, tmp_path):
    """Kill the CLI, or Ctrl-C it, mid-sweep: every case file on disk is whole, and the rerun runs exactly the others."""
    grid_file = tmp_path / "grid.yaml"
    # enough cases that the signal always lands midway, even when a busy machine delays it
    doc = {**LINK_GRID, "fixed": {"flows": 12000}, "axes": {**LINK_GRID["axes"], "load": [0.5, 0.6, 0.7, 0.8]}}
    n_cases = len(_link_grid(doc).cases)
    grid_file.write_text(json.dumps(doc))  # JSON is YAML
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "hwsim.suites.cli", "sweep", "link-sharing", "--grid", str(grid_file),
                             "--out", str(out), "--executor", executor, "--workers", "2"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list((out / "cases").glob("*--*[0-9a-f].json"))) >= 2:
            break
        time.sleep(0.02)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    finished = {p.name for p in (out / "cases").glob("*.json")}
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "interrupted" in err
        assert len(read_results(out / "results.json")) == 4 * len(finished)  # merged up to the interrupt
    assert 2 <= len(finished) < n_cases, "the sweep should have been stopped midway"
    for name in finished:
        assert read_results(out / "cases" / name)  # whole files only
    (out / "cases" / f".{sorted(finished)[0]}.abc123.tmp").write_text('{"half": ')  # as a kill mid-write leaves
    grid = _link_grid(doc)
    rep = run_sweep(grid, out, SerialBackend(), _quiet(), progress=False)
    assert not list((out / "cases").glob(".*.tmp"))
    by_file = {f"{c.file_stem}.json": c.case_id for c in grid.cases}
    assert set(rep.skipped) == {by_file[n] for n in finished}
    assert sorted(rep.ran) == sorted(set(by_file.values()) - set(rep.skipped))
    assert len(rep.records) == 4 * n_cases and not rep.failed


def test_cli_sweep_writes_summary_and_figure(tmp_path, capsys):
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text("metric: mean_slowdown\nfixed: {flows: 300}\naxes:\n  load: [0.3, 0.6, 0.9]\n"
                         "  size_dist: [exponential, fixed]\n")
    assert main(["sweep", "link-sharing", "--grid", str(grid_file), "--out", str(tmp_path / "o"), "--executor", "serial"]) == 0
    out = capsys.readouterr().out
    assert "6 of 6 cases done" in out and "line plot of mean_slowdown over load" in out
    assert (tmp_path / "o" / "mean_slowdown.png").stat().st_size > 1000
    summary = (tmp_path / "o" / "summary.md").read_text()
    assert summary.count("| done |") == 6 and "mean_slowdown" in summary
    assert main(["sweep", "link-sharing", "--grid", str(grid_file), "--list"]) == 0
    assert "6 cases of link-sharing" in capsys.readouterr().out


@pytest.mark.parametrize("argv, fragment", [
    (["sweep", "link-sharing", "--grid", "missing.yaml"], "missing.yaml: cannot read grid file"),
    (["sweep", "no-such-suite", "--grid", "g.yaml"], "unknown suite 'no-such-suite'"),
    (["sweep", "link-sharing", "--grid", "{g}", "--workers", "0"], "--workers must be at least 1"),
    (["sweep", "link-sharing", "--grid", "{g}", "--scheduler", "localhost"], "expected an address such as tcp://"),
    (["sweep", "link-sharing", "--grid", "{g}", "--scheduler", "tcp://x:1", "--executor", "process"], "needs the dask executor"),
])
def test_cli_sweep_errors_are_one_line(argv, fragment, tmp_path, capsys):
    grid_file = tmp_path / "g.yaml"
    grid_file.write_text("axes: {load: [0.5]}\n")
    code = main([a.replace("{g}", str(grid_file)) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("hwsim: error:") and fragment in err and "\n" not in err


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not dask_available(), reason="dask[distributed] is not installed (pip install 'hwsim[dist]')")
def test_sweep_on_a_running_dask_cluster_via_scheduler_address(serial_run, tmp_path):
    """The README's multi-machine commands, on one machine: dask scheduler, dask worker, hwsim sweep --scheduler."""
    address = f"tcp://127.0.0.1:{_free_port()}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in [str(REPO), os.environ.get("PYTHONPATH", "")] if p)}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env, "cwd": tmp_path}
    scheduler = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                  "--port", address.rsplit(":", 1)[1], "--no-dashboard"], **quiet)
    worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                               "--no-nanny", "--no-dashboard"], **quiet)  # one process: terminate ends it all
    try:
        from distributed import Client

        with Client(address, timeout="30s") as client:  # wait until the worker has joined
            client.wait_for_workers(1, timeout=30)
        rep = run_sweep(_link_grid(), tmp_path / "out",
                        make_backend("auto", None, address), _quiet(), progress=False)
        assert _rows(rep.records) == _rows(serial_run.records)
    finally:
        for proc in (worker, scheduler):
            proc.terminate()
        for proc in (worker, scheduler):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_where_picks_records_and_overridden_hardware_names_do_not_split_lines(flaky):
    from hwsim.records import Record
    from hwsim.suites.sweep import report

    grid = expand({"axes": {"x": [1, 2]}}, "grid.yaml", flaky)
    records = {}
    for case in grid.cases:
        x = case.params["x"]
        records[case.case_id] = [
            Record(flaky.name, {"x": x, "kernel": k, "hw": f"t3-gpu[topology.devices={x}]"}, "time", float(x * i), "s",
                   "simulated", "t3-gpu")
            for i, k in enumerate(["gemm", "gemv"], start=1)]
    rows = report.metric_rows(grid, records, "time")
    assert sorted({label for _, label, _ in rows}) == ["kernel=gemm", "kernel=gemv"]  # two lines, not four
    shown = report.select(records, {"kernel": "gemv", "hw": "t3-gpu"})
    assert sorted(r.value for rs in shown.values() for r in rs) == [2.0, 4.0]
    assert report.select(records, {"x": "2.0"})[grid.cases[1].case_id] and not report.select(records, {"x": "3"})[grid.cases[1].case_id]
    # a paper's figure beside the simulated one (same case and metric) is never part of a sweep's summary
    case = grid.cases[0]
    records[case.case_id].append(Record(flaky.name, {"x": 1, "kernel": "gemm", "hw": "t3-gpu"}, "time", 99.0, "s", "paper",
                                        "t3-gpu", citation="Toy'24 Fig. 1"))
    assert 99.0 not in [r.value for rs in report.select(records, {}).values() for r in rs]


def test_zipped_numeric_keys_are_one_figure_axis(tmp_path):
    doc = {"fixed": {"flows": 200}, "zip": [{"load": [0.3, 0.6, 0.9], "mean_size_bytes": [1e6, 2e6, 4e6]}],
           "axes": {"hw.topology.link.bandwidth": ["50 GB/s", "100 GB/s"]}}
    rep = run_sweep(_link_grid(doc), tmp_path, SerialBackend(), _quiet(), metric="mean_fct_s", progress=False)
    assert rep.figure is not None
    assert rep.figure_note == "heat map of mean_fct_s over hw.topology.link.bandwidth_bytes_per_s x load"


def test_ctrl_c_silences_the_cluster_loggers_before_the_interrupt_is_raised() -> None:
    """Distributed's interrupted calls log from their IO-loop thread at once: the Dask backend's SIGINT
    handler silences those loggers before KeyboardInterrupt reaches any ``except``, and the block's
    end gives them back."""
    import logging

    from hwsim.suites.sweep.executors import quiet_from_sigint

    logger = logging.getLogger("distributed.utils")
    before = signal.getsignal(signal.SIGINT)
    seen = None
    with pytest.raises(KeyboardInterrupt), quiet_from_sigint():
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1.0)  # the handler runs at the next bytecode boundary
        except KeyboardInterrupt:
            seen = logging.getLogger("distributed").disabled, logging.getLogger("tornado").disabled, logger.disabled
            raise
    assert seen == (True, True, True)
    assert not logging.getLogger("distributed").disabled and not logging.getLogger("tornado").disabled
    assert signal.getsignal(signal.SIGINT) is before
