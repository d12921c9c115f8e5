"""``hwsim place``: solve one placement problem file with a named solver (built-in or plug-in).

Problem file (YAML, or JSON, which YAML reads too)::

    gpus: 8                  # required
    capacity: 2              # required: expert copies one GPU may hold per layer
    gpus_per_node: 8         # optional (default: gpus, one node)
    intra_node_cost: 0.01    # optional: cost of moving a token-slot inside a node, in slot-processing units
    inter_node_cost: 0.1     # optional: ... between nodes
    loads: [[...], ...]      # [layer][expert] token-slots
    routing: [[[...]]]       # optional [layer-1][expert][expert] token-slots (default: none)
    # or, instead of loads/routing, a seeded synthetic trace:
    synthetic: {layers: 16, experts: 64, zipf_s: 0.7, concentration: 0.1, token_slots: 100000, seed: 0}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from hwsim.errors import ConfigError
from hwsim.fileio import read_yaml_file, write_text_atomic
from hwsim.placement import Placement, PlacementError, PlacementProblem, gpu_loads, objective, solve
from hwsim.placement.routing import sample_trace, synthetic_model
from hwsim.suites.tables import Table

TOP_KEYS = {"gpus", "capacity", "gpus_per_node", "intra_node_cost", "inter_node_cost", "loads", "routing", "synthetic",
            "name"}
SYNTHETIC_KEYS = {"layers", "experts", "zipf_s", "concentration", "token_slots", "seed"}


class ProblemFileError(ConfigError):
    """A placement problem file is unreadable or malformed."""


def _number(doc: dict, key: str, path: Path, kind: type, default: Any = None) -> Any:
    if key not in doc:
        if default is None:
            raise ProblemFileError(f"{path}: missing required field {key!r}")
        return default
    value = doc[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        wanted = "an integer" if kind is int else "a number"
        raise ProblemFileError(f"{path}: field {key!r} must be {wanted}, got {value!r}")
    return value


def load_problem(path: Path) -> PlacementProblem:
    doc = read_yaml_file(path, ProblemFileError, "problem file")
    if not isinstance(doc, dict):
        raise ProblemFileError(f"{path}: the top level must be a mapping of fields, got {type(doc).__name__}")
    unknown = set(doc) - TOP_KEYS
    if unknown:
        raise ProblemFileError(f"{path}: unknown field(s) {sorted(unknown)}; known: {sorted(TOP_KEYS)}")
    gpus = _number(doc, "gpus", path, int)
    capacity = _number(doc, "capacity", path, int)
    per_node = _number(doc, "gpus_per_node", path, int, gpus)
    intra = _number(doc, "intra_node_cost", path, float, 1.0)
    inter = _number(doc, "inter_node_cost", path, float, intra)
    if "synthetic" in doc:
        if "loads" in doc or "routing" in doc:
            raise ProblemFileError(f"{path}: give either 'synthetic' or 'loads'/'routing', not both")
        syn = doc["synthetic"]
        if not isinstance(syn, dict) or set(syn) - SYNTHETIC_KEYS or SYNTHETIC_KEYS - {"seed"} - set(syn):
            raise ProblemFileError(
                f"{path}: 'synthetic' needs the fields {sorted(SYNTHETIC_KEYS - {'seed'})} (and optional seed)")
        try:
            rng = np.random.default_rng(int(syn.get("seed", 0)))
            model = synthetic_model(int(syn["layers"]), int(syn["experts"]), float(syn["zipf_s"]),
                                    float(syn["concentration"]), rng)
            trace = sample_trace(model, int(syn["token_slots"]), rng)
        except (TypeError, ValueError) as exc:
            raise ProblemFileError(f"{path}: synthetic: {exc}") from None
        loads, routing = trace.loads, trace.routing
    else:
        if "loads" not in doc:
            raise ProblemFileError(f"{path}: missing required field 'loads' (or 'synthetic')")
        loads = doc["loads"]
        try:
            layers = len(loads)
            experts = len(loads[0]) if layers else 0
        except TypeError:
            raise ProblemFileError(f"{path}: 'loads' must be a list of per-layer lists of numbers") from None
        routing = doc.get("routing", np.zeros((max(layers - 1, 0), experts, experts)))
    try:
        return PlacementProblem(loads=loads, routing=routing, gpus=gpus, capacity=capacity, gpus_per_node=per_node,
                                intra_node_cost=intra, inter_node_cost=inter, name=str(doc.get("name", path.stem)))
    except PlacementError as exc:
        raise ProblemFileError(f"{path}: {exc}") from None


def placement_json(problem: PlacementProblem, placement: Placement) -> str:
    obj = objective(problem, placement)
    layers = []
    for l in range(problem.layers):
        experts = []
        for e in range(problem.experts):
            gpus = np.flatnonzero(placement.copies[l, e])
            experts.append({"expert": e, "gpus": [int(g) for g in gpus],
                            "share": [round(float(placement.split[l, e, g]), 9) for g in gpus]})
        layers.append(experts)
    info = {k: v for k, v in placement.info.items() if isinstance(v, (int, float, str, bool, list))}
    return json.dumps({"problem": problem.name, "solver": placement.solver, "objective": obj.total,
                       "tail_load": obj.tail_load, "traffic_cost": obj.traffic_cost, "info": info, "layers": layers},
                      indent=1)


def _routing_problem(path: Path, hw_name: str) -> tuple[PlacementProblem, Any, Any]:
    """The problem a routing-statistics file implies on ``hw_name`` (one GPU per EP rank), with its model and scale."""
    from hwsim.hardware import load_hardware
    from hwsim.suites.moetuner import SPARE_SLOTS_PER_GPU, model_for, read_routing, routing_problem
    from hwsim.systems.moetuner import Scale

    real = read_routing(path)
    model = model_for(real)
    scale = Scale("cli", load_hardware(hw_name))
    return routing_problem(model, scale, real, SPARE_SLOTS_PER_GPU), model, scale


def evaluate_placement(placement: Placement, model: Any, scale: Any, files: list[Path]) -> list[dict[str, Any]]:
    """EP layer time, tails and speedup over contiguous of ``placement`` on each routing file (recorded layers)."""
    from hwsim.placement import solve as solve_with
    from hwsim.suites.moetuner import CONTEXT_TOKENS, TOKENS_PER_GPU, read_routing, routing_problem
    from hwsim.systems.moe import Batch, simulate

    out = []
    batch = Batch(TOKENS_PER_GPU * scale.hardware.topology.devices, CONTEXT_TOKENS)
    for path in files:
        real = read_routing(path)
        if real.num_experts != model.experts or real.top_k != model.top_k:
            raise ProblemFileError(f"{path}: {real.num_experts} experts top-{real.top_k} do not match the placement's "
                                   f"{model.experts} experts top-{model.top_k}")
        problem = routing_problem(model, scale, real, 1)
        base = solve_with(problem, "contiguous")
        runs = [simulate(model, scale.hardware, batch, p.split, problem.loads, problem.routing,
                         attention_with_tokens=True) for p in (placement, base)]
        out.append({"file": str(path), "time_s": runs[0].time_s, "token_tail_s": runs[0].token_tail_s,
                    "all_to_all_tail_s": runs[0].all_to_all_tail_s, "contiguous_time_s": runs[1].time_s,
                    "speedup_vs_contiguous": runs[1].time_s / runs[0].time_s - 1.0})
    return out


@dataclass
class PlaceResult:
    """What ``hwsim place`` computed: tables and notes for people, ``document`` for ``--json``."""

    tables: list[Table]
    notes: list[str]
    document: dict[str, Any]


def place_command(solver: str, problem_path: Path | None, out: Path | None, options: list[str],
                  routing: Path | None = None, evaluate: list[Path] | None = None,
                  hw: str = "h100-sxm") -> PlaceResult:
    """Solve (and evaluate), write the placement if asked; return what the CLI renders."""
    evaluate = list(evaluate or [])
    model = scale = None
    if routing is not None:
        problem, model, scale = _routing_problem(routing, hw)
    elif evaluate:
        raise ProblemFileError("--evaluate needs --routing (the model and hardware come from it)")
    else:
        assert problem_path is not None
        problem = load_problem(problem_path)
    opts: dict[str, Any] = {}
    for item in options:
        key, sep, value = item.partition("=")
        if not sep:
            raise ProblemFileError(f"--option must be KEY=VALUE, got {item!r}")
        try:
            opts[key] = yaml.safe_load(value)
        except yaml.YAMLError:
            opts[key] = value
    try:
        placement = solve(problem, solver, **opts)
    except PlacementError as exc:
        raise ProblemFileError(str(exc)) from None
    obj = objective(problem, placement)
    loads = gpu_loads(problem, placement)
    evaluated = evaluate_placement(placement, model, scale, evaluate) if evaluate else []
    document = json.loads(placement_json(problem, placement))
    document.pop("layers")
    document["evaluate"] = evaluated
    table = Table(title=f"{problem.name}: {solver} ({problem.layers} layers x {problem.experts} experts "
                        f"on {problem.gpus} GPUs)")
    for col in ("objective", "tail load", "traffic cost", "cross-GPU slots", "cross-node slots"):
        table.add_column(col, number_format=".6g")
    table.add_column("max/mean load", number_format=".3f")
    table.add_column("replicas")
    table.add_row(float(obj.total), float(obj.tail_load), float(obj.traffic_cost), float(obj.cross_gpu_tokens),
                  float(obj.cross_node_tokens), float(np.mean(loads.max(axis=1) / loads.mean(axis=1))),
                  int(placement.replicas()))
    tables = [table]
    notes = []
    if "gap" in placement.info:
        notes.append(f"solve {placement.info.get('solve_s', 0):.2f} s, {placement.info.get('method')}, "
                     f"gap {placement.info['gap'] * 100:.2f}% to a proven lower bound ({placement.info.get('status')})")
    if evaluated:
        ev = Table(title=f"{placement.solver} evaluated on {scale.label if scale else ''} (recorded layers)")
        ev.add_column("routing file")
        for col in ("time", "token tail", "all-to-all tail"):
            ev.add_column(col, "ms", number_format=".3f")
        ev.add_column("speedup vs contiguous", "%", number_format="+.1f")
        for e in evaluated:
            ev.add_row(Path(e["file"]).name, e["time_s"] * 1e3, e["token_tail_s"] * 1e3, e["all_to_all_tail_s"] * 1e3,
                       e["speedup_vs_contiguous"] * 100)
        tables.append(ev)
    if out is not None:
        write_text_atomic(out, placement_json(problem, placement))
    return PlaceResult(tables, notes, document)
