"""Tensor-parallel transformer sublayers as data: model shapes and Megatron partitioning.

T3 (Pati et al., ASPLOS'24) studies the four sublayers whose output is a *partial sum* that
tensor parallelism must all-reduce: forward attention output projection (OP) and MLP FC-2, and
backward input-gradient GEMMs of FC-1 and of the attention input projection (IP). With Megatron's
partitioning (Shoeybi et al. 2019, sec. 3) the column-parallel layers (QKV, FC-1) split their output
width by the TP degree ``t`` and the row-parallel layers (OP, FC-2) split their reduction dimension,
so each of these four GEMMs is ``[tokens, K/t] x [K/t, H] -> [tokens, H]`` partial sums on every GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from hwsim.errors import WorkloadError


@dataclass(frozen=True)
class TransformerShape:
    """What the four TP sublayers need: hidden size, MLP width, attention width and tokens per step."""

    name: str
    params: str
    hidden: int
    layers: int
    heads: int
    seq_len: int
    batch: int
    source: str

    @property
    def ffn(self) -> int:
        """MLP width: 4H in all five models as T3 treats them (Megatron GPT layout)."""
        return 4 * self.hidden

    @property
    def tokens(self) -> int:
        return self.seq_len * self.batch


# Model dimensions (hidden, layers, heads) from each model's paper; seq_len x batch is the tokens
# per GEMM. ASSUMPTION: T3's exact sequence length x batch could not be checked here; we take each
# model's training sequence length and a batch of 8. The results depend on it (at small batches a
# TP-32 ring stage is under one 128-row tile and the staggered GEMM re-reads its weights per stage):
# the t3 suite takes batch and seq_len as parameters and shows its headline at batch 1, 4, 8 and 16.
# PaLM is modelled in the Megatron GPT layout (QKV = 3H, FFN = 4H) as T3 does; its real SwiGLU
# MLP and multi-query attention are not modelled.
MODELS: dict[str, TransformerShape] = {
    m.name: m
    for m in (
        TransformerShape("mega-gpt2", "8.3B", hidden=3072, layers=72, heads=32, seq_len=1024, batch=8,
                         source="Megatron-LM (Shoeybi et al. 2019), Table 1: 8.3B = 72 layers, H 3072, 32 heads"),
        TransformerShape("t-nlg", "17B", hidden=4256, layers=78, heads=28, seq_len=1024, batch=8,
                         source="Turing-NLG (Microsoft Research blog, Feb 2020): 78 layers, H 4256, 28 heads"),
        TransformerShape("gpt-3", "175B", hidden=12288, layers=96, heads=96, seq_len=2048, batch=8,
                         source="GPT-3 (Brown et al. 2020), Table 2.1: d_model 12288, 96 layers, 96 heads"),
        TransformerShape("palm", "540B", hidden=18432, layers=118, heads=48, seq_len=2048, batch=8,
                         source="PaLM (Chowdhery et al. 2022), Table 1: d_model 18432, 118 layers, 48 heads"),
        TransformerShape("mt-nlg", "530B", hidden=20480, layers=105, heads=128, seq_len=2048, batch=8,
                         source="MT-NLG (Smith et al. 2022), Table 1: 105 layers, H 20480, 128 heads"),
    )
}

# The (model, TP degree) pairs T3 evaluates (T3 sec. 6: Mega-GPT-2 and T-NLG at TP 8 and 16;
# GPT-3, PaLM and MT-NLG at TP 32).
T3_CASES: tuple[tuple[str, int], ...] = (
    ("mega-gpt2", 8), ("mega-gpt2", 16), ("t-nlg", 8), ("t-nlg", 16),
    ("gpt-3", 32), ("palm", 32), ("mt-nlg", 32),
)

# Sublayer -> (pass, the partitioned reduction dimension as a multiple of H before dividing by TP).
#   OP   fwd: attention output projection, row-parallel, K = H/t
#   FC-2 fwd: MLP down projection, row-parallel, K = 4H/t
#   FC-1 bwd: input gradient of the column-parallel MLP up projection, K = 4H/t
#   IP   bwd: input gradient of the column-parallel QKV projection, K = 3H/t
SUBLAYERS: dict[str, tuple[str, int]] = {"OP": ("fwd", 1), "FC-2": ("fwd", 4), "FC-1": ("bwd", 4), "IP": ("bwd", 3)}


@dataclass(frozen=True)
class TPGemm:
    """One GPU's share of a TP sublayer: ``C[m, n] = A[m, k] @ B[k, n]``, C then all-reduced."""

    model: str
    sublayer: str
    tp: int
    m: int
    n: int
    k: int
    dtype: str = "fp16"

    @property
    def output_elements(self) -> int:
        return self.m * self.n


def model(name: str) -> TransformerShape:
    try:
        return MODELS[name]
    except KeyError:
        raise WorkloadError(f"unknown model {name!r}; known: {sorted(MODELS)}") from None


def sublayer_gemm(model_name: str, sublayer: str, tp: int, dtype: str = "fp16", *, batch: int | None = None,
                  seq_len: int | None = None) -> TPGemm:
    """The per-GPU GEMM of ``sublayer`` of ``model_name`` at TP degree ``tp`` (Megatron partitioning).

    ``batch`` and ``seq_len`` override the model's tokens per GEMM (sequence x batch), which the T3
    results are sensitive to (the suite sweeps them).
    """
    shape = model(model_name)
    for name, value in (("batch", batch), ("seq_len", seq_len)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise WorkloadError(f"{name} must be a positive integer, got {value!r}")
    tokens = (seq_len or shape.seq_len) * (batch or shape.batch)
    if sublayer not in SUBLAYERS:
        raise WorkloadError(f"unknown sublayer {sublayer!r}; known: {list(SUBLAYERS)}")
    if isinstance(tp, bool) or not isinstance(tp, int) or tp < 1:
        raise WorkloadError(f"tp must be a positive integer, got {tp!r}")
    _, multiple = SUBLAYERS[sublayer]
    width = multiple * shape.hidden
    if width % tp:
        raise WorkloadError(f"{model_name} {sublayer}: width {width} is not divisible by tp={tp}")
    return TPGemm(model_name, sublayer, tp, m=tokens, n=shape.hidden, k=width // tp, dtype=dtype)
