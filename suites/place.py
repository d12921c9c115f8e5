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


def place_command(solver: str, problem_path: Path, out: Path | None, options: list[str]) -> tuple[Table, list[str]]:
    """Solve and write the placement; return its summary table and notes for the CLI to render."""
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
    table = Table(title=f"{problem.name}: {solver} ({problem.layers} layers x {problem.experts} experts "
                        f"on {problem.gpus} GPUs)")
    for col in ("objective", "tail load", "traffic cost", "cross-GPU slots", "cross-node slots"):
        table.add_column(col, number_format=".6g")
    table.add_column("max/mean load", number_format=".3f")
    table.add_column("replicas")
    table.add_row(float(obj.total), float(obj.tail_load), float(obj.traffic_cost), float(obj.cross_gpu_tokens),
                  float(obj.cross_node_tokens), float(np.mean(loads.max(axis=1) / loads.mean(axis=1))),
                  int(placement.replicas()))
    notes = []
    if "gap" in placement.info:
        notes.append(f"solve {placement.info.get('solve_s', 0):.2f} s, {placement.info.get('method')}, "
                     f"gap {placement.info['gap'] * 100:.2f}% to a proven lower bound ({placement.info.get('status')})")
    if out is not None:
        write_text_atomic(out, placement_json(problem, placement))
    return table, notes
