"""SpAtten workloads as data: model shapes, per-layer cascade keep-ratios and bit widths.

Sources, per number:
* Model shapes: BERT-base 12 layers x 12 heads, BERT-large 24 x 16, GPT-2 small 12 x 12, GPT-2 medium
  24 x 16, head dim 64 for all (Devlin et al. 2019; Radford et al. 2019).
* GPT-2 prompt 992 tokens + 32 generated (SpAtten issue text; the released SpAtten hardware workloads
  start at sentence length 993 and grow by one per iteration).
* GPT-2 keep-ratios and bit widths are read from the workload CSVs released with SpAtten
  (github.com/mit-han-lab/spatten, spatten_hardware/hardware/workloads/):
  - ``summary-gpt2-small-wikitext2-per8.csv``: keys fetched 921/716/204/102 of 1015 tokens
    (layer 0 / 1 / 2-5 / 6-11), values fetched 184/143/40/20 (local V keep ~0.2), 12 heads kept in every
    layer, key MSB 6 bits + 4 LSB bits on re-quantization at max-prob threshold 0.05, values 6 bits,
    queries 16 bits.
  - ``summary-gpt2-medium-wikitext2-per0-hp-...csv``: keys 1015 (layers 0-1), 921 (2), 819 (3-4),
    614 (5-10), 307 (11-23); values ~0.30 of the kept keys; heads 16 up to layer 16, 13 in layers
    17-21, 10 in layers 22-23 (read at iteration 22; the layers 7-16 head count of 16 is our reading);
    keys 12 bits and values 8 bits with no re-quantization in that file. We model its keys as the
    issue's 8 MSB + 4 LSB setting so that progressive quantization applies to it too.
* BERT keep-ratios are NOT from the paper (we could not find its per-task settings in our sources):
  they follow the issue's rules (no token pruning in the first 15% of layers, head pruning after the
  first 30%) with final keeps of our choosing, and are marked ``assumed=True``. Bits: 6 MSB + 4 LSB
  keys (issue text), 8-bit values, 16-bit queries (as in the released GPT-2 files).
* Re-fetch fraction 6% (issue text: measured ~6% in the paper's traces).
"""

from __future__ import annotations

from dataclasses import dataclass

from hwsim.errors import WorkloadError



@dataclass(frozen=True)
class SpAttenWorkload:
    """One benchmark: the model's attention shape and what cascade pruning keeps in each layer.

    ``token_keep[l]``: fraction of the input tokens still alive in layer ``l`` (cascade: never rises).
    ``heads_kept[l]``: heads still alive in layer ``l`` (cascade: never rises).
    ``value_keep``: local value pruning, fraction of a query's kept tokens whose V rows are fetched
    (1.0: off; BERT-style summarization fetches V once per head and does not prune it locally).
    """

    name: str
    model: str
    task: str
    layers: int
    heads: int
    head_dim: int
    prompt_tokens: int
    generated_tokens: int
    token_keep: tuple[float, ...]
    heads_kept: tuple[int, ...]
    value_keep: float
    key_msb_bits: int
    key_lsb_bits: int
    value_bits: int
    query_bits: int
    refetch_fraction: float
    prob_threshold: float
    assumed: bool = False

    def __post_init__(self) -> None:
        where = f"workload {self.name!r}"
        if len(self.token_keep) != self.layers or len(self.heads_kept) != self.layers:
            raise WorkloadError(f"{where}: token_keep and heads_kept need {self.layers} entries, "
                                f"got {len(self.token_keep)} and {len(self.heads_kept)}")
        for name, seq in (("token_keep", self.token_keep), ("heads_kept", self.heads_kept)):
            if any(b > a for a, b in zip(seq, seq[1:])):
                raise WorkloadError(f"{where}: {name} must never rise from layer to layer (cascade), got {seq}")
        if not all(0 < f <= 1 for f in self.token_keep):
            raise WorkloadError(f"{where}: token_keep entries must lie in (0, 1], got {self.token_keep}")
        if not all(1 <= h <= self.heads for h in self.heads_kept):
            raise WorkloadError(f"{where}: heads_kept entries must lie in [1, {self.heads}], got {self.heads_kept}")
        if not 0 < self.value_keep <= 1:
            raise WorkloadError(f"{where}: value_keep must lie in (0, 1], got {self.value_keep}")
        if not 0 <= self.refetch_fraction <= 1:
            raise WorkloadError(f"{where}: refetch_fraction must lie in [0, 1], got {self.refetch_fraction}")
        for name in ("key_msb_bits", "value_bits", "query_bits"):
            if not 1 <= getattr(self, name) <= 32:
                raise WorkloadError(f"{where}: {name} must be 1..32, got {getattr(self, name)}")

    @property
    def generation(self) -> bool:
        return self.generated_tokens > 0


def _schedule(layers: int, keep_per_stage: tuple[float, ...], start_fraction: float) -> tuple[float, ...]:
    """Token keep per layer: 1.0 for the first ``start_fraction`` of layers, then the stages in equal runs."""
    start = int(round(start_fraction * layers))
    rest = layers - start
    out = [1.0] * start
    for i in range(rest):
        out.append(keep_per_stage[min(len(keep_per_stage) - 1, i * len(keep_per_stage) // rest)])
    return tuple(out)


def _head_schedule(layers: int, heads: int, kept_stages: tuple[int, ...], start_fraction: float) -> tuple[int, ...]:
    start = int(round(start_fraction * layers))
    rest = layers - start
    out = [heads] * start
    for i in range(rest):
        out.append(kept_stages[min(len(kept_stages) - 1, i * len(kept_stages) // rest)])
    return tuple(out)


GPT2_PROMPT_TOKENS = 992   # issue text; released workloads start at L = 993
GPT2_GENERATED_TOKENS = 32  # issue text
REFETCH_FRACTION = 0.06    # issue text: ~6% of queries re-fetch LSBs in the paper's traces

WORKLOADS: dict[str, SpAttenWorkload] = {}


def _add(w: SpAttenWorkload) -> None:
    WORKLOADS[w.name] = w


# --- GPT-2 (released SpAtten workload CSVs, see module docstring) ---------------------------------
_add(SpAttenWorkload(
    name="gpt2-small-wikitext2", model="gpt2-small", task="generation", layers=12, heads=12, head_dim=64,
    prompt_tokens=GPT2_PROMPT_TOKENS, generated_tokens=GPT2_GENERATED_TOKENS,
    token_keep=(921 / 1015, 716 / 1015) + (204 / 1015,) * 4 + (102 / 1015,) * 6,
    heads_kept=(12,) * 12, value_keep=0.2, key_msb_bits=6, key_lsb_bits=4, value_bits=6, query_bits=16,
    refetch_fraction=REFETCH_FRACTION, prob_threshold=0.05))
_add(SpAttenWorkload(
    name="gpt2-medium-wikitext2", model="gpt2-medium", task="generation", layers=24, heads=16, head_dim=64,
    prompt_tokens=GPT2_PROMPT_TOKENS, generated_tokens=GPT2_GENERATED_TOKENS,
    token_keep=(1.0, 1.0, 921 / 1015, 819 / 1015, 819 / 1015) + (614 / 1015,) * 6 + (307 / 1015,) * 13,
    heads_kept=(16,) * 17 + (13,) * 5 + (10,) * 2, value_keep=0.3, key_msb_bits=8, key_lsb_bits=4,
    value_bits=8, query_bits=16, refetch_fraction=REFETCH_FRACTION, prob_threshold=0.05))

# --- BERT (assumed keep-ratios; rules from the issue: tokens after 15%, heads after 30% of layers) ---
_BERT_TOKEN_STAGES = (0.8, 0.6, 0.45, 0.35)      # assumption
_BERT_HEAD_STAGES_12 = (11, 10, 9)               # assumption
_BERT_HEAD_STAGES_16 = (15, 13, 12)              # assumption
for _model, _layers, _heads, _hstages in (("bert-base", 12, 12, _BERT_HEAD_STAGES_12),
                                          ("bert-large", 24, 16, _BERT_HEAD_STAGES_16)):
    for _task, _length in (("glue", 128), ("squad", 384)):   # GLUE-style and SQuAD sequence lengths
        _add(SpAttenWorkload(
            name=f"{_model}-{_task}", model=_model, task=_task, layers=_layers, heads=_heads, head_dim=64,
            prompt_tokens=_length, generated_tokens=0,
            token_keep=_schedule(_layers, _BERT_TOKEN_STAGES, 0.15),
            heads_kept=_head_schedule(_layers, _heads, _hstages, 0.30), value_keep=1.0,
            key_msb_bits=6, key_lsb_bits=4, value_bits=8, query_bits=16,
            refetch_fraction=REFETCH_FRACTION, prob_threshold=0.1, assumed=True))


def get_workload(name: str) -> SpAttenWorkload:
    try:
        return WORKLOADS[name]
    except KeyError:
        raise WorkloadError(f"unknown SpAtten workload {name!r}; known: {', '.join(WORKLOADS)}") from None
