"""Replication inside the optimisation: hot experts get copies in spare slots and their tokens are split.

Per layer, a mixed-integer program chooses which GPU holds a copy of which expert (binary ``c[e, g]``, at most
``capacity`` copies per GPU) and what share of the expert's tokens each copy serves (continuous
``s[e, g] <= c[e, g]``, summing to 1), minimising the most loaded GPU's token-slots. Then every layer's GPUs
are relabelled (a permutation keeps the tail) to cut the traffic from the previous layer, an assignment
problem solved exactly. The result is compared with EPLB's placement on the full objective and the better
is kept, and EPLB's layer is the fallback wherever the program does not beat it, so the answer is never
worse than EPLB on the same problem (a test checks it).

Bound (valid for placements with copies): per layer, the larger of the mean GPU load and the program's own
proven bound; the traffic bound is 0, since a copy of each expert could sit wherever its tokens are.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pulp

from hwsim.placement.heuristics import EplbSolver
from hwsim.placement.paper import PAPER_GAP_REL, _var, has_solution, make_solver, run
from hwsim.placement.problem import (
    Placement,
    PlacementProblem,
    objective,
    split_traffic,
)

_TOL = 1e-9


def tail_split(loads: np.ndarray, gpus: int, capacity: int, backend: str, time_limit_s: float,
               gap_rel: float) -> tuple[np.ndarray | None, float]:
    """One layer's min-max program: ``split [E, G]`` (None if nothing found) and its proven tail bound."""
    E = len(loads)
    prob = pulp.LpProblem("replicate", pulp.LpMinimize)
    c = {(e, g): _var(prob, f"c_{e}_{g}", cat="Binary") for e in range(E) for g in range(gpus)}
    s = {(e, g): _var(prob, f"s_{e}_{g}", 0, 1) for e in range(E) for g in range(gpus)}
    m = _var(prob, "m", 0)
    prob += m
    for e in range(E):
        prob += pulp.lpSum(s[e, g] for g in range(gpus)) == 1
        for g in range(gpus):
            prob += s[e, g] <= c[e, g]
    for g in range(gpus):
        prob += pulp.lpSum(c[e, g] for e in range(E)) <= capacity
        prob += pulp.lpSum(float(loads[e]) * s[e, g] for e in range(E)) <= m
    prob += c[int(np.argmax(loads)), 0] == 1  # GPUs are interchangeable within one layer's program
    run(prob, make_solver(backend, time_limit_s, gap_rel))
    mean = float(loads.sum()) / gpus
    bound = mean
    if backend == "highs" and prob.solverModel is not None:
        dual = float(prob.solverModel.getInfo().mip_dual_bound)
        if np.isfinite(dual):
            bound = max(bound, dual)
    if not has_solution(prob):
        return None, bound
    split = np.array([[max(s[e, g].value() or 0.0, 0.0) for g in range(gpus)] for e in range(E)])
    split[split <= 1e-7] = 0.0
    split /= split.sum(axis=1, keepdims=True)
    if np.count_nonzero(split, axis=0).max() > capacity:
        return None, bound
    return split, bound


def relabel_for_traffic(problem: PlacementProblem, split: np.ndarray) -> np.ndarray:
    """Permute each layer's GPUs (keeps every layer's tail) to cut the traffic cost from the layer before."""
    from hwsim.placement.ilp import assignment

    out = split.copy()
    d = problem.cost_matrix()
    for l in range(1, problem.layers):
        flows = split_traffic(out[l - 1:l + 1], problem.routing[l - 1:l])[0]   # [h, b]: prev GPU h -> bin b
        perm = assignment(flows.T @ d)                                         # bin b -> GPU perm[b]
        layer = np.zeros_like(out[l])
        layer[:, perm] = out[l]
        out[l] = layer
    return out


@dataclass(frozen=True)
class ReplicatingSolver:
    """MoETuner-style ILP that may replicate hot experts into spare slots (``capacity * gpus > experts``)."""

    name: str = "moetuner-replicate"
    backend: str = "auto"
    time_limit_s: float = 30.0
    gap_rel: float = PAPER_GAP_REL

    def solve(self, problem: PlacementProblem) -> Placement:
        from hwsim.placement.ilp import backend_name

        backend = backend_name(self.backend)
        started = time.perf_counter()
        deadline = started + self.time_limit_s
        eplb = EplbSolver().solve(problem)
        split = eplb.split.copy()
        G = problem.gpus
        mean = problem.loads.sum(axis=1) / G
        tails = np.einsum("le,leg->lg", problem.loads, split).max(axis=1)
        bounds = mean.copy()
        todo = [l for l in range(problem.layers) if tails[l] > (1 + self.gap_rel) * mean[l]]
        solved = 0
        for i, l in enumerate(todo):
            left = deadline - time.perf_counter()
            if left < 0.05:
                break
            cand, bound = tail_split(problem.loads[l], G, problem.capacity, backend, left / (len(todo) - i), self.gap_rel)
            bounds[l] = max(bounds[l], bound)
            solved += 1
            if cand is not None and float((problem.loads[l] @ cand).max()) < tails[l] - _TOL:
                split[l] = cand
                tails[l] = float((problem.loads[l] @ cand).max())
        split = relabel_for_traffic(problem, split)
        ours = Placement(copies=split > 0, split=split, solver=self.name)
        value = objective(problem, ours).total
        eplb_value = objective(problem, eplb).total
        kept = "ilp"
        if eplb_value < value:
            ours, value, kept = Placement(eplb.copies, eplb.split, self.name), eplb_value, "eplb"
        lb = float(bounds.sum())
        info = {"method": "replicate", "backend": backend, "layers_solved": solved, "kept": kept,
                "solve_s": time.perf_counter() - started, "objective": value, "lower_bound": lb,
                "gap": (value - lb) / value if value > 0 else 0.0, "replicas": ours.replicas(),
                "status": "ok" if solved == len(todo) else "time budget spent; EPLB layers kept"}
        return Placement(copies=ours.copies, split=ours.split, solver=self.name, info=info)
