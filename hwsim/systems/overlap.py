"""Predict two kernels run concurrently from their alone-times: compute units and memory bandwidth shared.

The T3 model's contention mechanism, cut down to what a microbenchmark can check: a kernel is a
number of blocks (thread blocks on a GPU, threads on a CPU) run in waves on the free units, and a
number of bytes streamed from memory. Alone, each wave lasts ``alone_s / waves_alone`` and its bytes
flow at the kernel's alone rate; together, the two kernels split the units (each gets what the other
does not hold) and share the memory bandwidth by max-min fairness, so a kernel slows when it loses
units (more waves) or when the summed demand exceeds the bandwidth (longer waves).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import simpy

from hwsim.costs.families import Interference, concurrent_s
from hwsim.engine import Simulation
from hwsim.errors import SimulationError


class OverlapError(SimulationError):
    """A kernel footprint or machine description the predictor cannot use."""


@dataclass(frozen=True)
class KernelFootprint:
    """What a kernel needs: its measured alone time, the bytes it streams, and its blocks."""

    name: str
    alone_s: float
    bytes: float
    blocks: int

    def __post_init__(self) -> None:
        if not self.alone_s > 0:
            raise OverlapError(f"kernel {self.name!r}: alone_s must be > 0, got {self.alone_s!r}")
        if not self.bytes >= 0:
            raise OverlapError(f"kernel {self.name!r}: bytes must be >= 0, got {self.bytes!r}")
        if self.blocks < 1:
            raise OverlapError(f"kernel {self.name!r}: blocks must be >= 1, got {self.blocks!r}")


@dataclass(frozen=True)
class OverlapPrediction:
    """Predicted times of each kernel when both start together, and of the pair."""

    first_s: float
    second_s: float
    both_s: float

    def efficiency(self, first_alone_s: float, second_alone_s: float) -> float:
        """(t_a + t_b - t_both) / min(t_a, t_b): 1 is perfect overlap, 0 is serial."""
        return (first_alone_s + second_alone_s - self.both_s) / min(first_alone_s, second_alone_s)


def _waves(blocks: int, units: int) -> int:
    return -(-blocks // units)


def predict_concurrent(first: KernelFootprint, second: KernelFootprint, units: int,
                       bandwidth_bytes_per_s: float, sim: Simulation | None = None) -> OverlapPrediction:
    """Run both kernels from time 0 on ``units`` units and one memory of ``bandwidth_bytes_per_s``.

    ``first`` is placed first: it holds ``min(blocks, units - 1)`` units while it runs and ``second``
    runs its waves on what is left (all units once ``first`` is done).
    """
    if units < 2:
        raise OverlapError(f"two concurrent kernels need at least 2 units, got {units}")
    if not bandwidth_bytes_per_s > 0:
        raise OverlapError(f"bandwidth_bytes_per_s must be > 0, got {bandwidth_bytes_per_s!r}")
    sim = sim if sim is not None else Simulation()
    env = sim.env
    memory = sim.bandwidth(bandwidth_bytes_per_s, "overlap/memory")
    held = {first.name: 0, second.name: 0}
    done: dict[str, float] = {}
    if first.name == second.name:
        raise OverlapError(f"the two kernels need different names, both are {first.name!r}")

    def run(k: KernelFootprint, other: KernelFootprint) -> Generator[simpy.events.Event, object, None]:
        waves_alone = _waves(k.blocks, units)
        wave_s = k.alone_s / waves_alone
        per_block_bytes = k.bytes / k.blocks
        left = k.blocks
        while left:
            # the block scheduler hands this kernel the units the other one does not hold (at least one)
            free = units - (held[other.name] if other.name not in done else 0)
            take = max(1, min(left, free))
            held[k.name] = take
            nbytes = per_block_bytes * take
            events: list[simpy.events.Event] = [env.timeout(wave_s)]
            if nbytes > 0:
                events.append(memory.transfer(nbytes, cap_bytes_per_s=nbytes / wave_s, label=k.name))
            yield env.all_of(events)
            left -= take
        held[k.name] = 0
        done[k.name] = env.now

    # ``first`` claims its units at launch (leaving at least one), ``second`` gets the rest: the
    # collective-style kernel that takes CUs away from the GEMM goes first
    held[first.name] = min(first.blocks, units - 1)
    held[second.name] = min(second.blocks, units - held[first.name])
    procs = [env.process(run(first, second)), env.process(run(second, first))]
    sim.run(env.all_of(procs))
    return OverlapPrediction(done[first.name], done[second.name], max(done.values()))


__all__ = ["Interference", "KernelFootprint", "OverlapError", "OverlapPrediction", "predict_concurrent",
           "predict_shared"]


def predict_shared(first: KernelFootprint, second: KernelFootprint, units: int, bandwidth_bytes_per_s: float,
                   interference: Interference) -> OverlapPrediction:
    """Two kernels started together, as a block scheduler and a calibrated machine run them.

    Units: each kernel gets the blocks it asks for when both fit; otherwise the units are split in
    proportion to the blocks each asks for (a scheduler dispatching both grids' blocks as units free
    up), never first-takes-all; a kernel with fewer units than it had alone runs more waves. Then the
    calibrated :class:`~hwsim.costs.families.Interference` slows each by what both are bound by (its
    memory share = its alone bytes / (alone time * bandwidth)). Once one finishes, the other runs
    alone. The answer can land anywhere between perfect overlap and serial, as measured pairs do.
    """
    if units < 1:
        raise OverlapError(f"units must be >= 1, got {units}")
    if not bandwidth_bytes_per_s > 0:
        raise OverlapError(f"bandwidth_bytes_per_s must be > 0, got {bandwidth_bytes_per_s!r}")
    demand = first.blocks + second.blocks
    stretched = []
    for k in (first, second):
        alone_units = min(k.blocks, units)
        share = alone_units if demand <= units else max(1, int(units * k.blocks / demand))
        stretched.append(k.alone_s * _waves(k.blocks, share) / _waves(k.blocks, alone_units))
    mem = [min(1.0, k.bytes / (k.alone_s * bandwidth_bytes_per_s)) for k in (first, second)]
    a, b, both = concurrent_s(stretched[0], stretched[1], mem[0], mem[1], interference)
    return OverlapPrediction(a, b, both)
