"""Decoder-only transformer shapes used by the serving simulations, as data.

Each number is the model's published configuration (the Hugging Face ``config.json`` of the
released checkpoint, or the paper's table), so a reader can check it in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

from hwsim.errors import WorkloadError

__all__ = ["MODELS", "DecoderModel", "WorkloadError", "get_model"]

@dataclass(frozen=True)
class DecoderModel:
    """The shapes one decode step touches.

    ``mlp_matrices`` is 2 for a GELU MLP (up, down) and 3 for a SwiGLU MLP (gate, up, down).
    """

    name: str
    layers: int
    hidden: int
    heads: int
    ffn: int
    vocab: int
    mlp_matrices: int
    dtype: str = "fp16"
    max_context: int = 2048
    """Longest sequence (prompt + output) the model was trained for: the default slot length of a server."""

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def layer_weight_elements(self) -> int:
        """Q, K, V and output projections plus the MLP matrices of one layer."""
        return 4 * self.hidden * self.hidden + self.mlp_matrices * self.hidden * self.ffn

    @property
    def parameters(self) -> int:
        """Weights read by a decode step (layers + LM head) plus the input embedding table."""
        return self.layers * self.layer_weight_elements + 2 * self.vocab * self.hidden


MODELS: dict[str, DecoderModel] = {
    # GPT-J 6B: EleutherAI/gpt-j-6b config (n_layer 28, n_embd 4096, n_head 16, n_inner 4*4096, vocab 50400)
    "gpt-j-6b": DecoderModel("gpt-j-6b", layers=28, hidden=4096, heads=16, ffn=16384, vocab=50400, mlp_matrices=2,
                             max_context=2048),  # n_positions 2048
    # LLaMA 13B/33B/65B: Touvron et al. 2023, Table 2, and the released params.json (ffn from multiple_of=256);
    # trained with a 2048-token context (Touvron et al. 2023, section 2.2)
    "llama-13b": DecoderModel("llama-13b", layers=40, hidden=5120, heads=40, ffn=13824, vocab=32000, mlp_matrices=3),
    "llama-33b": DecoderModel("llama-33b", layers=60, hidden=6656, heads=52, ffn=17920, vocab=32000, mlp_matrices=3),
    "llama-65b": DecoderModel("llama-65b", layers=80, hidden=8192, heads=64, ffn=22016, vocab=32000, mlp_matrices=3),
}


def get_model(name: str) -> DecoderModel:
    try:
        return MODELS[name]
    except KeyError:
        raise WorkloadError(f"unknown model {name!r}; known: {sorted(MODELS)}") from None
