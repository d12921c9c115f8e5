"""What one decode iteration (and one prefill) of a decoder model costs on a device, from the core models.

A decode iteration of a batch of ``rows`` requests reads every weight once (GEMMs with ``m = rows``),
reads each request's KV cache (attention), and with tensor parallelism all-reduces two activations
per layer. The weight part depends only on ``rows`` and is cached; the attention part is linear in
the summed context, so a run of iterations is costed with one vectorised call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from hwsim.costs import collectives, ops
from hwsim.errors import WorkloadError
from hwsim.hardware import Hardware
from hwsim.hardware.model import Device, Topology
from hwsim.workloads.decoders import DecoderModel

ELEMENTWISE_PER_LAYER = 3
"""Two norms and the residual/activation pass per layer: small maps over ``rows * hidden`` values."""

ALL_REDUCES_PER_LAYER = 2
"""Megatron tensor parallelism: one all-reduce after attention, one after the MLP (Shoeybi et al. 2019)."""


@dataclass(frozen=True)
class ServingConfig:
    """A model served on ``tp`` devices of ``hardware`` with its memory policy.

    ``max_seq_tokens``: length of each preallocated slot (contiguous schedulers and instances).
    ``max_slots``: most requests one batch may hold (None: whatever memory allows).
    ``block_tokens``: page size of the paged KV cache (vLLM's default block size is 16).
    """

    model: DecoderModel
    hardware: Hardware
    tp: int = 1
    max_seq_tokens: int = 2048
    max_slots: int | None = None
    block_tokens: int = 16

    def __post_init__(self) -> None:
        if self.tp < 1 or self.tp > self.hardware.topology.devices:
            raise WorkloadError(f"tp must be in 1..{self.hardware.topology.devices} for {self.hardware.name}, got {self.tp}")
        if self.model.heads % self.tp:
            raise WorkloadError(f"tp={self.tp} does not divide {self.model.name}'s {self.model.heads} heads")
        if self.max_seq_tokens < 2 or self.block_tokens < 1 or (self.max_slots is not None and self.max_slots < 1):
            raise WorkloadError(f"bad serving config: max_seq_tokens={self.max_seq_tokens}, "
                                f"block_tokens={self.block_tokens}, max_slots={self.max_slots}")


@dataclass
class IterationCost:
    """Decode and prefill times of one model on one device group (per device: TP shards everything)."""

    config: ServingConfig
    _dense: dict[int, tuple[float, float]] = field(default_factory=dict, repr=False)
    _prefill_cache: dict[int, tuple[float, float]] = field(default_factory=dict, repr=False)
    _head_cache: dict[int, tuple[float, float]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        cfg, m = self.config, self.config.model
        self.device: Device = cfg.hardware.device
        self.dtype = m.dtype
        self.size = ops.itemsize(m.dtype)
        self.heads_per_device = m.heads // cfg.tp
        self.topology = Topology(kind="switch", devices=cfg.tp, link=cfg.hardware.topology.link) if cfg.tp > 1 else Topology()
        self.weight_bytes = m.parameters * self.size / cfg.tp
        self.kv_bytes_per_token = 2.0 * m.layers * m.hidden * self.size / cfg.tp
        self.free_bytes = self.device.memory.capacity_bytes - self.weight_bytes
        if self.free_bytes <= 0:
            raise WorkloadError(f"{m.name} ({self.weight_bytes / 1e9:.1f} GB per device at tp={cfg.tp}) does not fit "
                                f"in {self.device.name}'s {self.device.memory.capacity_bytes / 1e9:.0f} GB")
        self.slot_bytes = cfg.max_seq_tokens * self.kv_bytes_per_token
        self.block_bytes = cfg.block_tokens * self.kv_bytes_per_token
        eff = self.device.efficiency
        self._mem_rate = self.device.memory.bandwidth_bytes_per_s * eff.memory_max
        self._mem_half = eff.memory_half_bytes
        self._cmp_rate = self.device.peak(self.dtype) * eff.compute_max
        self._cmp_half = eff.compute_half_flops

    # ---- capacity -------------------------------------------------------------------------
    def slots(self) -> int:
        """Preallocated slots of ``max_seq_tokens`` that fit beside the weights (capped by ``max_slots``)."""
        n = int(self.free_bytes // self.slot_bytes)
        if self.config.max_slots is not None:
            n = min(n, self.config.max_slots)
        if n < 1:
            raise WorkloadError(f"not one slot of {self.config.max_seq_tokens} tokens fits beside {self.config.model.name}")
        return n

    def kv_blocks(self) -> int:
        """Pages of ``block_tokens`` that fit beside the weights (paged KV cache)."""
        return int(self.free_bytes // self.block_bytes)

    # ---- decode ---------------------------------------------------------------------------
    def _matrices(self) -> list[tuple[int, int]]:
        """(out, in) of each weight GEMM of a layer, sharded Megatron-style over ``tp``."""
        m, tp = self.config.model, self.config.tp
        return [(3 * m.hidden // tp, m.hidden), (m.hidden, m.hidden // tp),
                ((m.mlp_matrices - 1) * m.ffn // tp, m.hidden), (m.hidden, m.ffn // tp)]

    def layer_dense(self, rows: int) -> tuple[float, float]:
        """(seconds, bytes) of one layer's decode work except attention: weight GEMMs, maps, all-reduces."""
        m, dev = self.config.model, self.device
        time_s = nbytes = 0.0
        for n_out, k_in in self._matrices():
            c = ops.gemm(dev, rows, n_out, k_in, self.dtype)
            time_s, nbytes = time_s + c.time_s, nbytes + c.bytes
        e = ops.elementwise(dev, rows * m.hidden, self.dtype, inputs=2, outputs=1)
        time_s += ELEMENTWISE_PER_LAYER * e.time_s
        nbytes += ELEMENTWISE_PER_LAYER * e.bytes
        if self.config.tp > 1:
            ar = collectives.ring_all_reduce(self.topology, rows * m.hidden * self.size)
            time_s += ALL_REDUCES_PER_LAYER * ar.time_s
            nbytes += ALL_REDUCES_PER_LAYER * ar.hbm_bytes_per_device
        return time_s, nbytes

    def dense(self, rows: int) -> tuple[float, float]:
        """(seconds, bytes) of everything in a decode iteration except attention, for ``rows`` requests."""
        hit = self._dense.get(rows)
        if hit is not None:
            return hit
        m = self.config.model
        time_s, nbytes = self.layer_dense(rows)
        head = ops.gemm(self.device, rows, m.vocab // self.config.tp, m.hidden, self.dtype)
        result = (m.layers * time_s + head.time_s, m.layers * nbytes + head.bytes)
        self._dense[rows] = result
        return result

    def layer_decode_time(self, rows: int, kv_tokens: int) -> float:
        """One layer of one decode iteration (what :mod:`kernels.decode` measures)."""
        flops, nbytes = self.attention_work(rows, float(kv_tokens))
        return self.layer_dense(rows)[0] + ops.roofline(self.device, "attention", flops, nbytes, self.dtype).time_s

    def attention_work(self, rows: int | np.ndarray, kv_tokens: float | np.ndarray) -> tuple:
        """(flops, bytes) of one layer's decode attention: ``rows`` queries over ``kv_tokens`` cached tokens
        in total. Same counts as :func:`hwsim.costs.ops.attention` with q_len=1, summed over requests."""
        hd, h = self.config.model.head_dim, self.heads_per_device
        flops = h * (4.0 * hd + ops.SOFTMAX_FLOPS_PER_ELEMENT) * kv_tokens
        nbytes = h * (2.0 * rows + 2.0 * kv_tokens) * hd * self.size
        return flops, nbytes

    def attention_times(self, rows: int, kv_tokens: np.ndarray) -> np.ndarray:
        """Seconds of one layer's attention for each entry of ``kv_tokens``: :func:`ops.roofline`
        vectorised (its efficiency curve makes time linear in work: (work + half) / (peak * max))."""
        flops, nbytes = self.attention_work(rows, kv_tokens)
        compute_s = (flops + self._cmp_half) / self._cmp_rate
        memory_s = (nbytes + self._mem_half) / self._mem_rate
        sram_bw = self.device.sram_bandwidth_bytes_per_s
        if sram_bw is not None:  # ops.roofline: bytes that fit on chip go at the on-chip bandwidth
            on_chip_s = (nbytes + self._mem_half) / (sram_bw * self.device.efficiency.memory_max)
            memory_s = np.where(nbytes <= self.device.sram_bytes, on_chip_s, memory_s)
        return self.device.launch_overhead_s + np.maximum(compute_s, memory_s)

    def decode_times(self, rows: int, kv_tokens: np.ndarray) -> np.ndarray:
        """Seconds of decode iterations of ``rows`` requests whose summed attended context is ``kv_tokens``."""
        return self.dense(rows)[0] + self.config.model.layers * self.attention_times(rows, np.asarray(kv_tokens, float))

    def decode_time(self, rows: int, kv_tokens: int) -> float:
        """One decode iteration through :func:`ops.roofline` itself (the scalar reference)."""
        flops, nbytes = self.attention_work(rows, float(kv_tokens))
        att = ops.roofline(self.device, "attention", flops, nbytes, self.dtype)
        return self.dense(rows)[0] + self.config.model.layers * att.time_s

    def decode_profile(self, rows: int, kv_tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(seconds, bytes) of each decode iteration: :meth:`decode_times` and :meth:`decode_bytes` in one pass."""
        kv = np.asarray(kv_tokens, float)
        flops, nbytes = self.attention_work(rows, kv)
        compute_s = (flops + self._cmp_half) / self._cmp_rate
        memory_s = (nbytes + self._mem_half) / self._mem_rate
        sram_bw = self.device.sram_bandwidth_bytes_per_s
        if sram_bw is not None:
            on_chip_s = (nbytes + self._mem_half) / (sram_bw * self.device.efficiency.memory_max)
            memory_s = np.where(nbytes <= self.device.sram_bytes, on_chip_s, memory_s)
        layers = self.config.model.layers
        dense_s, dense_bytes = self.dense(rows)
        return (dense_s + layers * (self.device.launch_overhead_s + np.maximum(compute_s, memory_s)),
                dense_bytes + layers * nbytes)

    def decode_bytes(self, rows: int, kv_tokens: np.ndarray) -> np.ndarray:
        return self.dense(rows)[1] + self.config.model.layers * self.attention_work(rows, np.asarray(kv_tokens, float))[1]

    def lone_decode(self, prompt_tokens: int, gen_tokens: int) -> tuple[float, float]:
        """(seconds, bytes) of a lone request's ``gen_tokens`` decode iterations after a prompt."""
        kv = prompt_tokens + 1.0 + np.arange(gen_tokens, dtype=float)
        return float(self.decode_times(1, kv).sum()), float(self.decode_bytes(1, kv).sum())

    # ---- prefill and copies ---------------------------------------------------------------
    def prefill(self, prompts: list[int]) -> tuple[float, float]:
        """(seconds, FLOPs) of processing the prompts of requests admitted together.

        Weight GEMMs with ``m`` = all prompt tokens; attention per request over its own prompt.
        """
        if not prompts:
            return 0.0, 0.0
        time_s, flops = self._prefill_dense(int(sum(prompts)))
        for p in prompts:
            a_s, a_flops = self._prefill_attention(p)
            time_s, flops = time_s + a_s, flops + a_flops
        head_s, head_flops = self._prefill_head(len(prompts))  # logits of each prompt's last token
        return time_s + head_s, flops + head_flops

    def _prefill_head(self, rows: int) -> tuple[float, float]:
        hit = self._head_cache.get(rows)
        if hit is None:
            m = self.config.model
            head = ops.gemm(self.device, rows, m.vocab // self.config.tp, m.hidden, self.dtype)
            hit = self._head_cache[rows] = (head.time_s, head.flops)
        return hit

    def _prefill_dense(self, tokens: int) -> tuple[float, float]:
        hit = self._prefill_cache.get(tokens)
        if hit is None:
            m, dev, tp = self.config.model, self.device, self.config.tp
            time_s = flops = 0.0
            for n_out, k_in in self._matrices():
                c = ops.gemm(dev, tokens, n_out, k_in, self.dtype)
                time_s, flops = time_s + c.time_s, flops + c.flops
            time_s += ELEMENTWISE_PER_LAYER * ops.elementwise(dev, tokens * m.hidden, self.dtype, inputs=2, outputs=1).time_s
            if tp > 1:
                ar = collectives.ring_all_reduce(self.topology, tokens * m.hidden * self.size)
                time_s += ALL_REDUCES_PER_LAYER * ar.time_s
            hit = self._prefill_cache[tokens] = (m.layers * time_s, m.layers * flops)
        return hit

    def _prefill_attention(self, prompt: int) -> tuple[float, float]:
        key = -prompt  # shares the cache dict with _prefill_dense under negative keys
        hit = self._prefill_cache.get(key)
        if hit is None:
            m = self.config.model
            a = ops.attention(self.device, self.heads_per_device, prompt, prompt, m.head_dim, self.dtype)
            hit = self._prefill_cache[key] = (m.layers * a.time_s, m.layers * a.flops)
        return hit

    def copy_time(self, nbytes: float) -> float:
        """A device-local copy (buffer reordering) of ``nbytes`` over HBM."""
        return ops.memcpy(self.device, nbytes).time_s if nbytes > 0 else 0.0

    def describe(self) -> str:
        m = self.config.model
        return (f"{m.name} tp={self.config.tp} on {self.device.name}: weights {self.weight_bytes / 1e9:.1f} GB/device, "
                f"KV {self.kv_bytes_per_token / 1e3:.0f} kB/token/device, {math.floor(self.free_bytes / 1e9)} GB free")
