"""Replaying the whole Azure conversation trace (19,366 requests) under one scheduler: the issue asks <= 5 s.

Run with ``pytest tests/benchmarks/test_flover_bench.py --benchmark-enable``; the simulated events and
iterations go to ``extra_info`` (one event per change of the batch, not one per iteration).
"""

from __future__ import annotations

import pytest

from hwsim.hardware import load_hardware
from hwsim.systems.flover import ContinuousPaged, FloverFusion, simulate
from hwsim.systems.serving_cost import ServingConfig
from hwsim.workloads.decoders import WorkloadError, get_model
from hwsim.workloads.serving import AZURE_CONV_TRACE, find_data_file, load_azure_trace

TRACE_REQUESTS = 19_366  # rows of azure_llm_2023_conv.csv (shared/data/README.md)


@pytest.fixture(scope="module")
def azure():
    try:
        requests = load_azure_trace(find_data_file(AZURE_CONV_TRACE))
    except WorkloadError as exc:
        pytest.skip(str(exc))
    longest = max(r.prompt_tokens + r.gen_tokens for r in requests)
    return requests, ServingConfig(get_model("gpt-j-6b"), load_hardware("a100-sxm"), max_seq_tokens=longest)


@pytest.mark.parametrize("make", [FloverFusion, ContinuousPaged], ids=["flover", "continuous-paged"])
def test_replay_whole_azure_trace(benchmark, azure, make):
    requests, cfg = azure
    result = benchmark.pedantic(lambda: simulate(requests, cfg, make()), rounds=1, iterations=1)
    assert len(requests) == TRACE_REQUESTS and len(result.records) == TRACE_REQUESTS
    assert result.events < result.iterations / 2  # far fewer events than iterations
    benchmark.extra_info.update(events=result.events, iterations=result.iterations)
