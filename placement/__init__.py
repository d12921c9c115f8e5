"""Expert-placement solvers for expert-parallel MoE.

Imports numpy and pulp only; never simpy. Solvers follow one protocol (:class:`Solver`), are found
by name (built-ins plus the ``hwsim.placement`` entry-point group) and every answer is checked by
:func:`validate`.
"""

from hwsim.placement.problem import (
    Objective,
    Placement,
    PlacementError,
    PlacementProblem,
    gpu_loads,
    objective,
    traffic_matrices,
    validate,
)
from hwsim.placement.solvers import BUILTIN_SOLVERS, ENTRY_POINT_GROUP, Solver, get_solver, solve, solver_targets

__all__ = [
    "BUILTIN_SOLVERS",
    "ENTRY_POINT_GROUP",
    "Objective",
    "Placement",
    "PlacementError",
    "PlacementProblem",
    "Solver",
    "get_solver",
    "gpu_loads",
    "objective",
    "solve",
    "solver_targets",
    "traffic_matrices",
    "validate",
]
