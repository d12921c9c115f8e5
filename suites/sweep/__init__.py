"""Design-space sweeps: any registered suite over a grid of suite and hardware parameters.

``grid`` expands and checks the grid, ``overrides`` changes hardware numbers, ``worker`` runs one
case anywhere, ``executors`` hands cases to Dask (or a process pool, or this process), ``store``
keeps one atomic file per case so a sweep resumes, ``report`` draws the summary and figure.
"""

from hwsim.suites.sweep.executors import EXECUTORS, make_backend
from hwsim.suites.sweep.grid import Case, Grid, SweepError, expand, read_grid_file
from hwsim.suites.sweep.runner import SweepReport, run_sweep

__all__ = ["Case", "EXECUTORS", "Grid", "SweepError", "SweepReport", "expand", "make_backend", "read_grid_file",
           "run_sweep"]
