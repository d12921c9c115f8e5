"""MoETuner's placement ILP on PuLP (CBC by default, HiGHS when highspy is installed).

Objective (both terms in units of processing one token-slot, see :mod:`hwsim.placement.problem`):
    sum_l max_g load[l, g]  +  sum_l sum_{a,b} R[l, a, b] * D[gpu(a), gpu(b)]
with the two-level topology cost D = intra * [different GPU] + (inter - intra) * [different node].
The product x[l,a,g] * x[l+1,b,h] is linearised through "together" variables bounded above by both
placements (w <= x_a, w <= x_b), which the objective pushes up: exact because the costs are >= 0.

Two ways to solve it:
* ``joint``: the whole model above, exact on small problems (tests check it against brute force).
* ``two-stage`` (default at scale, MoETuner's own decomposition): per layer, an ILP groups experts
  into G balanced clusters (min max cluster load, warm-started from greedy; its LP bound is the mean
  so CBC's relative gap is meaningful); then each layer's clusters are assigned to GPUs given the
  previous layer (an assignment ILP, integral LP); then swap-based local search on the joint objective.
  The gap is reported against a proven lower bound (load: max(mean, heaviest expert) per layer;
  traffic: tokens that must leave a GPU/node because it can host only so many next-layer experts).

CBC's time limit is soft (its first LP ignores it), so a solve runs in a worker subprocess that is
killed at ``hard_timeout_s``; the greedy + assignment + local-search incumbent is returned then.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pulp

from hwsim.placement.heuristics import greedy_layer
from hwsim.placement.problem import Placement, PlacementError, PlacementProblem, objective


def backend_name(preferred: str = "auto") -> str:
    """'highs' when asked for (or 'auto') and highspy is importable, else 'cbc'."""
    if preferred not in ("auto", "cbc", "highs"):
        raise PlacementError(f"ILP backend must be auto, cbc or highs, got {preferred!r}")
    if preferred in ("auto", "highs"):
        try:
            if pulp.HiGHS(msg=False).available():
                return "highs"
        except Exception:  # an unusable highspy counts as absent
            pass
        if preferred == "highs":
            raise PlacementError("ILP backend 'highs' asked for but highspy is not installed (pip install highspy)")
    return "cbc"


def _make_solver(backend: str, time_limit_s: float, gap_rel: float | None, warm: bool):
    if backend == "highs":
        return pulp.HiGHS(msg=False, timeLimit=time_limit_s, gapRel=gap_rel)
    with warnings.catch_warnings():
        # PuLP 3.x warns that the bundled-CBC class goes away in 4.0; the version range is pinned for it
        warnings.simplefilter("ignore", DeprecationWarning)
        return pulp.PULP_CBC_CMD(msg=False, timeLimit=max(1, int(round(time_limit_s))), gapRel=gap_rel,
                                 warmStart=warm, threads=1)


def _var(prob: pulp.LpProblem, name: str, low: float | None = None, up: float | None = None,
         cat: str = "Continuous") -> pulp.LpVariable:
    """A variable owned by ``prob`` (PuLP >= 3.3 asks for this; older versions build it directly)."""
    if hasattr(prob, "add_variable"):
        return prob.add_variable(name, low, up, cat)
    return pulp.LpVariable(name, low, up, cat)


def _run(prob: pulp.LpProblem, solver: pulp.LpSolver) -> None:
    from hwsim.placement.paper import run

    run(prob, solver)


def _has_solution(prob: pulp.LpProblem) -> bool:
    # PuLP says "Optimal" when a time limit stops CBC with an incumbent; sol_status tells them apart.
    return prob.sol_status in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible)


# ---------------------------------------------------------------------------------------------
# bounds and local search (numpy only)

def lower_bound(problem: PlacementProblem, tail_bound: float | None = None) -> float:
    """A proven lower bound of the objective for single-copy placements.

    ``tail_bound``: a proven bound on the sum of the layers' tails from stage 1 (the min-max ILP's own
    bound); the default is the sum of max(mean GPU load, heaviest expert)."""
    G, C = problem.gpus, problem.capacity
    load_lb = float(np.maximum(problem.loads.sum(axis=1) / G, problem.loads.max(axis=1)).sum())
    if tail_bound is not None:
        load_lb = max(load_lb, tail_bound)
    traffic_lb = 0.0
    per_node = int(problem.gpus_per_node)  # type: ignore[arg-type]
    for l in range(problem.layers - 1):
        r = problem.routing[l]
        for together, cost in ((C, problem.intra_node_cost), (C * per_node, problem.inter_node_cost - problem.intra_node_cost)):
            if cost <= 0 or together >= problem.experts:
                continue
            rows = np.sort(r, axis=1)[:, ::-1]
            cols = np.sort(r, axis=0)[::-1, :]
            must = max(float(rows[:, together:].sum()), float(cols[together:, :].sum()))
            traffic_lb += cost * must
    return load_lb + traffic_lb


def _one_hot(gpu_of: np.ndarray, gpus: int) -> np.ndarray:
    x = np.zeros((len(gpu_of), gpus))
    x[np.arange(len(gpu_of)), gpu_of] = 1.0
    return x


def _placement_cost(problem: PlacementProblem, gpu_of: np.ndarray, l: int, d: np.ndarray) -> np.ndarray:
    """``T[e, g]``: traffic cost of layer l's expert e sitting on GPU g, neighbours fixed."""
    t = np.zeros((problem.experts, problem.gpus))
    if l > 0:
        t += problem.routing[l - 1].T @ _one_hot(gpu_of[l - 1], problem.gpus) @ d
    if l < problem.layers - 1:
        t += problem.routing[l] @ _one_hot(gpu_of[l + 1], problem.gpus) @ d.T
    return t


def local_search(problem: PlacementProblem, gpu_of: np.ndarray, max_rounds: int = 20, deadline: float | None = None) -> np.ndarray:
    """Best-improvement swaps and moves of experts within a layer on the joint objective."""
    gpu_of = gpu_of.copy()
    d = problem.cost_matrix()
    E, G, C = problem.experts, problem.gpus, problem.capacity
    for _ in range(max_rounds):
        improved = False
        for l in range(problem.layers):
            if deadline is not None and time.perf_counter() > deadline:
                return gpu_of
            p = problem.loads[l]
            while deadline is None or time.perf_counter() < deadline:
                t = _placement_cost(problem, gpu_of, l, d)
                g_of = gpu_of[l]
                load = np.bincount(g_of, weights=p, minlength=G)
                count = np.bincount(g_of, minlength=G)
                here = t[np.arange(E), g_of]
                best, best_move = -1e-9 * max(1.0, load.max()), None
                # swaps a<->b
                dt = t[:, g_of] + t[:, g_of].T - here[:, None] - here[None, :]
                dp = p[None, :] - p[:, None]  # load change of a's GPU (gains b, loses a)
                la = load[g_of][:, None] + dp
                lb = load[g_of][None, :] - dp
                top = np.sort(load)[::-1]
                # max over GPUs other than g_of[a], g_of[b]: use the top three loads
                order = np.argsort(-load)
                rest = np.full((E, E), 0.0)
                for k in range(min(3, G)):
                    gk = order[k]
                    mask = (g_of[:, None] != gk) & (g_of[None, :] != gk) & (rest == 0.0)
                    rest = np.where(mask, top[k], rest)
                new_max = np.maximum(rest, np.maximum(la, lb))
                delta = dt + new_max - load.max()
                delta[g_of[:, None] == g_of[None, :]] = np.inf
                a, b = np.unravel_index(np.argmin(delta), delta.shape)
                if delta[a, b] < best:
                    best, best_move = delta[a, b], ("swap", int(a), int(b))
                # moves of e to a GPU with a free slot
                for h in np.flatnonzero(count < C):
                    new_load_h = load[h] + p
                    new_load_src = load[g_of] - p
                    others = np.zeros(E)  # max load over GPUs other than g_of[e] and h
                    filled = np.zeros(E, dtype=bool)
                    for k in range(min(3, G)):
                        gk = order[k]
                        take = ~filled & (g_of != gk) & (gk != h)
                        others[take] = top[k]
                        filled |= take
                    nm = np.maximum(others, np.maximum(new_load_h, new_load_src))
                    dm = t[:, h] - here + nm - load.max()
                    dm[g_of == h] = np.inf
                    e = int(np.argmin(dm))
                    if dm[e] < best:
                        best, best_move = dm[e], ("move", e, int(h))
                if best_move is None:
                    break
                kind, i, j = best_move
                if kind == "swap":
                    gpu_of[l, i], gpu_of[l, j] = gpu_of[l, j], gpu_of[l, i]
                else:
                    gpu_of[l, i] = j
                improved = True
        if not improved:
            break
    return gpu_of


# ---------------------------------------------------------------------------------------------
# the ILPs

def balance_layers(loads: np.ndarray, gpus: int, capacity: int, backend: str, time_limit_s: float,
                   gap_rel: float) -> tuple[np.ndarray, np.ndarray, str, float]:
    """Stage 1: per layer, group the experts into ``gpus`` clusters of <= capacity, min max cluster load.

    The layers are independent blocks of one ILP (one solver call, not one per layer); layers where
    greedy is already within ``gap_rel`` of the bound max(mean, heaviest expert) are left out.
    Returns (cluster of each expert [L, E], relative gap per layer to max(mean, heaviest), status,
    a proven lower bound on the sum over layers of the tail)."""
    L, E = loads.shape
    clusters = np.stack([greedy_layer(loads[l], gpus, capacity) for l in range(L)])
    bound = np.maximum(loads.sum(axis=1) / gpus, loads.max(axis=1))
    best = np.array([np.bincount(clusters[l], weights=loads[l], minlength=gpus).max() for l in range(L)])

    proven_sum = 0.0  # what the ILP proves beyond the simple bounds, summed over layers

    def gaps() -> np.ndarray:
        return np.where(best > 0, (best - bound) / np.maximum(best, 1e-300), 0.0)

    todo_all = [l for l in range(L) if best[l] > bound[l] * (1 + gap_rel)]
    if not todo_all:
        return clusters, gaps(), "greedy within tolerance", float(bound.sum())
    # blocks of layers small enough for the solver; later blocks share what time is left
    per_layer = E * gpus
    size = max(1, STAGE1_MAX_BINARIES // per_layer)
    blocks = [todo_all[i:i + size] for i in range(0, len(todo_all), size)]
    deadline = time.perf_counter() + time_limit_s
    statuses = []
    for index, todo in enumerate(blocks):
        left = deadline - time.perf_counter()
        if left < 1.0:
            statuses.append("time budget spent; greedy kept")
            break
        status = _balance_block(loads, todo, clusters, best, gpus, capacity, backend,
                                left / (len(blocks) - index), gap_rel)
        if status == "optimal":
            # CBC stopped within gap_rel of its own bound on the block's sum of tails: a bound on that sum
            proven_sum += max(0.0, (1 - gap_rel) * float(best[todo].sum()) - float(bound[todo].sum()))
        statuses.append(status)
    gap_of = np.where(best > 0, (best - bound) / np.maximum(best, 1e-300), 0.0)
    return clusters, gap_of, ", ".join(sorted(set(statuses))), float(bound.sum()) + proven_sum


STAGE1_MAX_BINARIES = 20_000


def _balance_block(loads: np.ndarray, todo: list[int], clusters: np.ndarray, best: np.ndarray, gpus: int,
                   capacity: int, backend: str, time_limit_s: float, gap_rel: float) -> str:
    """One stage-1 ILP over the layers ``todo``; improves ``clusters`` and ``best`` in place."""
    E = loads.shape[1]
    prob = pulp.LpProblem("balance", pulp.LpMinimize)
    x = {(l, e, c): _var(prob, f"x_{l}_{e}_{c}", cat="Binary") for l in todo for e in range(E) for c in range(gpus)}
    m = {l: _var(prob, f"m_{l}", 0) for l in todo}
    prob += pulp.lpSum(m.values())
    for l in todo:
        for e in range(E):
            prob += pulp.lpSum(x[l, e, c] for c in range(gpus)) == 1
        for c in range(gpus):
            prob += pulp.lpSum(float(loads[l, e]) * x[l, e, c] for e in range(E)) <= m[l]
            prob += pulp.lpSum(x[l, e, c] for e in range(E)) <= capacity
        # symmetry breaking: clusters are unlabelled here, so the heaviest expert opens cluster 0
        heavy = int(np.argmax(loads[l]))
        prob += x[l, heavy, 0] == 1
        g0 = int(clusters[l, heavy])
        relabel = np.arange(gpus)
        relabel[[0, g0]] = relabel[[g0, 0]]
        start = relabel[clusters[l]]
        for e in range(E):
            for c in range(gpus):
                x[l, e, c].setInitialValue(1 if start[e] == c else 0)
        m[l].setInitialValue(float(best[l]))
    _run(prob, _make_solver(backend, time_limit_s, gap_rel, warm=True))
    if not _has_solution(prob):
        return "solver found nothing; greedy kept"
    for l in todo:
        cl = np.array([max(range(gpus), key=lambda c: x[l, e, c].value() or 0.0) for e in range(E)], dtype=np.int64)
        value = np.bincount(cl, weights=loads[l], minlength=gpus).max()
        if value < best[l] and np.bincount(cl, minlength=gpus).max() <= capacity:
            clusters[l], best[l] = cl, value
    return "optimal" if prob.sol_status == pulp.LpSolutionOptimal else "time limit with incumbent"


def assignment(cost: np.ndarray) -> np.ndarray:
    """Stage 2: row -> column permutation of least total cost (Hungarian algorithm with potentials).

    The assignment ILP's LP is integral, so this is the ILP's exact optimum without a solver call."""
    n = cost.shape[0]
    inf = float("inf")
    u, v = np.zeros(n + 1), np.zeros(n + 1)
    match = np.zeros(n + 1, dtype=np.int64)  # match[col] = row (1-based), 0 = free
    way = np.zeros(n + 1, dtype=np.int64)
    for i in range(1, n + 1):
        match[0] = i
        j0 = 0
        minv = np.full(n + 1, inf)
        used = np.zeros(n + 1, dtype=bool)
        while True:
            used[j0] = True
            i0 = match[j0]
            delta, j1 = inf, 0
            for j in range(1, n + 1):
                if not used[j]:
                    cur = cost[i0 - 1, j - 1] - u[i0] - v[j]
                    if cur < minv[j]:
                        minv[j], way[j] = cur, j0
                    if minv[j] < delta:
                        delta, j1 = minv[j], j
            for j in range(n + 1):
                if used[j]:
                    u[match[j]] += delta
                    v[j] -= delta
                else:
                    minv[j] -= delta
            j0 = j1
            if match[j0] == 0:
                break
        while True:
            j1 = way[j0]
            match[j0] = match[j1]
            j0 = j1
            if j0 == 0:
                break
    out = np.zeros(n, dtype=np.int64)
    for j in range(1, n + 1):
        out[match[j] - 1] = j - 1
    return out


def two_stage(problem: PlacementProblem, backend: str, deadline: float, gap_rel: float) -> tuple[np.ndarray, dict]:
    L, G = problem.layers, problem.gpus
    d = problem.cost_matrix()
    gpu_of = np.zeros((L, problem.experts), dtype=np.int64)
    left = max(deadline - time.perf_counter(), 1.0)
    clusters, gaps, status, proven = balance_layers(problem.loads, G, problem.capacity, backend, 0.6 * left, gap_rel)
    for l in range(L):
        if l == 0:
            perm = np.arange(G)
        else:
            # cost of cluster c on GPU g: traffic from layer l-1 (already placed) into c's experts
            member = _one_hot(clusters[l], G)  # [E, c]
            from_gpu = _one_hot(gpu_of[l - 1], G).T @ problem.routing[l - 1] @ member  # [h, c]
            perm = assignment(from_gpu.T @ d)  # [c, g] = sum_h from_gpu[h, c] * d[h, g]
        gpu_of[l] = perm[clusters[l]]
    info = {"stage1_gap_max": float(gaps.max()), "stage1_status": status, "tail_bound": proven}
    return gpu_of, info


def joint_ilp(problem: PlacementProblem, backend: str, time_limit_s: float, gap_rel: float | None,
              start: np.ndarray | None = None) -> tuple[np.ndarray | None, dict]:
    """The whole model as one ILP (exact for small problems)."""
    if problem.nodes > 1 and problem.inter_node_cost < problem.intra_node_cost:
        raise PlacementError("the MoETuner ILP needs inter_node_cost >= intra_node_cost "
                             f"(got {problem.inter_node_cost} < {problem.intra_node_cost})")
    L, E, G, C = problem.layers, problem.experts, problem.gpus, problem.capacity
    per_node, nodes = int(problem.gpus_per_node), problem.nodes  # type: ignore[arg-type]
    prob = pulp.LpProblem("moetuner", pulp.LpMinimize)
    x = {(l, e, g): _var(prob, f"x_{l}_{e}_{g}", cat="Binary") for l in range(L) for e in range(E) for g in range(G)}
    m = [_var(prob, f"m_{l}", 0) for l in range(L)]
    objective_terms = list(m)
    constant = 0.0
    for l in range(L):
        for e in range(E):
            prob += pulp.lpSum(x[l, e, g] for g in range(G)) == 1
        for g in range(G):
            prob += pulp.lpSum(x[l, e, g] for e in range(E)) <= C
            prob += pulp.lpSum(float(problem.loads[l, e]) * x[l, e, g] for e in range(E)) <= m[l]
    prob += x[0, 0, 0] == 1  # GPUs are interchangeable under the topology's symmetry
    extra = problem.inter_node_cost - problem.intra_node_cost
    for l in range(L - 1):
        for a, b in zip(*np.nonzero(problem.routing[l])):
            r = float(problem.routing[l, a, b])
            if problem.intra_node_cost > 0:
                constant += r * problem.intra_node_cost
                for g in range(G):
                    w = _var(prob, f"w_{l}_{a}_{b}_{g}", 0, 1)
                    prob += w <= x[l, a, g]
                    prob += w <= x[l + 1, b, g]
                    objective_terms.append(-r * problem.intra_node_cost * w)
            if extra > 0 and nodes > 1:
                constant += r * extra
                for n in range(nodes):
                    gs = range(n * per_node, (n + 1) * per_node)
                    v = _var(prob, f"v_{l}_{a}_{b}_{n}", 0, 1)
                    prob += v <= pulp.lpSum(x[l, a, g] for g in gs)
                    prob += v <= pulp.lpSum(x[l + 1, b, g] for g in gs)
                    objective_terms.append(-r * extra * v)
    prob += pulp.lpSum(objective_terms) + constant
    warm = start is not None
    if start is not None:
        # relabel GPUs of the start so that layer 0's expert 0 sits on GPU 0 (the symmetry cut)
        g0 = int(start[0, 0])
        swap = np.arange(G)
        if problem.nodes > 1:
            n0 = g0 // per_node
            node_perm = np.arange(nodes)
            node_perm[[0, n0]] = node_perm[[n0, 0]]
            swap = np.array([node_perm[g // per_node] * per_node + g % per_node for g in range(G)])
            g0 = int(swap[g0])
            inner = np.arange(G)
            inner[[0, g0]] = inner[[g0, 0]]
            swap = inner[swap]
        else:
            swap[[0, g0]] = swap[[g0, 0]]
        relabelled = swap[start]
        for (l, e, g), var in x.items():
            var.setInitialValue(1 if relabelled[l, e] == g else 0)
    _run(prob, _make_solver(backend, time_limit_s, gap_rel, warm=warm))
    info = {"joint_status": pulp.LpStatus[prob.status], "joint_sol_status": int(prob.sol_status)}
    if not _has_solution(prob):
        return None, info
    gpu_of = np.array([[max(range(G), key=lambda g: x[l, e, g].value() or 0.0) for e in range(E)] for l in range(L)],
                      dtype=np.int64)
    info["joint_optimal"] = prob.sol_status == pulp.LpSolutionOptimal and prob.status == pulp.LpStatusOptimal
    return gpu_of, info


def joint_size(problem: PlacementProblem) -> int:
    """Variables the joint ILP would have (to decide whether it is worth trying)."""
    pairs = int(np.count_nonzero(problem.routing))
    return problem.layers * problem.experts * problem.gpus + pairs * (problem.gpus + problem.nodes)


# ---------------------------------------------------------------------------------------------
# the solver

METHODS = ("paper", "auto", "joint", "two-stage")


@dataclass(frozen=True)
class MoETunerSolver:
    """MoETuner's ILP. ``method``: ``paper`` (ILP1 then ILP2 as published, :mod:`hwsim.placement.paper`, at the
    paper's 2.5% tolerance), or hwsim's earlier min-max variant: ``auto`` (joint when small, else two-stage),
    ``joint`` or ``two-stage``."""

    name: str = "moetuner"
    method: str = "paper"
    backend: str = "auto"
    time_limit_s: float = 60.0
    hard_timeout_s: float | None = None   # default: time_limit_s + 30
    gap_rel: float = 0.005
    joint_max_vars: int = 4_000
    subprocess: bool | None = None        # default: a worker process for CBC (soft time limits), in-process for HiGHS

    def solve(self, problem: PlacementProblem) -> Placement:
        if self.method not in METHODS:
            raise PlacementError(f"moetuner method must be one of {', '.join(METHODS)}, got {self.method!r}")
        backend = backend_name(self.backend)
        started = time.perf_counter()
        if self.subprocess if self.subprocess is not None else backend == "cbc":
            gpu_of, info = self._solve_in_worker(problem, backend)
        else:
            gpu_of, info = solve_gpu_of(problem, self, backend)
        placement = Placement.from_assignment(gpu_of, problem.gpus, self.name)
        value = objective(problem, placement).total
        lb = lower_bound(problem, info.get("tail_bound"))
        if info.get("joint_optimal"):
            lb = value
        info.update(backend=backend, solve_s=time.perf_counter() - started, objective=value, lower_bound=lb,
                    gap=(value - lb) / value if value > 0 else 0.0)
        return Placement(copies=placement.copies, split=placement.split, solver=self.name, info=info)

    def _solve_in_worker(self, problem: PlacementProblem, backend: str) -> tuple[np.ndarray, dict]:
        hard = self.hard_timeout_s if self.hard_timeout_s is not None else self.time_limit_s + 30.0
        with tempfile.TemporaryDirectory(prefix="moetuner-") as tmp:
            src, dst = Path(tmp) / "problem.npz", Path(tmp) / "result.npz"
            np.savez(src, loads=problem.loads, routing=problem.routing,
                     meta=np.array([problem.gpus, problem.capacity, problem.gpus_per_node]),
                     costs=np.array([problem.intra_node_cost, problem.inter_node_cost]))
            options = json.dumps({"method": self.method, "time_limit_s": self.time_limit_s, "gap_rel": self.gap_rel,
                                  "joint_max_vars": self.joint_max_vars, "backend": backend})
            proc = subprocess.Popen([sys.executable, "-m", "hwsim.placement._worker", str(src), str(dst), options],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
                                    env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)})
            try:
                _, err = proc.communicate(timeout=hard)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # the worker and the CBC process it started
                proc.communicate()
                gpu_of = np.stack([greedy_layer(problem.loads[l], problem.gpus, problem.capacity) for l in range(problem.layers)])
                gpu_of = local_search(problem, gpu_of, deadline=time.perf_counter() + 5.0)
                return gpu_of, {"method": "greedy + local search (fallback)", "status": f"hard time limit {hard:g} s hit; greedy + local search incumbent kept"}
            if proc.returncode != 0:
                last = (err or b"").decode(errors="replace").strip().splitlines()
                raise PlacementError(f"moetuner solver worker failed: {last[-1] if last else f'exit {proc.returncode}'}")
            with np.load(dst, allow_pickle=False) as data:
                return data["gpu_of"].astype(np.int64), json.loads(str(data["info"]))


def solve_gpu_of(problem: PlacementProblem, solver: MoETunerSolver, backend: str) -> tuple[np.ndarray, dict]:
    """The work itself (run inside the worker)."""
    deadline = time.perf_counter() + solver.time_limit_s
    method = solver.method
    if method == "paper":
        from hwsim.placement.paper import paper_placement

        gpu_of, info = paper_placement(problem, backend, solver.time_limit_s)
        info.update(method="paper (ILP1 + ILP2)", status="ok")
        return gpu_of, info
    if method == "auto":
        method = "joint" if joint_size(problem) <= solver.joint_max_vars else "two-stage"
    gpu_of, info = two_stage(problem, backend, deadline, solver.gap_rel)
    gpu_of = local_search(problem, gpu_of, deadline=deadline)
    info["method"] = method
    if method == "joint":
        left = deadline - time.perf_counter()
        joint, jinfo = joint_ilp(problem, backend, max(left, 1.0), None, start=gpu_of)
        info.update(jinfo)
        if joint is not None:
            a = objective(problem, Placement.from_assignment(joint, problem.gpus)).total
            b = objective(problem, Placement.from_assignment(gpu_of, problem.gpus)).total
            if a <= b + 1e-9:
                gpu_of = joint
            else:
                info["joint_optimal"] = False
    info["status"] = "ok"
    return gpu_of, info


@dataclass(frozen=True)
class MinMaxMoETunerSolver(MoETunerSolver):
    """hwsim's earlier variant: min-max tail ILP + per-layer assignment + local search (or the joint ILP when
    small); kept beside the paper's formulation for comparison."""

    name: str = "moetuner-minmax"
    method: str = "auto"
