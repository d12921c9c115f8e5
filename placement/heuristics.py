"""The placement baselines: contiguous (Megatron-style expert parallelism), round-robin, greedy
largest-first balancing, and an EPLB-style balancer with redundant copies of hot experts.

The EPLB-style solver is written from DeepSeek's published description (greedy heaviest-first packing
with an equal item count per bin; repeatedly replicate the expert with the highest load per copy;
hierarchical when nodes > 1: experts to nodes, then replicas and GPUs within each node). It has no
cross-layer term, by design.
"""

from __future__ import annotations

import numpy as np

from hwsim.placement.problem import Placement, PlacementProblem


class ContiguousSolver:
    """Expert i on GPU floor(i * G / E): the default layout of expert parallelism."""

    name = "contiguous"

    def solve(self, problem: PlacementProblem) -> Placement:
        e, g = problem.experts, problem.gpus
        row = (np.arange(e) * g) // e
        return Placement.from_assignment(np.tile(row, (problem.layers, 1)).astype(np.int64), g, self.name)


class RoundRobinSolver:
    """Expert i on GPU i mod G."""

    name = "round-robin"

    def solve(self, problem: PlacementProblem) -> Placement:
        row = np.arange(problem.experts) % problem.gpus
        return Placement.from_assignment(np.tile(row, (problem.layers, 1)).astype(np.int64), problem.gpus, self.name)


def greedy_layer(loads: np.ndarray, gpus: int, capacity: int) -> np.ndarray:
    """Largest expert first onto the least-loaded GPU that still has a free slot (ties: lowest index)."""
    gpu_of = np.empty(len(loads), dtype=np.int64)
    total = np.zeros(gpus)
    used = np.zeros(gpus, dtype=np.int64)
    for e in np.argsort(-loads, kind="stable"):
        free = np.flatnonzero(used < capacity)
        g = int(free[np.argmin(total[free])])
        gpu_of[e] = g
        total[g] += loads[e]
        used[g] += 1
    return gpu_of


class GreedySolver:
    """Per layer, largest-first onto the least-loaded GPU; ignores cross-layer traffic."""

    name = "greedy"

    def solve(self, problem: PlacementProblem) -> Placement:
        gpu_of = np.stack([greedy_layer(problem.loads[l], problem.gpus, problem.capacity) for l in range(problem.layers)])
        return Placement.from_assignment(gpu_of, problem.gpus, self.name)


def _pack_equal(weights: np.ndarray, owners: np.ndarray, bins: int, per_bin: int) -> np.ndarray:
    """Heaviest item first onto the lightest bin with room, never two items of one owner in a bin."""
    where = np.full(len(weights), -1, dtype=np.int64)
    total = np.zeros(bins)
    used = np.zeros(bins, dtype=np.int64)
    held: list[set[int]] = [set() for _ in range(bins)]
    for i in np.argsort(-weights, kind="stable"):
        ok = [b for b in range(bins) if used[b] < per_bin and int(owners[i]) not in held[b]]
        if not ok:  # only when copies outnumber bins; _replicate prevents it
            ok = [b for b in range(bins) if used[b] < per_bin]
        b = min(ok, key=lambda k: (total[k], k))
        where[i] = b
        total[b] += weights[i]
        used[b] += 1
        held[b].add(int(owners[i]))
    return where


def _replicate(loads: np.ndarray, slots: int, max_copies: int) -> np.ndarray:
    """Copies per expert: start at one, then give a copy to the expert with the most load per copy."""
    copies = np.ones(len(loads), dtype=np.int64)
    for _ in range(max(slots - len(loads), 0)):
        per_copy = np.where(copies < max_copies, loads / copies, -np.inf)
        if not np.isfinite(per_copy.max()):
            break
        copies[int(np.argmax(per_copy))] += 1
    return copies


def _eplb_group(loads: np.ndarray, experts: np.ndarray, gpus: list[int], capacity: int,
                copies_out: np.ndarray, split_out: np.ndarray) -> None:
    """Replicate and pack the given experts onto the given GPUs (one node, or all GPUs)."""
    slots = len(gpus) * capacity
    n_copies = _replicate(loads[experts], slots, len(gpus))
    owners = np.repeat(np.arange(len(experts)), n_copies)
    weights = loads[experts][owners] / n_copies[owners]
    per_bin = -(-len(owners) // len(gpus))
    where = _pack_equal(weights, owners, len(gpus), per_bin)
    for item, b in enumerate(where):
        e = experts[owners[item]]
        copies_out[e, gpus[b]] = True
        split_out[e, gpus[b]] += 1.0 / n_copies[owners[item]]


class EplbSolver:
    """EPLB-style: hierarchical balanced packing with redundant copies of hot experts (spare slots)."""

    name = "eplb"

    def solve(self, problem: PlacementProblem) -> Placement:
        L, E, G, C = problem.layers, problem.experts, problem.gpus, problem.capacity
        nodes, per_node = problem.nodes, int(problem.gpus_per_node)  # type: ignore[arg-type]
        copies = np.zeros((L, E, G), dtype=bool)
        split = np.zeros((L, E, G))
        hierarchical = nodes > 1 and E % nodes == 0 and E // nodes <= per_node * C
        for l in range(L):
            loads = problem.loads[l]
            if hierarchical:
                node_of = _pack_equal(loads, np.arange(E), nodes, E // nodes)
                for n in range(nodes):
                    members = np.flatnonzero(node_of == n)
                    _eplb_group(loads, members, list(range(n * per_node, (n + 1) * per_node)), C, copies[l], split[l])
            else:
                _eplb_group(loads, np.arange(E), list(range(G)), C, copies[l], split[l])
        return Placement(copies=copies, split=split, solver=self.name,
                         info={"hierarchical": hierarchical, "replicas": int(copies.sum() - L * E)})
