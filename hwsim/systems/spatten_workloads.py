"""SpAtten benchmarks as data: the released GPT-2 generation workloads and assumed BERT ones.

* GPT-2 small / medium (WikiText-2): the authors' released per-(iteration, layer, head) rows
  (:mod:`hwsim.workloads.spatten_csv`; public repository mit-han-lab/spatten,
  ``spatten_hardware/hardware/workloads/``): 32 generation iterations after a 992-token prompt
  (sentence length 993..1024). Keys and values kept, bit widths, which heads re-fetch LSBs (decided
  by the authors from real attention scores) and which heads survive head pruning are all read from
  the file; nothing about them is assumed here. The prompt pass is not in those files and is not
  simulated.
* BERT-base / BERT-large on GLUE-length (128) and SQuAD-length (384) inputs: no released workload
  exists in our sources, so the keep schedules are ASSUMED (``keep_source="assumed"``): no token
  pruning in the first 15% of layers and no head pruning in the first 30% (the issue's reading of
  the paper), final keeps of our choosing; bits 6 MSB + 4 LSB keys and 8-bit values (the released
  GPT-2 small setting); which heads re-fetch LSBs is drawn (seeded) at the rate the released GPT-2
  small file shows (also an assumption for BERT).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwsim.errors import WorkloadError
from hwsim.workloads.spatten_csv import (
    ReleasedWorkload,
    WorkloadRow,
    builtin_workload,
    load_spatten_csv,
)

__all__ = [
    "BERT_SHAPES",
    "GPT2_BENCHMARKS",
    "Benchmark",
    "benchmark_names",
    "bert_benchmark",
    "from_released",
    "get_benchmark",
    "load_benchmark_file",
]


@dataclass(frozen=True)
class Benchmark:
    """One SpAtten benchmark: a model's attention shape and its request rows per iteration."""

    name: str
    model: str
    layers: int
    heads: int
    head_dim: int
    rows: tuple[WorkloadRow, ...]
    generation: bool          # one query per request (generation) or every kept token a query (BERT)
    keep_source: str          # where the keep ratios and bits come from

    @property
    def assumed(self) -> bool:
        return self.keep_source == "assumed"

    def iterations(self) -> list[tuple[WorkloadRow, ...]]:
        """Rows grouped by iteration, in file order."""
        groups: dict[int, list[WorkloadRow]] = {}
        for r in self.rows:
            groups.setdefault(r.iteration, []).append(r)
        return [tuple(groups[i]) for i in sorted(groups)]


def from_released(w: ReleasedWorkload, model: str = "") -> Benchmark:
    """A benchmark from a released (or user-given) workload file."""
    dims = {r.head_dim for r in w.rows}
    if len(dims) != 1:
        raise WorkloadError(f"{w.path}: rows mix head dimensions {sorted(dims)}; one model per file")
    return Benchmark(name=w.name, model=model or w.name, layers=w.layers, heads=w.heads_per_layer(),
                     head_dim=dims.pop(), rows=w.rows, generation=True, keep_source=f"released file {w.path.split('/')[-1]}")


GPT2_BENCHMARKS = ("gpt2-small-wikitext2", "gpt2-medium-wikitext2")

# BERT shapes: (layers, heads) from Devlin et al. 2019; head dim 64.
BERT_SHAPES = {"bert-base": (12, 12), "bert-large": (24, 16)}
BERT_LENGTHS = {"glue": 128, "squad": 384}   # assumption: typical GLUE / SQuAD max sequence lengths
_BERT_TOKEN_STAGES = (0.8, 0.6, 0.45, 0.35)   # assumption: token keep per stage after the first 15% of layers
_BERT_HEAD_STAGES = {12: (11, 10, 9), 16: (15, 13, 12)}  # assumption: heads kept after the first 30% of layers
# the released GPT-2 small file re-fetches LSBs on 323 of its 4608 rows (7.0%); assumed for BERT
BERT_REFETCH_RATE = 323 / 4608


def _stage(i: int, start: int, n: int, stages: tuple) -> object:  # type: ignore[type-arg]
    if i < start:
        return None
    return stages[min(len(stages) - 1, (i - start) * len(stages) // (n - start))]


def bert_benchmark(model: str, task: str, seed: int = 0) -> Benchmark:
    """BERT summarization as one iteration of per-(layer, head) rows with ASSUMED keep schedules."""
    if model not in BERT_SHAPES or task not in BERT_LENGTHS:
        raise WorkloadError(f"unknown BERT benchmark {model}-{task}")
    layers, heads = BERT_SHAPES[model]
    length = BERT_LENGTHS[task]
    rng = np.random.default_rng(seed)
    rows: list[WorkloadRow] = []
    tok_start, head_start = round(0.15 * layers), round(0.30 * layers)
    kept_prev = length
    for layer in range(layers):
        keep = _stage(layer, tok_start, layers, _BERT_TOKEN_STAGES)
        kept = length if keep is None else max(1, round(float(keep) * length))  # type: ignore[arg-type]
        hs = _stage(layer, head_start, layers, _BERT_HEAD_STAGES[heads])
        alive = heads if hs is None else int(hs)  # type: ignore[call-overload]
        for head in range(alive):
            rows.append(WorkloadRow(
                iteration=0, layer=layer, head=head, head_dim=64, length=length, key_fetch=kept,
                key_bits=6, query_bits=16, requant_threshold=0.1, requant=bool(rng.random() < BERT_REFETCH_RATE),
                requant_bits=4, value_fetch=kept, value_bits=8, accumulate_importance=True,
                rescale_importance=False, topk=head == 0 and kept < kept_prev, topk_k=kept, line=0))
        kept_prev = kept
    return Benchmark(name=f"{model}-{task}", model=model, layers=layers, heads=heads, head_dim=64,
                     rows=tuple(rows), generation=False, keep_source="assumed")


def benchmark_names() -> list[str]:
    return list(GPT2_BENCHMARKS) + [f"{m}-{t}" for m in BERT_SHAPES for t in BERT_LENGTHS]


def get_benchmark(name: str, seed: int = 0) -> Benchmark:
    if name in GPT2_BENCHMARKS:
        return from_released(builtin_workload(name), model=name.rsplit("-", 1)[0])
    model, _, task = name.rpartition("-")
    if model in BERT_SHAPES and task in BERT_LENGTHS:
        return bert_benchmark(model, task, seed)
    raise WorkloadError(f"unknown SpAtten benchmark {name!r}; known: {', '.join(benchmark_names())}")


def load_benchmark_file(path: str) -> Benchmark:
    """A user's workload file in the released format (``--param workload=PATH``)."""
    return from_released(load_spatten_csv(path))
