"""Speed of the t3 suite's simulation core: every T3 case under every strategy.

The suite's budget is 30 s on 2 cores for everything (the table, the CU sweep, the H100 comparison
and the figure); this is the table's part. Run with ``pytest tests/benchmarks --benchmark-enable``.
"""

from __future__ import annotations

from hwsim.hardware import load_hardware
from hwsim.suites.t3 import run_cases
from hwsim.systems.t3 import STRATEGIES
from hwsim.workloads.tensor_parallel import SUBLAYERS, T3_CASES


def test_all_t3_cases_all_strategies(benchmark):
    hw = load_hardware("t3-gpu")
    cases = benchmark(run_cases, hw, STRATEGIES)
    assert len(cases) == len(T3_CASES) * len(SUBLAYERS)
    benchmark.extra_info["simulations"] = len(cases) * len(STRATEGIES)
