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
import math
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
# Sanity limits (assumptions, not from a paper): far above any real MoE model (Mixtral: 32 layers x 8
# experts; OLMoE 16 x 64; DeepSeek-V3 61 x 256), low enough that a typo cannot exhaust memory.
MAX_GPUS = 65536
SYNTHETIC_LIMITS = {"layers": 1024, "experts": 4096, "token_slots": 10**8, "seed": 2**63 - 1}
SYNTHETIC_MAX_TRANSITIONS = 2**26  # layers x experts^2 floats the generator holds: 512 MiB at most


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
    if isinstance(value, float) and not math.isfinite(value):
        raise ProblemFileError(f"{path}: field {key!r} must be a finite number, got {value!r}")
    if kind is int and not 1 <= value <= MAX_GPUS:
        raise ProblemFileError(f"{path}: field {key!r} must be between 1 and {MAX_GPUS}, got {value!r}")
    return value


def _synthetic(syn: Any, path: Path) -> tuple[dict[str, int], float, float]:
    """The synthetic trace's fields, each checked, with an error in plain words naming the field."""
    if not isinstance(syn, dict) or set(syn) - SYNTHETIC_KEYS or SYNTHETIC_KEYS - {"seed"} - set(syn):
        raise ProblemFileError(
            f"{path}: 'synthetic' needs the fields {sorted(SYNTHETIC_KEYS - {'seed'})} (and optional seed)")
    counts: dict[str, int] = {}
    for key, most in SYNTHETIC_LIMITS.items():
        value = syn.get(key, 0)
        least = 0 if key == "seed" else 1
        if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
            raise ProblemFileError(
                f"{path}: synthetic.{key} must be a whole number from {least} to {most}, got {value!r}")
        counts[key] = value
    if counts["layers"] * counts["experts"] ** 2 > SYNTHETIC_MAX_TRANSITIONS:
        raise ProblemFileError(f"{path}: synthetic: {counts['layers']} layers x {counts['experts']}^2 expert pairs "
                               "is more "
                               f"than the {SYNTHETIC_MAX_TRANSITIONS} routing entries a synthetic problem may hold")
    reals: list[float] = []
    for key, low, high in (("zipf_s", 0.0, 100.0), ("concentration", 0.0, 1.0)):
        value = syn[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise ProblemFileError(f"{path}: synthetic.{key} must be a number from {low:g} to {high:g}, got {value!r}")
        reals.append(float(value))
    return counts, reals[0], reals[1]


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
        counts, zipf_s, concentration = _synthetic(doc["synthetic"], path)
        rng = np.random.default_rng(counts["seed"])
        try:
            model = synthetic_model(counts["layers"], counts["experts"], zipf_s, concentration, rng)
            trace = sample_trace(model, counts["token_slots"], rng)
        except PlacementError as exc:
            raise ProblemFileError(f"{path}: synthetic: {exc}") from None
        loads, routing = trace.loads, trace.routing
    else:
        if "loads" not in doc:
            raise ProblemFileError(f"{path}: missing required field 'loads' (or 'synthetic')")
        loads = doc["loads"]
        if not isinstance(loads, list) or not all(isinstance(row, list) for row in loads):
            raise ProblemFileError(f"{path}: 'loads' must be a list of per-layer lists of numbers")
        layers = len(loads)
        experts = len(loads[0]) if layers else 0
        routing = doc.get("routing", np.zeros((max(layers - 1, 0), experts, experts)))
    try:
        problem = PlacementProblem(loads=loads, routing=routing, gpus=gpus, capacity=capacity, gpus_per_node=per_node,
                                   intra_node_cost=intra, inter_node_cost=inter, name=str(doc.get("name", path.stem)))
    except PlacementError as exc:
        raise ProblemFileError(f"{path}: {exc}") from None
    except (ValueError, TypeError, OverflowError, MemoryError):  # numpy cannot hold them (ragged, huge, absurd)
        raise ProblemFileError(f"{path}: 'loads'/'routing' cannot be read as arrays of numbers") from None
    if not problem.loads.any():
        raise ProblemFileError(f"{path}: every load is zero: there are no tokens, so there is nothing to place")
    return problem


def _options(items: list[str]) -> dict[str, Any]:
    """``--option KEY=VALUE``, values read as YAML scalars; times (``*_s``) and ``gap_rel`` checked here."""
    opts: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ProblemFileError(f"--option must be KEY=VALUE, got {item!r}")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        if isinstance(value, float) and not math.isfinite(value):
            raise ProblemFileError(f"--option {item}: the value must be a finite number")
        if key.endswith("_s") and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
            raise ProblemFileError(f"--option {item}: {key} is a time in seconds and must be a number above 0")
        if key == "gap_rel" and (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1):
            raise ProblemFileError(f"--option {item}: gap_rel is a relative gap and must be a number in [0, 1)")
        opts[key] = value
    return opts


def _imbalance(loads: np.ndarray) -> float:
    """Mean over layers of max/mean GPU load; a layer with no tokens counts as balanced (1), not NaN."""
    means = loads.mean(axis=1)
    ratios = np.divide(loads.max(axis=1), means, out=np.ones_like(means), where=means > 0)
    return float(np.mean(ratios))


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
    opts = _options(options)  # a bad option fails before any problem is read or solved
    model = scale = None
    if routing is not None:
        problem, model, scale = _routing_problem(routing, hw)
    elif evaluate:
        raise ProblemFileError("--evaluate needs --routing (the model and hardware come from it)")
    else:
        assert problem_path is not None
        problem = load_problem(problem_path)
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
                  float(obj.cross_node_tokens), _imbalance(loads),
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
