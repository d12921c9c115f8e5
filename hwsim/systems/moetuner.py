"""MoETuner's deployment model: expert-parallel ranks of tensor-parallel GPUs, the placement costs the
simulation implies, and routing counts from real recorded layers. Arrays in, arrays out: this module never
imports the placement solvers (hwsim core does not depend on ``hwsim.placement``); the suite joins them.

EP rank model (issue 16 item 5): an EP rank is a TP group of ``tp`` GPUs in one node. Its GEMMs split ``tp``
ways (compute and HBM add up); its tokens are sequence-sharded over the group, so each GPU sends and receives
its own share of the all-to-all over its own NVLink port and its own NIC (``tp`` ports per rank); each block
adds Megatron sequence-parallel TP collectives (:func:`hwsim.systems.moe.tp_collective_s`); attention runs
where the tokens are (``simulate(attention_with_tokens=True)``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from hwsim.costs import itemsize
from hwsim.errors import HardwareError
from hwsim.hardware import Hardware, Link, Topology, load_hardware
from hwsim.systems.moe import MoEModel, slot_bytes, slot_seconds

# MoETuner Section 6 (notes/placement.md): Mixtral-8x7B with 4-way expert parallelism, EP4xTP2 on one node of
# 8 H100s and EP4xTP4 on two nodes of 8 H200s.
PAPER_LAYOUTS = {"single": ("h100-sxm", 4, 2), "multi": ("h200-sxm-2x8", 4, 4)}


@dataclass(frozen=True)
class Scale:
    """One deployment: ``hardware`` has one device per EP rank; ``tp`` GPUs per rank."""

    name: str                    # "single" | "multi"
    hardware: Hardware
    tp: int = 1

    @property
    def label(self) -> str:
        g = self.hardware.topology.devices
        return f"{self.name} EP{g}" + (f"xTP{self.tp}" if self.tp > 1 else "")

    @property
    def key(self) -> str:
        return self.name + (f"-tp{self.tp}" if self.tp > 1 else "")


def _scaled_link(link: Link | None, ports: int) -> Link | None:
    return None if link is None else replace(link, bandwidth_bytes_per_s=link.bandwidth_bytes_per_s * ports)


def ep_rank(hw: Hardware, ep: int, tp: int) -> Hardware:
    """``hw`` (a node or a two-level cluster of GPUs) seen as ``ep`` EP ranks of ``tp`` GPUs each."""
    topo = hw.topology
    if ep * tp != topo.devices:
        raise HardwareError(f"EP{ep} x TP{tp} needs {ep * tp} GPUs, {hw.name} has {topo.devices}")
    per_node = topo.devices_per_node
    if per_node % tp:
        raise HardwareError(f"a TP group of {tp} must fit in a node of {per_node} GPUs")
    d = hw.device
    device = replace(d, peak_flops_per_s={k: v * tp for k, v in d.peak_flops_per_s.items()},
                     memory=replace(d.memory, capacity_bytes=d.memory.capacity_bytes * tp,
                                    bandwidth_bytes_per_s=d.memory.bandwidth_bytes_per_s * tp))
    nodes = topo.devices // per_node
    if nodes > 1:
        new_topo = Topology(kind="two-level", devices=ep, link=_scaled_link(topo.link, tp), nodes=nodes,
                            inter_link=_scaled_link(topo.inter_link, tp))
    else:
        new_topo = replace(topo, devices=ep, link=_scaled_link(topo.link, tp))
    return replace(hw, name=f"{hw.name}-ep{ep}" + (f"xtp{tp}" if tp > 1 else ""), device=device, topology=new_topo)


def scales_for(model: MoEModel, single: Hardware | None = None) -> list[Scale]:
    """Mixtral: the paper's two layouts. Fine-grained models: one GPU per EP rank, one node and two nodes."""
    multi = load_hardware("h200-sxm-2x8")
    single = single if single is not None else load_hardware("h100-sxm")
    if model.experts < multi.topology.devices:
        out = []
        for name, (preset, ep, tp) in PAPER_LAYOUTS.items():
            hw = single if name == "single" else multi
            if preset == "h100-sxm" and hw.topology.devices != ep * tp:
                hw = replace(hw, topology=replace(hw.topology, devices=ep * tp))
            out.append(Scale(name, ep_rank(hw, ep, tp), tp))
        return out
    return [Scale("single", single), Scale("multi", multi)]


@dataclass(frozen=True)
class PlacementCosts:
    """What one more token-slot costs, in units of one GPU's time per token-slot (the placement cost unit)."""

    capacity: int
    gpus: int
    gpus_per_node: int
    intra_node_cost: float
    inter_node_cost: float


def placement_costs(model: MoEModel, hw: Hardware, spare_slots: int, tp: int = 1) -> PlacementCosts:
    """The placement problem's constants the simulation implies.

    Tail unit: a slot's expert FFN on the rank plus receiving it (dispatch) and (k-1)/k partial outputs
    (combine) from a uniformly random rank. Traffic: a slot moving between ranks of a node costs its bytes
    over NVLink, between nodes over the network, divided by the number of ranks (all ports work at once)."""
    topo = hw.topology
    g = topo.devices
    per_node = topo.devices_per_node
    nbytes = slot_bytes(model)
    intra_s = nbytes / topo.link.bandwidth_bytes_per_s  # type: ignore[union-attr]
    inter_s = nbytes / topo.inter_link.bandwidth_bytes_per_s if topo.inter_link is not None else intra_s
    ingress_s = (per_node - 1) / g * intra_s + (g - per_node) / g * inter_s
    unit_s = slot_seconds(model, hw) + (1 + (model.top_k - 1) / model.top_k) * ingress_s
    return PlacementCosts(capacity=model.experts // g + spare_slots, gpus=g, gpus_per_node=per_node,
                          intra_node_cost=intra_s / g / unit_s, inter_node_cost=inter_s / g / unit_s)


def weight_bytes_per_gpu(model: MoEModel, hw: Hardware, spare_slots: int, tp: int = 1) -> float:
    """Weights one GPU holds when every expert slot of its rank is used (split ``tp`` ways)."""
    w = itemsize(model.weight_dtype)
    slots = model.experts // hw.topology.devices + spare_slots
    per_layer = (slots * model.expert_ffn + model.shared_ffn) * model.ffn_matrices * model.hidden + model.attention_params
    return per_layer * model.moe_layers * w / tp


def recorded_layers(expert_counts: np.ndarray, cross_counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Loads ``[3, E]`` and routing ``[2, E, E]`` of the recorded layers (0, 7, 15) as a 3-layer chain, from
    the real counts only (no generated layer). The pairs are 7 layers apart, so the chain is the affinity
    over that distance, which is weaker than between adjacent layers: a stated limit, not a fit."""
    return np.asarray(expert_counts, dtype=float), np.asarray(cross_counts, dtype=float)


def resample(loads: np.ndarray, routing: np.ndarray, slots: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A batch of ``slots`` token-slots per layer drawn from the counts (multinomial on each joint table)."""
    out_r = np.stack([rng.multinomial(slots, (r / r.sum()).ravel()).reshape(r.shape).astype(float) for r in routing])
    out_l = np.concatenate([out_r[:1].sum(axis=2), out_r.sum(axis=1)]) if len(out_r) else \
        rng.multinomial(slots, loads[0] / loads[0].sum())[None, :].astype(float)
    return out_l, out_r
