"""link-sharing: the engine's shared link as an M/G/1 processor-sharing queue, against Kleinrock's formula."""

from __future__ import annotations

import io

import numpy as np
import pytest
from rich.console import Console

from hwsim.engine import Simulation
from hwsim.errors import SuiteError
from hwsim.hardware import load_hardware
from hwsim.suites.link_sharing import SUITE, simulate
from hwsim.suites.registry import SuiteContext


def _run(seed=0, hardware=None, **params):
    ctx = SuiteContext(hardware=hardware, seed=seed, params=params, console=Console(file=io.StringIO()))
    return {r.metric: r for r in SUITE.run(ctx).records}


@pytest.mark.parametrize("law", ["exponential", "lognormal", "fixed"])
def test_mean_flow_time_matches_processor_sharing_theory_for_any_size_law(law):
    # M/G/1-PS: E[T] = (E[S]/C) / (1 - rho), whatever the size distribution (Kleinrock 1976)
    records = _run(flows=20000, load=0.5, size_dist=law)
    assert records["mean_fct_over_ps_theory"].value == pytest.approx(1.0, abs=0.06)
    bandwidth = load_hardware("t3-gpu").topology.link.bandwidth_bytes_per_s
    assert records["mean_fct_s"].value == pytest.approx(1e6 / bandwidth / 0.5, rel=0.06)


def test_flow_times_grow_with_load_and_shrink_with_bandwidth():
    light, heavy = _run(flows=4000, load=0.3), _run(flows=4000, load=0.8)
    assert heavy["mean_fct_s"].value > 2 * light["mean_fct_s"].value
    hw = load_hardware("t3-gpu")
    from dataclasses import replace

    fast = replace(hw, topology=replace(hw.topology, link=replace(hw.topology.link, bandwidth_bytes_per_s=300e9)))
    # same seed, twice the bandwidth, same load: every time exactly halves
    assert _run(flows=4000, load=0.3, hardware=fast)["mean_fct_s"].value == pytest.approx(light["mean_fct_s"].value / 2, rel=1e-9)


def test_same_seed_same_records_other_seed_other_draws():
    a, b, c = _run(seed=3, flows=2000), _run(seed=3, flows=2000), _run(seed=4, flows=2000)
    assert {m: r.value for m, r in a.items()} == {m: r.value for m, r in b.items()}
    assert a["mean_fct_s"].value != c["mean_fct_s"].value


def test_two_flows_share_the_link_equally_then_one_runs_alone():
    # flow 0: 2 MB at t=0; flow 1: 1 MB at t=0. Shared 1 GB/s: flow 1 ends at 2 ms, flow 0 at 3 ms.
    fct = simulate(1e9, np.array([2e6, 1e6]), np.array([0.0, 0.0]), np.array([1.0, 1.0]), Simulation())
    assert fct.tolist() == pytest.approx([3e-3, 2e-3])
    weighted = simulate(1e9, np.array([2e6, 1e6]), np.array([0.0, 0.0]), np.array([3.0, 1.0]), Simulation())
    assert weighted.tolist() == pytest.approx([2e6 / 0.75e9, 2e6 / 0.75e9 + (1e6 - 2e6 / 3) / 1e9])


def test_parameters_are_checked():
    with pytest.raises(SuiteError, match="parameter 'load' has value 1.2; must be at most 0.99"):
        _run(load=1.2)
    with pytest.raises(SuiteError, match="has no parameter 'lod'"):
        _run(lod=0.5)


def test_suite_run_takes_parameters_on_the_command_line(tmp_path, capsys):
    from hwsim.records import read_results
    from hwsim.suites.cli import main

    out = tmp_path / "r.json"
    assert main(["suite", "run", "link-sharing", "--param", "flows=500", "--param", "size_dist=fixed", "--out", str(out)]) == 0
    cases = {r.case_key for r in read_results(out)}
    assert cases == {"flows=500,load=0.7,mean_size_bytes=1000000,size_dist=fixed,weights=1"}
    assert main(["suite", "run", "link-sharing", "--param", "flows=many"]) == 2
    assert "parameter 'flows' has value 'many'; expected an integer" in capsys.readouterr().err
