"""One error family: every error a user can act on carries one line naming the file, field or value.

The CLI prints that line and exits with the class's ``exit_code``, never with a traceback:

| exit | meaning | classes |
| --- | --- | --- |
| 0 | done | |
| 1 | partly done: some sections or sweep cases failed; what finished is written | |
| 2 | bad input: a file, option, hardware, workload or placement problem | ConfigError, WorkloadError, PlacementError |
| 3 | a model cannot simulate the case it was given | SimulationError |
| 4 | a measurement cannot be taken here (no GPU, an unstable machine) | MeasurementError |
| 130 | interrupted (Ctrl-C); finished work is kept | |

This module imports nothing, so ``hwsim.kernels`` and ``hwsim.placement`` can share the family
without pulling in the simulator.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_BAD_INPUT = 2
EXIT_SIMULATION = 3
EXIT_MEASUREMENT = 4
EXIT_INTERRUPTED = 130


class HwsimError(Exception):
    """Base of every error the CLI reports as one line, without a traceback."""

    exit_code: int = EXIT_BAD_INPUT


class ConfigError(HwsimError):
    """A file, option or name given to hwsim is unknown, malformed or out of range."""


class WorkloadError(HwsimError):
    """A workload (model shape, trace, routing, operation size) is impossible or malformed."""


class PlacementError(WorkloadError):
    """An expert placement or placement problem is invalid or infeasible."""


class SimulationError(HwsimError):
    """A system model reached a state it cannot simulate (a model limit, reported, not a crash)."""

    exit_code = EXIT_SIMULATION


class MeasurementError(HwsimError):
    """A real kernel cannot be measured here: no device, or the machine too noisy to trust."""

    exit_code = EXIT_MEASUREMENT


# Specific kinds, kept as names because each module raises its own; each belongs to one branch above.
class HardwareError(ConfigError):
    """A hardware description is unknown, malformed or inconsistent."""


class RecordsError(ConfigError):
    """A results file cannot be read or written."""


class SuiteError(ConfigError):
    """A suite is unknown or was asked for something it cannot do."""


class CostError(WorkloadError):
    """A cost model was asked about an impossible operation (negative size, unknown dtype)."""
