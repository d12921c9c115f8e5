"""The solver protocol and registry: built-ins plus third-party solvers in the ``hwsim.placement``
entry-point group (a package adds ``[project.entry-points."hwsim.placement"] NAME = "mod:obj"``, where
``obj`` is a solver or a zero-argument factory of one; no edit to hwsim needed)."""

from __future__ import annotations

from importlib import import_module, metadata
from typing import Any, Protocol, runtime_checkable

from hwsim.placement.problem import (
    Placement,
    PlacementError,
    PlacementProblem,
    validate,
)

ENTRY_POINT_GROUP = "hwsim.placement"


@runtime_checkable
class Solver(Protocol):
    name: str

    def solve(self, problem: PlacementProblem) -> Placement: ...


BUILTIN_SOLVERS: dict[str, str] = {
    "contiguous": "hwsim.placement.heuristics:ContiguousSolver",
    "round-robin": "hwsim.placement.heuristics:RoundRobinSolver",
    "greedy": "hwsim.placement.heuristics:GreedySolver",
    "eplb": "hwsim.placement.heuristics:EplbSolver",
    "moetuner": "hwsim.placement.ilp:MoETunerSolver",
    "moetuner-minmax": "hwsim.placement.ilp:MinMaxMoETunerSolver",
    "moetuner-replicate": "hwsim.placement.replicate:ReplicatingSolver",
    "moetuner-robust": "hwsim.placement.robust:RobustSolver",
}


def solver_targets() -> dict[str, tuple[str, str]]:
    """name -> (import target, origin). A plug-in may not shadow a built-in name."""
    found = {name: (target, "hwsim") for name, target in BUILTIN_SOLVERS.items()}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in BUILTIN_SOLVERS:
            continue
        found.setdefault(ep.name, (ep.value, ep.dist.name if ep.dist is not None else "entry point"))
    return dict(sorted(found.items()))


def get_solver(name: str, **options: Any) -> Solver:
    """Build solver ``name``; ``options`` go to its constructor (a built-in class or a plug-in factory)."""
    targets = solver_targets()
    if name not in targets:
        raise PlacementError(f"unknown placement solver {name!r}; known: {', '.join(targets)}")
    target, origin = targets[name]
    module_name, _, attribute = target.partition(":")
    try:
        obj: Any = getattr(import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise PlacementError(f"placement solver {name!r} from {origin} ({target}) cannot be loaded: {exc}") from None
    if isinstance(obj, type) or (not isinstance(obj, Solver) and callable(obj)):
        try:
            obj = obj(**options)
        except TypeError as exc:
            raise PlacementError(f"placement solver {name!r} rejects options {sorted(options)}: {exc}") from None
    elif options:
        raise PlacementError(f"placement solver {name!r} takes no options, got {sorted(options)}")
    if not isinstance(obj, Solver):
        raise PlacementError(f"{target} from {origin} is not a placement solver (needs .name and .solve(problem))")
    return obj


def solve(problem: PlacementProblem, name: str, **options: Any) -> Placement:
    """Solve with a named solver and validate the answer (the same check for every solver)."""
    placement = get_solver(name, **options).solve(problem)
    if not isinstance(placement, Placement):
        raise PlacementError(f"solver {name!r} returned {type(placement).__name__}, not a Placement")
    validate(problem, placement)
    return placement
