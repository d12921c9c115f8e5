"""The solver protocol and registry: built-ins plus third-party solvers in the ``hwsim.placement``
entry-point group (a package adds ``[project.entry-points."hwsim.placement"] NAME = "mod:obj"``, where
``obj`` is a solver or a factory of one taking the solver's options; no edit to hwsim needed).

Lookup goes through :class:`hwsim.plugins.PluginRegistry`, the same loader (and clash rule) as the
suites: a plug-in may not replace a built-in solver unless ``HWSIM_PLUGIN_REPLACE`` names it."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from hwsim.placement.problem import Placement, PlacementError, PlacementProblem, validate
from hwsim.plugins import PluginRegistry, load_target

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


REGISTRY = PluginRegistry("placement solver", ENTRY_POINT_GROUP, BUILTIN_SOLVERS, PlacementError)


def solver_targets() -> dict[str, tuple[str, str]]:
    """name -> (import target, origin); a clashing name is listed and fails in :func:`get_solver`."""
    return {name: (e.target, e.origin) for name, e in REGISTRY.entries().items()}


def get_solver(name: str, **options: Any) -> Solver:
    """Build solver ``name``; ``options`` go to its constructor (a built-in class or a plug-in factory)."""
    entry = REGISTRY.resolve(name)
    target, origin = entry.target, entry.origin
    obj: Any = load_target(entry, PlacementError, "placement solver")
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
