"""Expert-parallel MoE inference over a placement: what an expert placement is worth in time.

Per MoE layer, on every GPU of the topology:
1. attention (data parallel, the batch split evenly over GPUs; identical for every placement);
2. dispatch all-to-all: every token-slot moves from the GPU where it was last processed to the GPU
   serving its expert at this layer (flows share the topology's directed links, one
   :class:`SharedBandwidth` per link, weighted max-min fair);
3. grouped expert GEMMs on each GPU, sized by the token-slots it received (one launch; weights of every
   expert that got tokens are read once);
4. combine all-to-all: the partial outputs of a token's k slots are summed on its leader slot's GPU;
5. the layer ends when its slowest GPU ends (the tail).

Modelling assumption (MoETuner's premise, and the only way its cross-layer term can matter):
token-slots *follow their experts*. After layer l, slot j of a token lives on the GPU of its j-th
expert, and the next dispatch leaves from there; the slot at layer l+1 is the rank-paired choice, as
in the real cross-layer counts. Layer 0's slots start evenly spread. The combine's byte matrix assumes a
token's k choices are independent given the per-GPU loads (the data gives no within-token pairs); the
leader's broadcast of the summed state back to the slots' GPUs is folded into the next dispatch (an
approximation: it keeps the bytes per slot at one dispatch plus (k-1)/k combine, as in standard EP).
A message crosses every link of its route at once, each shared with that link's other flows; it is
done when its slowest link is (a per-link, not per-path, fairness approximation), plus the route's
largest latency once.

Workloads (shapes with their sources) are the module-level table ``MODELS``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generator

import numpy as np
import simpy

from hwsim.costs import itemsize, roofline
from hwsim.engine import Simulation, Tracer
from hwsim.errors import SimulationError
from hwsim.hardware import Hardware


class MoEError(SimulationError):
    """An MoE workload or layer input is inconsistent with the hardware."""


@dataclass(frozen=True)
class MoEModel:
    """The shapes that set an MoE layer's work."""

    name: str
    experts: int
    top_k: int
    moe_layers: int
    hidden: int
    expert_ffn: int                 # intermediate size of one expert
    ffn_matrices: int               # 3 for SwiGLU (gate, up, down)
    attention_params: int           # projection weights per layer (Q, K, V, O or MLA's)
    heads: int
    head_dim: int
    shared_ffn: int = 0             # intermediate size of always-on shared experts (0: none)
    weight_dtype: str = "bf16"
    act_dtype: str = "bf16"
    source: str = ""


MODELS: dict[str, MoEModel] = {
    # Mixtral-8x7B: HF mistralai/Mixtral-8x7B-v0.1 config.json (hidden 4096, intermediate 14336, 32 layers,
    # 8 local experts, 2 per token, 32 heads of 128, 8 KV heads): Q,O 4096^2 each, K,V 4096x1024 each.
    "mixtral-8x7b": MoEModel("mixtral-8x7b", 8, 2, 32, 4096, 14336, 3, 2 * 4096 * 4096 + 2 * 4096 * 1024, 32, 128,
                             source="HF mistralai/Mixtral-8x7B-v0.1 config.json"),
    # OLMoE-1B-7B: HF allenai/OLMoE-1B-7B-0924 config.json (hidden 2048, intermediate 1024, 16 layers,
    # 64 experts, 8 per token, 16 heads of 128, no GQA).
    "olmoe-1b-7b": MoEModel("olmoe-1b-7b", 64, 8, 16, 2048, 1024, 3, 4 * 2048 * 2048, 16, 128,
                            source="HF allenai/OLMoE-1B-7B-0924 config.json"),
    # DeepSeek-V3 (fine-grained, larger): HF deepseek-ai/DeepSeek-V3 config.json (hidden 7168,
    # moe_intermediate_size 2048, 256 routed experts, 8 per token, 1 shared expert, 61 layers of which the
    # first 3 are dense -> 58 MoE layers; MLA: q_lora 1536, kv_lora 512, 128 heads, qk 128+64, v 128; FP8 weights).
    # MLA projections: 7168*1536 + 1536*128*192 + 7168*576 + 512*128*256 + 128*128*7168 = 186,646,528.
    "deepseek-v3": MoEModel("deepseek-v3", 256, 8, 58, 7168, 2048, 3, 186_646_528, 128, 192, shared_ffn=2048,
                            weight_dtype="fp8", act_dtype="bf16", source="HF deepseek-ai/DeepSeek-V3 config.json"),
}


@dataclass(frozen=True)
class Batch:
    """One forward step: ``tokens`` tokens of average attention context ``context_tokens``."""

    tokens: int
    context_tokens: int


@dataclass(frozen=True)
class LayerResult:
    time_s: float
    attention_s: float              # the slowest rank's attention (+ its TP collectives)
    dispatch_tail_s: float          # last dispatch flow done, from the layer's dispatch start
    compute_s: np.ndarray           # [G] expert GEMM time (+ the expert block's TP collectives)
    gpu_end_s: np.ndarray           # [G] when each GPU finished the layer, from the layer's start
    gpu_slots: np.ndarray           # [G] token-slots processed
    cross_gpu_bytes: float
    cross_node_bytes: float
    all_to_all_tail_s: float = 0.0  # longest wait of a rank on its dispatch plus longest wait on its combine

    @property
    def token_tail_s(self) -> float:
        """Token-processing tail: the slowest rank's expert work."""
        return float(self.compute_s.max())


@dataclass(frozen=True)
class RunResult:
    model: str
    layers: tuple[LayerResult, ...] = field(repr=False)

    @property
    def time_s(self) -> float:
        return float(sum(r.time_s for r in self.layers))

    def layer_times_s(self) -> np.ndarray:
        return np.array([r.time_s for r in self.layers])

    @property
    def cross_gpu_bytes(self) -> float:
        return float(sum(r.cross_gpu_bytes for r in self.layers))

    @property
    def cross_node_bytes(self) -> float:
        return float(sum(r.cross_node_bytes for r in self.layers))

    def gpu_slots(self) -> np.ndarray:
        return np.stack([r.gpu_slots for r in self.layers])

    @property
    def token_tail_s(self) -> float:
        """Sum over layers of the slowest rank's expert processing (MoETuner's token-processing tail)."""
        return float(sum(r.token_tail_s for r in self.layers))

    @property
    def all_to_all_tail_s(self) -> float:
        """Sum over layers of the longest dispatch wait plus the longest combine wait of any rank."""
        return float(sum(r.all_to_all_tail_s for r in self.layers))


def slot_seconds(model: MoEModel, hardware: Hardware) -> float:
    """Time of one token-slot's expert FFN at the device's best efficiency (the placement cost unit)."""
    d = hardware.device
    flops = 2.0 * model.ffn_matrices * model.hidden * model.expert_ffn
    return flops / (d.peak(model.weight_dtype) * d.efficiency.compute_max)


def slot_bytes(model: MoEModel) -> float:
    """Bytes one token-slot carries in a dispatch or combine message."""
    return model.hidden * itemsize(model.act_dtype)


def attention_s(model: MoEModel, hardware: Hardware, batch: Batch, tokens: float | None = None) -> float:
    """Attention (projections and scores) on ``tokens`` tokens (default: one GPU's even share of the batch)."""
    d = hardware.device
    if tokens is None:
        tokens = batch.tokens / hardware.topology.devices
    w = itemsize(model.weight_dtype)
    a = itemsize(model.act_dtype)
    proj_flops = 2.0 * tokens * model.attention_params
    score_flops = 4.0 * tokens * batch.context_tokens * model.heads * model.head_dim
    shared_flops = 2.0 * model.ffn_matrices * tokens * model.hidden * model.shared_ffn
    nbytes = (model.attention_params + model.ffn_matrices * model.hidden * model.shared_ffn) * w + 4 * tokens * model.hidden * a
    return roofline(d, "attention", proj_flops + score_flops + shared_flops, nbytes, model.weight_dtype).time_s


def grouped_gemm_s(model: MoEModel, hardware: Hardware, slots_per_expert: np.ndarray) -> float:
    """One grouped GEMM launch over the experts a GPU serves, sized by their token-slots."""
    slots = float(slots_per_expert.sum())
    if slots <= 0:
        return 0.0
    active = int(np.count_nonzero(slots_per_expert > 0))
    w = itemsize(model.weight_dtype)
    a = itemsize(model.act_dtype)
    flops = 2.0 * model.ffn_matrices * slots * model.hidden * model.expert_ffn
    nbytes = active * model.ffn_matrices * model.hidden * model.expert_ffn * w + slots * (2 * model.hidden + 2 * model.expert_ffn) * a
    return roofline(hardware.device, "grouped_gemm", flops, nbytes, model.weight_dtype).time_s


def tp_collective_s(model: MoEModel, hardware: Hardware, tokens: float, tp: int) -> float:
    """Megatron sequence-parallel TP collectives of one block (all-gather in, reduce-scatter out) on ``tokens``
    activations of one rank: each GPU moves 2 (tp-1)/tp of the tensor over its own NVLink port.

    ``hardware`` is the rank's (see :func:`hwsim.systems.moetuner.ep_rank`, whose links carry ``tp`` ports),
    so one GPU's port is ``bandwidth / tp``. Assumption: the TP group's NVLink traffic does not share
    bandwidth with the all-to-all (they alternate in time within a rank)."""
    if tp <= 1 or tokens <= 0:
        return 0.0
    link = hardware.topology.link
    nbytes = 2.0 * (tp - 1) / tp * tokens * model.hidden * itemsize(model.act_dtype)
    return nbytes / (link.bandwidth_bytes_per_s / tp) + 2 * (tp - 1) * link.latency_s  # type: ignore[union-attr]


def dispatch_slots(split_prev: np.ndarray | None, split: np.ndarray, loads: np.ndarray,
                   routing_prev: np.ndarray | None) -> np.ndarray:
    """``[g, h]`` token-slots moving from GPU g to GPU h at a layer's dispatch."""
    gpus = split.shape[1]
    if split_prev is None or routing_prev is None:
        per_gpu = loads @ split  # slots each GPU receives; sources spread evenly (layer 0)
        return np.tile(per_gpu / gpus, (gpus, 1))
    return split_prev.T @ routing_prev @ split


def combine_slots(gpu_slots: np.ndarray, top_k: int) -> np.ndarray:
    """``[g, h]`` partial outputs sent from g to h: each token's k-1 other slots send theirs to its
    leader slot's GPU, which sums them (the leader is on h with probability load_h / total)."""
    total = gpu_slots.sum()
    if total <= 0 or top_k < 2:
        return np.zeros((len(gpu_slots), len(gpu_slots)))
    m = (top_k - 1) / top_k * np.outer(gpu_slots, gpu_slots) / total
    np.fill_diagonal(m, 0.0)
    return m


def _all_to_all(sim: Simulation, links: dict, hardware: Hardware, nbytes: np.ndarray, ready: Sequence[simpy.Event],
                label: str) -> list[list[simpy.Event]]:
    """Start every g->h message once GPU g is ready; returns the done events into each GPU."""
    topo = hardware.topology
    env = sim.env
    into: list[list[simpy.Event]] = [[] for _ in range(topo.devices)]

    def message(g: int, h: int, size: float) -> Generator[simpy.events.Event, object, None]:
        yield ready[g]
        route = topo.route(g, h)
        yield simpy.AllOf(env, [links[lid].transfer(size, label=f"{label} {g}->{h}") for lid in route])
        latency = max(topo.link_for(lid).latency_s for lid in route)
        if latency > 0:
            yield env.timeout(latency)

    for g, h in zip(*np.nonzero(nbytes)):
        if g != h:
            into[int(h)].append(env.process(message(int(g), int(h), float(nbytes[g, h]))))
    return into


def simulate(model: MoEModel, hardware: Hardware, batch: Batch, splits: np.ndarray, loads: np.ndarray,
             routing: np.ndarray, tracer: Tracer | None = None, track: str = "moe", tp: int = 1,
             attention_with_tokens: bool = False) -> RunResult:
    """Run every MoE layer of one batch.

    ``splits[l, e, g]``: the placement's token share; ``loads[l, e]`` and ``routing[l, a, b]``: routing
    counts of any scale (rescaled to ``batch.tokens * top_k`` slots per layer). With ``tp > 1`` each of the
    G devices is an EP rank of ``tp`` GPUs (``hardware`` from :func:`hwsim.systems.moetuner.ep_rank`) and the
    attention and expert blocks add their TP collectives. With ``attention_with_tokens`` a rank's attention
    runs on the tokens whose leader slot it served at the layer before (tokens follow their experts), so
    attention is uneven too; otherwise the batch is split evenly.
    """
    topo = hardware.topology
    L, E, G = splits.shape
    if E != model.experts or G != topo.devices or loads.shape != (L, E) or routing.shape != (max(L - 1, 0), E, E):
        raise MoEError(f"{model.name}: placement {splits.shape}, loads {loads.shape}, routing {routing.shape} do not fit "
                       f"{model.experts} experts on {topo.devices} GPUs")
    if G < 2 or topo.kind not in ("switch", "two-level"):
        raise MoEError(f"{hardware.name}: expert parallelism needs a switch or two-level topology of >= 2 GPUs")
    slots_per_layer = batch.tokens * model.top_k
    per_node = topo.devices_per_node
    node = np.arange(G) // per_node
    cross_node = node[:, None] != node[None, :]
    off = ~np.eye(G, dtype=bool)
    results: list[LayerResult] = []
    clock_s = 0.0
    for l in range(L):
        scale = slots_per_layer / loads[l].sum() if loads[l].sum() > 0 else 0.0
        layer_loads = loads[l] * scale
        prev_split = splits[l - 1] if l > 0 else None
        prev_routing = routing[l - 1] * (slots_per_layer / routing[l - 1].sum()) if l > 0 and routing[l - 1].sum() > 0 else None
        d_slots = dispatch_slots(prev_split, splits[l], layer_loads, prev_routing)
        per_expert_gpu = layer_loads[:, None] * splits[l]            # [E, G]
        gpu_slots = per_expert_gpu.sum(axis=0)
        c_slots = combine_slots(gpu_slots, model.top_k)
        compute = np.array([grouped_gemm_s(model, hardware, per_expert_gpu[:, g])
                            + tp_collective_s(model, hardware, float(gpu_slots[g]), tp) for g in range(G)])
        if attention_with_tokens and l > 0:
            prev_slots = results[-1].gpu_slots
            tokens_at = prev_slots / max(prev_slots.sum(), 1e-300) * batch.tokens
        else:
            tokens_at = np.full(G, batch.tokens / G)
        att_g = np.array([attention_s(model, hardware, batch, float(t)) + tp_collective_s(model, hardware, float(t), tp)
                          for t in tokens_at])
        att_s = float(att_g.max())

        # each layer is its own simulation (the layer ends at a barrier), started where the last ended; a
        # rank starts its dispatch when its own attention is done (t0 = the slowest rank's)
        sim = Simulation(tracer=tracer, env=simpy.Environment(initial_time=clock_s))
        env = sim.env
        t0 = clock_s + att_s
        if tracer is not None:
            tracer.span(f"{track}/attention", f"L{l} attention", clock_s, t0, "compute")
        links = {lid: sim.bandwidth(topo.link_for(lid).bandwidth_bytes_per_s, f"{track}/link {lid[0]} {lid[1]}->{lid[2]}")
                 for lid in topo.link_ids()}
        ready = [env.timeout(float(a)) for a in att_g]
        dispatched = _all_to_all(sim, links, hardware, d_slots * slot_bytes(model), ready, f"L{l} dispatch")
        computed = [env.event() for _ in range(G)]
        ends = np.zeros(G)
        dispatch_done = np.zeros(G)
        dispatch_wait = np.zeros(G)
        combine_wait = np.zeros(G)
        computed_at = np.zeros(G)

        def expert(g: int) -> Generator[simpy.events.Event, object, None]:
            yield ready[g]
            w0 = env.now
            yield simpy.AllOf(env, dispatched[g])
            dispatch_wait[g] = env.now - w0
            dispatch_done[g] = env.now - t0
            c0 = env.now
            yield env.timeout(compute[g])
            if tracer is not None:
                tracer.span(f"{track}/gpu{g}", f"L{l} experts ({gpu_slots[g]:.0f} slots)", c0, env.now, "compute")
            computed_at[g] = env.now
            computed[g].succeed()

        for g in range(G):
            env.process(expert(g))
        combined = _all_to_all(sim, links, hardware, c_slots * slot_bytes(model), computed, f"L{l} combine")

        def finish(g: int) -> Generator[simpy.events.Event, object, None]:
            yield simpy.AllOf(env, combined[g] + [computed[g]])
            combine_wait[g] = env.now - computed_at[g]
            ends[g] = env.now - t0

        for g in range(G):
            env.process(finish(g))
        sim.run()
        clock_s += att_s + float(ends.max())
        moved = (d_slots + c_slots) * slot_bytes(model)
        results.append(LayerResult(
            time_s=att_s + float(ends.max()), attention_s=att_s, dispatch_tail_s=float(dispatch_done.max()),
            compute_s=compute, gpu_end_s=ends, gpu_slots=gpu_slots,
            cross_gpu_bytes=float(moved[off].sum()), cross_node_bytes=float(moved[cross_node].sum()),
            all_to_all_tail_s=float(dispatch_wait.max() + combine_wait.max())))
    return RunResult(model.name, tuple(results))
