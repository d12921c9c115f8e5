"""What ``hwsim suite list`` shows of each built-in suite, readable without importing the suites.

Importing a suite pulls in its kernels (Numba, NumPy): about a second. Listing needs only each
suite's name, description, default hardware and parameter defaults, so they are kept here as
plain data; ``tests/test_suite_catalog.py`` holds every entry equal to the suite it describes, so
an edit to a suite that is not made here fails the tests instead of listing stale text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CaseValue = str | int | float | bool


@dataclass(frozen=True)
class SuiteInfo:
    """The listing of one suite: what ``hwsim suite list`` prints."""

    name: str
    description: str
    default_hardware: str
    parameter_defaults: dict[str, CaseValue] = field(default_factory=dict)


BUILTIN_INFO: dict[str, SuiteInfo] = {info.name: info for info in (
    SuiteInfo('kernels-basic',
              'GEMM, GEMV, triad, memcpy: cost model vs measurement on this machine',
              'host'),
    SuiteInfo('t3',
              'T3: TP sublayer GEMM + reduce-scatter, sequential vs software vs track&trigger (+NMC, +MCA)',
              't3-gpu',
              {'batch': 8, 'straggler': 1.1, 'slow_link': 0.5, 'seq_len': 0}),
    SuiteInfo('flover',
              'Flover temporal fusion vs concurrent instances and batching; any request trace; decode kernel',
              'a100-sxm',
              {'sections': 'all', 'trace': '', 'trace_format': 'auto', 'model': 'gpt-j-6b', 'hw': '', 'tp': 1, 'replicas': 1, 'router': 'round-robin', 'max_requests': 0, 'time_scale': 1.0, 'max_context': 0}),
    SuiteInfo('spatten',
              'SpAtten from its released workloads: DRAM traffic by technique, cycles, energy, and speedup over TITAN Xp / Xeon / A3 / MNNFast beside the paper',
              'spatten',
              {'workload': '', 'iterations': 0, 'layer_barrier': False}),
    SuiteInfo('link-sharing',
              'Poisson flows sharing one link: engine vs M/G/1 processor-sharing theory',
              't3-gpu',
              {'flows': 20000, 'load': 0.7, 'mean_size_bytes': 1000000.0, 'size_dist': 'exponential', 'weights': 1}),
    SuiteInfo('moetuner',
              "expert placement (contiguous, round-robin, greedy, EPLB, MoETuner's ILPs, replicating and robust ILPs) in simulated EP inference on real routing, in-domain and cross-domain",
              'h100-sxm',
              {'tokens_per_gpu': 2048, 'spare_slots': 1, 'routing': ''}),
)}
