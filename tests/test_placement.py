"""Placement: the validator, the solvers against brute force, the registry and plug-ins."""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from hwsim.placement import (
    Placement,
    PlacementError,
    PlacementProblem,
    get_solver,
    objective,
    solve,
    solver_targets,
    validate,
)
from hwsim.placement.heuristics import EplbSolver, GreedySolver
from hwsim.placement.ilp import MoETunerSolver, lower_bound

HEURISTICS = ("contiguous", "round-robin", "greedy", "eplb")


def random_problem(seed: int, layers: int, experts: int, gpus: int, capacity: int, per_node: int | None = None,
                   intra: float = 0.05, inter: float = 0.2) -> PlacementProblem:
    rng = np.random.default_rng(seed)
    loads = rng.integers(1, 100, size=(layers, experts)).astype(float) * rng.random((layers, experts)) ** 2
    routing = rng.integers(0, 30, size=(layers - 1, experts, experts)).astype(float)
    routing *= rng.random(routing.shape) < 0.5  # sparse affinity
    return PlacementProblem(loads=loads, routing=routing, gpus=gpus, capacity=capacity, gpus_per_node=per_node,
                            intra_node_cost=intra, inter_node_cost=inter)


def brute_force(problem: PlacementProblem) -> float:
    """Exact optimum over every single-copy placement (small problems only)."""
    per_layer = [a for a in itertools.product(range(problem.gpus), repeat=problem.experts)
                 if max(np.bincount(a, minlength=problem.gpus)) <= problem.capacity]
    best = np.inf
    for combo in itertools.product(per_layer, repeat=problem.layers):
        p = Placement.from_assignment(np.array(combo, dtype=np.int64), problem.gpus)
        best = min(best, objective(problem, p).total)
    return best


@pytest.mark.parametrize("seed,shape", [
    (0, dict(layers=2, experts=4, gpus=2, capacity=2)),
    (1, dict(layers=3, experts=4, gpus=2, capacity=2)),
    (2, dict(layers=2, experts=4, gpus=4, capacity=1, per_node=2)),
    (3, dict(layers=2, experts=5, gpus=2, capacity=3, intra=0.3)),
])
def test_ilp_matches_brute_force_and_beats_heuristics(seed, shape):
    problem = random_problem(seed, **shape)
    exact = brute_force(problem)
    placement = MoETunerSolver(method="joint", subprocess=False, time_limit_s=30).solve(problem)
    validate(problem, placement)
    ilp = objective(problem, placement).total
    assert ilp == pytest.approx(exact, rel=1e-9)
    assert placement.info["gap"] == pytest.approx(0.0, abs=1e-9)
    assert lower_bound(problem) <= exact + 1e-9
    for name in HEURISTICS:
        assert ilp <= objective(problem, solve(problem, name)).total + 1e-9, name


def test_ilp_in_worker_process_matches_in_process():
    problem = random_problem(5, layers=2, experts=4, gpus=2, capacity=2)
    a = MoETunerSolver(method="joint", subprocess=True, time_limit_s=30).solve(problem)
    b = MoETunerSolver(method="joint", subprocess=False, time_limit_s=30).solve(problem)
    assert objective(problem, a).total == pytest.approx(objective(problem, b).total)


def test_two_stage_beats_greedy_on_traffic_and_bound_holds():
    problem = random_problem(7, layers=6, experts=16, gpus=4, capacity=4, per_node=2, intra=0.5, inter=2.0)
    greedy = objective(problem, solve(problem, "greedy"))
    tuned = solve(problem, "moetuner", method="two-stage", time_limit_s=20)
    value = objective(problem, tuned)
    assert value.total < greedy.total
    assert lower_bound(problem) <= value.total
    assert 0.0 <= tuned.info["gap"] < 1.0


def test_hard_timeout_kills_the_worker_and_keeps_a_valid_incumbent():
    problem = random_problem(8, layers=8, experts=32, gpus=8, capacity=4)
    placement = MoETunerSolver(time_limit_s=30, hard_timeout_s=0.05, subprocess=True).solve(problem)
    validate(problem, placement)
    assert "hard time limit" in placement.info["status"]


# ---------------------------------------------------------------------------------------------
# the validator

@pytest.fixture
def small():
    return random_problem(0, layers=2, experts=4, gpus=2, capacity=2)


def _good(problem):
    return Placement.from_assignment(np.array([[0, 0, 1, 1], [1, 0, 1, 0]]), problem.gpus, "test")


def _edit(placement, copies=None, split=None):
    return Placement(copies=placement.copies.copy() if copies is None else copies,
                     split=placement.split.copy() if split is None else split, solver="test")


def test_validator_accepts_a_good_placement(small):
    validate(small, _good(small))


def test_validator_rejects_wrong_shape(small):
    p = _good(small)
    with pytest.raises(PlacementError, match="shape"):
        validate(small, _edit(p, copies=p.copies[:, :3], split=p.split[:, :3]))


def test_validator_rejects_unplaced_expert(small):
    p = _good(small)
    c, s = p.copies.copy(), p.split.copy()
    c[1, 2] = False
    s[1, 2] = 0.0
    with pytest.raises(PlacementError, match="layer 1: expert 2 is not placed"):
        validate(small, _edit(p, c, s))


def test_validator_rejects_capacity_overflow(small):
    p = Placement.from_assignment(np.array([[0, 0, 0, 1], [0, 1, 0, 1]]), 2, "test")
    with pytest.raises(PlacementError, match="layer 0: GPU 0 holds 3 experts, over its capacity of 2"):
        validate(small, p)


def test_validator_rejects_share_without_copy(small):
    p = _good(small)
    s = p.split.copy()
    s[0, 0] = [0.5, 0.5]  # GPU 1 holds no copy of expert 0
    with pytest.raises(PlacementError, match="holds no copy"):
        validate(small, _edit(p, split=s))


def test_validator_rejects_shares_not_summing_to_one(small):
    p = _good(small)
    s = p.split.copy()
    s[1, 3, 0] = 0.7
    with pytest.raises(PlacementError, match="sum to 0.7"):
        validate(small, _edit(p, split=s))


def test_validator_rejects_negative_share(small):
    small = PlacementProblem(small.loads, small.routing, gpus=2, capacity=3)
    p = _good(small)
    c, s = p.copies.copy(), p.split.copy()
    c[0, 2] = True
    s[0, 2] = [-0.5, 1.5]
    with pytest.raises(PlacementError, match="outside \\[0, 1\\]"):
        validate(small, _edit(p, c, s))


def test_validator_rejects_unused_replica(small):
    problem = PlacementProblem(small.loads, small.routing, gpus=2, capacity=3)
    p = _good(problem)
    c = p.copies.copy()
    c[0, 0, 1] = True  # a replica on GPU 1 that gets no tokens
    with pytest.raises(PlacementError, match="replica of expert 0 on GPU 1 gets no tokens"):
        validate(problem, _edit(p, copies=c))


def test_validator_rejects_non_boolean_copies(small):
    p = _good(small)
    with pytest.raises(PlacementError, match="boolean"):
        validate(small, _edit(p, copies=p.copies.astype(int)))


def test_assignment_out_of_range():
    with pytest.raises(PlacementError, match="layer 0: expert 1 assigned to GPU 5"):
        Placement.from_assignment(np.array([[0, 5]]), 2)


def test_problem_errors():
    with pytest.raises(PlacementError, match="infeasible: 8 experts per layer do not fit on 2 GPUs x capacity 3"):
        PlacementProblem(np.ones((1, 8)), np.zeros((0, 8, 8)), gpus=2, capacity=3)
    with pytest.raises(PlacementError, match="routing must have shape \\(1, 4, 4\\)"):
        PlacementProblem(np.ones((2, 4)), np.zeros((1, 4, 3)), gpus=2, capacity=2)
    with pytest.raises(PlacementError, match="gpus_per_node must be a positive divisor"):
        PlacementProblem(np.ones((1, 4)), np.zeros((0, 4, 4)), gpus=4, capacity=1, gpus_per_node=3)
    with pytest.raises(PlacementError, match="loads must be >= 0"):
        PlacementProblem(-np.ones((1, 4)), np.zeros((0, 4, 4)), gpus=4, capacity=1)


@pytest.mark.parametrize("name", HEURISTICS + ("moetuner",))
def test_every_solver_passes_the_validator(name):
    problem = random_problem(11, layers=3, experts=12, gpus=4, capacity=4, per_node=2)
    placement = solve(problem, name, **({"time_limit_s": 5, "method": "two-stage"} if name == "moetuner" else {}))
    assert placement.solver == name


# ---------------------------------------------------------------------------------------------
# baselines

def test_contiguous_and_round_robin_layouts():
    problem = random_problem(0, layers=2, experts=8, gpus=4, capacity=2)
    assert solve(problem, "contiguous").primary()[0].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert solve(problem, "round-robin").primary()[1].tolist() == [0, 1, 2, 3, 0, 1, 2, 3]


def test_greedy_is_largest_first_onto_least_loaded():
    loads = np.array([[10.0, 9, 2, 1]])
    problem = PlacementProblem(loads, np.zeros((0, 4, 4)), gpus=2, capacity=2)
    # 10 -> GPU0, 9 -> GPU1, 2 -> GPU1 (9 < 10), 1 -> GPU0
    assert GreedySolver().solve(problem).primary()[0].tolist() == [0, 1, 1, 0]


def test_eplb_replicates_the_hot_expert_and_balances():
    loads = np.array([[100.0, 10, 10, 10, 10, 10, 10, 10]])
    problem = PlacementProblem(loads, np.zeros((0, 8, 8)), gpus=4, capacity=3)  # 4 spare slots
    placement = EplbSolver().solve(problem)
    validate(problem, placement)
    assert placement.copies[0, 0].sum() == 4  # the hot expert on every GPU
    assert placement.replicas() == 4
    eplb_tail = objective(problem, placement).tail_load
    greedy_tail = objective(problem, GreedySolver().solve(problem)).tail_load
    assert eplb_tail < greedy_tail
    # copies of 25 x4, 10 x6, 5 x2 packed 3 per GPU heaviest first: 25+10+10, 25+10+10, 25+10+5, 25+10+5
    assert eplb_tail == pytest.approx(45.0)


def test_eplb_hierarchical_keeps_copies_in_their_node():
    rng = np.random.default_rng(3)
    loads = rng.random((2, 8)) * 100
    problem = PlacementProblem(loads, np.zeros((1, 8, 8)), gpus=4, capacity=3, gpus_per_node=2)
    placement = EplbSolver().solve(problem)
    validate(problem, placement)
    assert placement.info["hierarchical"]
    node_of = np.arange(4) // 2
    for l in range(2):
        for e in range(8):
            assert len(set(node_of[placement.copies[l, e]])) == 1


# ---------------------------------------------------------------------------------------------
# registry and plug-ins

def test_unknown_solver_lists_known():
    with pytest.raises(PlacementError, match="unknown placement solver 'nope'; known: contiguous"):
        get_solver("nope")


PLUGIN = textwrap.dedent('''
    import numpy as np
    from hwsim.placement import Placement

    class ReverseSolver:
        """Expert i on GPU G-1-(i mod G): a third-party solver for the plug-in test."""
        name = "reverse"

        def solve(self, problem):
            row = problem.gpus - 1 - (np.arange(problem.experts) % problem.gpus)
            return Placement.from_assignment(np.tile(row, (problem.layers, 1)), problem.gpus, self.name)
''')


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """A tiny package 'hwsim-reverse' installed into a directory on sys.path (module + dist-info)."""
    (tmp_path / "hwsim_reverse.py").write_text(PLUGIN)
    info = tmp_path / "hwsim_reverse-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: hwsim-reverse\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[hwsim.placement]\nreverse = hwsim_reverse:ReverseSolver\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_plugin_found_through_entry_point(plugin_dir):
    assert solver_targets()["reverse"] == ("hwsim_reverse:ReverseSolver", "hwsim-reverse")
    problem = random_problem(0, layers=2, experts=4, gpus=2, capacity=2)
    assert solve(problem, "reverse").primary()[0].tolist() == [1, 0, 1, 0]


def test_plugin_cannot_shadow_a_builtin(plugin_dir):
    (plugin_dir / "hwsim_reverse-0.1.dist-info" / "entry_points.txt").write_text(
        "[hwsim.placement]\ngreedy = hwsim_reverse:ReverseSolver\n")
    assert solver_targets()["greedy"][0] == "hwsim.placement.heuristics:GreedySolver"


def test_cli_place_runs_a_plugin_in_a_fresh_process(plugin_dir, tmp_path):
    problem = tmp_path / "p.json"
    problem.write_text('{"gpus": 2, "capacity": 2, "loads": [[1, 2, 3, 4], [4, 3, 2, 1]]}')
    out = tmp_path / "out.json"
    env_path = f"{plugin_dir}{__import__('os').pathsep}{__import__('os').getcwd()}"
    run = subprocess.run([sys.executable, "-m", "hwsim.suites.cli", "place", "--solver", "reverse", "--problem", str(problem),
                          "--out", str(out)], capture_output=True, text=True, env={**__import__('os').environ,
                                                                                  "PYTHONPATH": env_path})
    assert run.returncode == 0, run.stderr
    import json
    doc = json.loads(out.read_text())
    assert doc["solver"] == "reverse"
    assert [e["gpus"] for e in doc["layers"][0]] == [[1], [0], [1], [0]]


def test_placement_imports_neither_simpy_nor_hwsim():
    code = "import sys, hwsim.placement, hwsim.placement.ilp, hwsim.placement.routing; assert 'simpy' not in sys.modules, 'simpy'"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


# ---------------------------------------------------------------------------------------------
# the paper's ILPs, replication and robust placement (issue 16)

def _tiny(seed: int, layers: int = 3, experts: int = 6, gpus: int = 3, capacity: int = 3, per_node: int | None = None):
    from hwsim.placement.routing import sample_trace, synthetic_model

    rng = np.random.default_rng(seed)
    trace = sample_trace(synthetic_model(layers, experts, 1.2, 0.6, rng, top_k=2), 600, rng)
    return PlacementProblem(trace.loads, trace.routing, gpus, capacity, gpus_per_node=per_node,
                            intra_node_cost=0.3, inter_node_cost=1.0)


@pytest.mark.parametrize("enumerate_max", [0, 10**6], ids=["highs", "enumeration"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ilp1_equals_brute_force(seed, enumerate_max):
    import itertools

    from hwsim.placement.paper import deviation, ilp1

    p = _tiny(seed)
    clusters, info = ilp1(p.loads, p.gpus, p.capacity, "highs", 20.0, gap_rel=0.0, enumerate_max=enumerate_max)
    for l in range(p.layers):
        best = min(deviation(p.loads[l], np.array(a), p.gpus) for a in itertools.product(range(p.gpus), repeat=p.experts)
                   if max(np.bincount(a, minlength=p.gpus)) <= p.capacity)
        assert deviation(p.loads[l], clusters[l], p.gpus) == pytest.approx(best, abs=1e-6)


@pytest.mark.parametrize("enumerate_max", [0, 10**6], ids=["highs", "enumeration"])
@pytest.mark.parametrize("seed,per_node", [(0, None), (3, 1), (4, 2)])
def test_ilp2_equals_brute_force(seed, per_node, enumerate_max):
    import itertools

    from hwsim.placement.paper import _held, ilp1, ilp2, ilp2_cost, memory_bounds

    p = _tiny(seed, gpus=4 if per_node == 2 else 3, experts=8 if per_node == 2 else 6, per_node=per_node)
    clusters, _ = ilp1(p.loads, p.gpus, p.capacity, "highs", 20.0, gap_rel=0.0)
    perms, info = ilp2(p, clusters, "highs", 30.0, gap_rel=0.0, enumerate_max=enumerate_max)
    assert info["ilp2_method"].startswith("joint") or "infeasible" in info["ilp2_method"]
    assert (info.get("ilp2_solver") == "exact enumeration") == (enumerate_max > 0)
    assert perms[0, 0] == 0 or not info.get("ilp2_optimal")   # the pin both solvers share
    sizes = np.stack([np.bincount(clusters[l], minlength=p.gpus) for l in range(p.layers)])
    lo, hi = memory_bounds(p)
    feasible = []
    for combo in itertools.product(itertools.permutations(range(p.gpus)), repeat=p.layers):
        cand = np.array(combo)
        if all(lo <= v <= hi for v in _held(sizes, cand, p.gpus)):
            feasible.append(ilp2_cost(p, clusters, cand))
    if feasible:
        assert info["ilp2_method"] == "joint"
        assert ilp2_cost(p, clusters, perms) == pytest.approx(min(feasible), rel=1e-6, abs=1e-9)


def test_paper_ilp2_weights_traffic_by_topology():
    # two experts per layer that always route a->a: ILP2 must keep each chain on one GPU (cost 0)
    loads = np.array([[5.0, 5.0], [5.0, 5.0], [5.0, 5.0]])
    routing = np.array([[[5.0, 0.0], [0.0, 5.0]], [[0.0, 5.0], [5.0, 0.0]]])
    p = PlacementProblem(loads, routing, gpus=2, capacity=1)
    placement = solve(p, "moetuner")
    assert objective(p, placement).cross_gpu_tokens == 0.0


@pytest.mark.parametrize("seed,gpus,per_node", [(0, 4, None), (1, 4, 2), (5, 3, None)])
def test_replicating_ilp_never_worse_than_eplb(seed, gpus, per_node):
    p = _tiny(seed, experts=8 if gpus == 4 else 6, gpus=gpus, capacity=3, per_node=per_node)
    eplb = solve(p, "eplb")
    rep = solve(p, "moetuner-replicate", time_limit_s=10.0)
    assert objective(p, rep).total <= objective(p, eplb).total + 1e-9
    # the tail part alone: the program's min-max is at least as good as EPLB's packing, layer by layer
    from hwsim.placement import gpu_loads
    assert np.all(gpu_loads(p, rep).max(axis=1) <= gpu_loads(p, eplb).max(axis=1) + 1e-9)
    # the bound is valid for placements with copies: below every placement found
    assert rep.info["lower_bound"] <= objective(p, eplb).total + 1e-9
    assert 0.0 <= rep.info["gap"] < 1.0


def test_replicating_ilp_splits_a_hot_expert():
    # one expert carries most tokens: only a copy with a token split brings the tail near the mean
    loads = np.array([[90.0, 4.0, 3.0, 3.0]])
    p = PlacementProblem(loads, np.zeros((0, 4, 4)), gpus=2, capacity=3)
    rep = solve(p, "moetuner-replicate", time_limit_s=10.0)
    assert rep.replicas() >= 1
    from hwsim.placement import gpu_loads
    assert gpu_loads(p, rep).max() == pytest.approx(50.0, rel=1e-6)
    assert gpu_loads(p, solve(p, "moetuner-minmax", time_limit_s=5.0)).max() == pytest.approx(90.0)


@pytest.mark.parametrize("seed", [0, 1])
def test_robust_never_worse_on_the_worst_profile(seed):
    from hwsim.placement.robust import profile_problem

    base = _tiny(seed, experts=8, gpus=4, capacity=3)
    others = [_tiny(seed + 10 + i, experts=8, gpus=4, capacity=3) for i in range(2)]
    profiles = [base] + [profile_problem(base, o.loads, o.routing, f"p{i}") for i, o in enumerate(others)]
    robust = solve(base, "moetuner-robust", profiles=tuple(profiles[1:]), time_limit_s=10.0)
    worst_robust = max(objective(q, robust).total for q in profiles)
    for name in ("moetuner", "moetuner-replicate", "eplb"):
        single = solve(base, name)
        assert worst_robust <= max(objective(q, single).total for q in profiles) + 1e-6, name


def test_new_solvers_pass_the_validator_and_are_registered():
    p = _tiny(7, experts=8, gpus=4, capacity=3, per_node=2)
    for name in ("moetuner", "moetuner-minmax", "moetuner-replicate", "moetuner-robust"):
        assert name in solver_targets()
        placement = solve(p, name)  # solve() runs validate()
        assert placement.solver == name


def test_traffic_matrices_equal_the_einsum():
    from hwsim.placement import traffic_matrices

    p = _tiny(8, experts=8, gpus=4, capacity=3)
    placement = solve(p, "eplb")
    ref = np.einsum("lag,lab,lbh->lgh", placement.split[:-1], p.routing, placement.split[1:])
    assert np.allclose(traffic_matrices(p, placement), ref)
