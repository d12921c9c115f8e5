"""kernels-basic end to end: the engine agrees with the roofline, records join, the trace opens."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import yaml

from hwsim.costs.families import MemoryStep, OperatorModels
from hwsim.costs.ops import operator_models
from hwsim.engine import Simulation
from hwsim.hardware import load_hardware, load_hardware_file
from hwsim.records import read_results
from hwsim.suites.calibrate import cpu_hardware, write_hardware
from hwsim.suites.cli import main
from hwsim.suites.kernels_basic import _cases, cost, family_s, model_name, simulate


@pytest.fixture(autouse=True)
def _private_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HWSIM_HOME", str(tmp_path / "home"))


def test_engine_timeline_equals_the_roofline_without_operator_models():
    hw = load_hardware("xeon-e5-2640v4")
    assert operator_models(hw.device) is None
    cases = _cases(quick=False)
    durations = simulate(hw, cases, Simulation())
    for case, duration in zip(cases, durations):
        assert duration == pytest.approx(cost(hw.device, case).time_s, rel=1e-9), case.label
    assert model_name(hw.device).startswith("roofline")


def _toy_operators(threads: int = 1) -> OperatorModels:
    steps = (MemoryStep(1e4, 100e9, 80e9), MemoryStep(1e6, 50e9, 40e9, 45e9), MemoryStep(1e9, 10e9, 8e9, 9e9))
    return OperatorModels(threads=threads, launch_s=1e-6, staircase=steps, gemm_flops_per_s={"fp32": 1e11},
                          gemm_fixed_s=1e-5, gemv_read_fraction=0.8)


@pytest.mark.parametrize("preset", ["xeon-e5-2640v4", "h100-sxm"])
def test_operator_models_predict_when_the_hardware_has_them(preset):
    """A GPU preset's datasheet-derived models, or a CPU given calibrated device.operators: every case
    is its family's model, and the answer moves away from the roofline's."""
    hw = load_hardware(preset)
    if hw.device.kind == "cpu":
        hw = replace(hw, device=replace(hw.device, operators=_toy_operators()))
    models = operator_models(hw.device)
    assert models is not None
    cases = _cases(quick=False)
    durations = simulate(hw, cases, Simulation())
    for case, duration in zip(cases, durations):
        assert duration == pytest.approx(family_s(models, case), rel=1e-9), case.label
        if hw.device.operators is not None:  # measured models: the cost functions price by them too
            assert cost(hw.device, case).time_s == pytest.approx(duration, rel=1e-9), case.label
    roofline = replace(hw.device, operators=None)  # a GPU's derived models price only GEMV and top-k there
    assert any(abs(d - cost(roofline, c).time_s) > 0.05 * d for c, d in zip(cases, durations))
    assert model_name(hw.device).startswith("per-family")


def test_records_use_latency_s_and_say_which_model(tmp_path):
    hw = load_hardware("xeon-e5-2640v4")
    hw = replace(hw, device=replace(hw.device, operators=_toy_operators()))
    path = write_hardware(hw, tmp_path / "toy.yaml")
    out = tmp_path / "kb.json"
    assert main(["suite", "run", "kernels-basic", "--quick", "--hw", str(path), "--out", str(out)]) == 0
    records = read_results(out)
    assert records and {r.metric for r in records} == {"latency_s"}
    assert all("device.operators" in (r.note or "") for r in records)


def test_quick_calibration_writes_a_loadable_description(tmp_path):
    hw, lines = cpu_hardware("host", quick=True)
    path = write_hardware(hw, tmp_path / "host.yaml")
    again = load_hardware_file(path)
    assert again.device == hw.device
    d = again.device
    assert d.peak("fp32") > 0 and d.peak("fp64") > 0  # rates under load vary; the estimator is tested below
    assert d.memory.bandwidth_bytes_per_s > 0 and d.launch_overhead_s > 0
    assert any("DRAM bandwidth" in line for line in lines)
    assert "measured on this machine" in path.read_text()


@pytest.mark.slow  # the per-family fit takes ~30 s on a loaded 2-core machine
def test_calibrate_command_then_host_is_found(capsys):
    """One calibration, one file: the roofline numbers and device.operators, read back by operator_models."""
    assert main(["hw", "calibrate", "--quick", "--no-gpu"]) == 0
    host = load_hardware("host")
    assert host.device.kind == "cpu"
    models = operator_models(host.device)
    assert models is not None and models is host.device.operators and models.threads == 1
    assert len(models.staircase) >= 5 and models.gemm_flops_per_s["fp32"] > 0
    assert models.topk_modelled and models.skinny_flops_per_s and models.interference.memory_memory >= 1
    assert "wrote" in capsys.readouterr().out


def test_measure_then_compare(tmp_path, capsys):
    out, trace = tmp_path / "kb.json", tmp_path / "t.json"
    code = main(["suite", "run", "kernels-basic", "--quick", "--measure", "--hw", "xeon-e5-2640v4",
                 "--out", str(out), "--trace", str(trace)])
    assert code == 0
    records = read_results(out)
    simulated = {r.key for r in records if r.source == "simulated"}
    measured = {r.key for r in records if r.source == "measured"}
    assert simulated == measured and len(simulated) == len(_cases(quick=True))
    assert all(r.value > 0 and r.provenance is not None for r in records)
    spans = [e for e in json.loads(trace.read_text())["traceEvents"] if e["ph"] == "X"]
    assert {e["name"] for e in spans} >= {c.label for c in _cases(quick=True)}
    capsys.readouterr()
    assert main(["compare", str(out), "--format", "json"]) == 0
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert summary["joined"] == len(simulated) and summary["only_measured"] == 0
    assert summary["median_abs_rel_error"] is not None


@pytest.mark.slow  # every suite, quick: about a minute on a loaded 2-core machine
def test_run_all_writes_one_file_per_suite(tmp_path, capsys):
    assert main(["suite", "run", "all", "--quick", "--out", str(tmp_path)]) == 0
    written = sorted(p.name for p in tmp_path.glob("*.json"))
    assert "kernels-basic.json" in written
    assert yaml.safe_load((tmp_path / "kernels-basic.json").read_text())["schema"] == "hwsim.results/1"


def test_calibration_fit_survives_a_noisy_machine():
    from hwsim.suites.calibrate import CalibrationError, _fit

    # true rate 100 units/s and 0.5 s fixed cost; the largest run was slowed by a neighbour
    fit = _fit([(10, 0.6), (100, 1.5), (1000, 10.5), (10000, 180.0)], "toy")
    assert fit.rate == pytest.approx(1000 / 10.5)
    assert 0 < fit.fixed_s < 0.6
    with pytest.raises(CalibrationError, match="toy: need at least 2"):
        _fit([(1, 1.0)], "toy")
