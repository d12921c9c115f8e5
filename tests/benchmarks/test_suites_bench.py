"""Wall time of every suite, quick and full, run in-process as the CLI runs them.

Run with ``pytest tests/benchmarks/test_suites_bench.py --benchmark-enable --benchmark-autosave
--benchmark-storage=results/benchmarks/suites``. Targets (issue 17): each full run <= 30 s on 2 cores
(moetuner <= 60 s), all quick runs together <= 60 s. Skipped with benchmarks disabled (CI): the
suites' own tests already run them.
"""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from hwsim.suites.registry import BUILTIN_SUITES, SuiteContext, get_suite


@pytest.mark.benchmark(group="suites")
@pytest.mark.parametrize("quick", [True, False], ids=["quick", "full"])
@pytest.mark.parametrize("name", sorted(BUILTIN_SUITES))
def test_suite_wall_time(benchmark, name, quick, tmp_path):
    if not benchmark.enabled:
        pytest.skip("suite timings run only with --benchmark-enable")
    suite = get_suite(name)
    ctx = SuiteContext(hardware=None, quick=quick, seed=0, console=Console(file=io.StringIO()), figures_dir=tmp_path)
    result = benchmark.pedantic(suite.run, args=(ctx,), rounds=1, iterations=1)
    assert result.records
    benchmark.extra_info.update(suite=name, quick=quick, records=len(result.records))
