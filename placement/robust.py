"""Robust placement: one placement that holds across several routing profiles (domains or resampled batches).

Candidates are the placements the base solvers find on every profile alone and on the pooled profile (the
sum of all, which is exactly the mean of the traffic term); each is scored on every profile by the MoETuner
objective, and the candidate with the least worst-case (``mode="worst"``) or mean (``mode="mean"``) score
wins. Because each single-profile solve is itself a candidate, the answer is never worse on the worst
profile than the base solver's single-profile placement (a test checks it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hwsim.placement.problem import (
    Placement,
    PlacementError,
    PlacementProblem,
    objective,
    validate,
)


def profile_problem(problem: PlacementProblem, loads: np.ndarray, routing: np.ndarray, name: str = "") -> PlacementProblem:
    """``problem`` with another profile's routing counts (same GPUs, capacity and costs)."""
    return PlacementProblem(loads=loads, routing=routing, gpus=problem.gpus, capacity=problem.capacity,
                            gpus_per_node=problem.gpus_per_node, intra_node_cost=problem.intra_node_cost,
                            inter_node_cost=problem.inter_node_cost, name=name or problem.name)


def _normalised(p: PlacementProblem) -> PlacementProblem:
    """Counts rescaled to the same token-slots per layer, so no profile weighs more for being longer."""
    per_layer = p.loads.sum(axis=1, keepdims=True)
    scale = np.where(per_layer > 0, 1.0 / np.maximum(per_layer, 1e-300), 0.0)
    r = p.routing * scale[:-1, :, None] if p.layers > 1 else p.routing
    return profile_problem(p, p.loads * scale, r, p.name)


@dataclass(frozen=True)
class RobustSolver:
    """Best worst-case (or mean) MoETuner objective over ``profiles`` plus the given problem."""

    name: str = "moetuner-robust"
    profiles: tuple[Any, ...] = ()        # PlacementProblems of the same shape, or (loads, routing) pairs
    mode: str = "worst"
    base: tuple[str, ...] = ("moetuner", "moetuner-minmax", "moetuner-replicate", "eplb", "greedy")
    time_limit_s: float = 10.0
    options: dict = field(default_factory=dict)

    def solve(self, problem: PlacementProblem) -> Placement:
        from hwsim.placement.solvers import get_solver

        if self.mode not in ("worst", "mean"):
            raise PlacementError(f"robust mode must be worst or mean, got {self.mode!r}")
        started = time.perf_counter()
        scenarios = [problem] + [p if isinstance(p, PlacementProblem) else profile_problem(problem, np.asarray(p[0]), np.asarray(p[1]), name=f"profile {i}")
                                 for i, p in enumerate(self.profiles)]
        for s in scenarios[1:]:
            if (s.layers, s.experts, s.gpus, s.capacity) != (problem.layers, problem.experts, problem.gpus, problem.capacity):
                raise PlacementError(f"robust: profile {s.name!r} has another shape than {problem.name!r}")
        scenarios = [_normalised(s) for s in scenarios]
        pooled = profile_problem(problem, np.sum([s.loads for s in scenarios], axis=0),
                                 np.sum([s.routing for s in scenarios], axis=0), "pooled")
        candidates: list[tuple[str, Placement]] = []
        solve_on = scenarios + ([pooled] if len(scenarios) > 1 else [])
        budget = self.time_limit_s / max(len(solve_on) * len(self.base), 1)
        for name in self.base:
            opts = {"time_limit_s": max(budget, 1.0)} if name.startswith("moetuner") else {}
            if name in ("moetuner", "moetuner-minmax"):
                opts["subprocess"] = False
            solver = get_solver(name, **opts, **self.options.get(name, {}))
            for s in solve_on:
                placement = solver.solve(s)
                validate(problem, placement)
                candidates.append((f"{name} on {s.name}", placement))
        scores = np.array([[objective(s, p).total for s in scenarios] for _, p in candidates])
        score = scores.max(axis=1) if self.mode == "worst" else scores.mean(axis=1)
        best = int(np.argmin(score))
        label, chosen = candidates[best]
        info = {"method": f"robust ({self.mode} over {len(scenarios)} profiles)", "chosen": label,
                "score": float(score[best]), "solve_s": time.perf_counter() - started,
                "profile_objectives": [float(v) for v in scores[best]]}
        return Placement(copies=chosen.copies, split=chosen.split, solver=self.name, info=info)
