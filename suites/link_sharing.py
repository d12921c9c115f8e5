"""``link-sharing``: flows arriving at random on one shared link, checked against queueing theory.

Every system model here rests on the engine's shared bandwidth (weighted max-min fair sharing,
recomputed at each arrival and departure). With equal weights and Poisson arrivals that is an
M/G/1 processor-sharing queue, whose mean sojourn time has a closed form that does not depend on
the size distribution: ``E[T] = (E[S] / C) / (1 - rho)`` (Kleinrock, *Queueing Systems* vol. 2,
1976, section 4.4). So the suite both checks the engine against theory and, being one knob-rich
simulation per case, is the natural workload for ``hwsim sweep`` over loads, sizes and links.
"""

from __future__ import annotations

import math
from collections.abc import Generator

import numpy as np
import simpy

from hwsim.engine import Simulation
from hwsim.hardware import Hardware, load_hardware
from hwsim.records import TOLERANCE, CaseValue, Record, within_tolerance
from hwsim.suites.registry import Parameter, SuiteContext, SuiteResult, resolve_params
from hwsim.suites.tables import Table

SUITE_NAME = "link-sharing"
WARMUP_FRACTION = 0.1  # flows discarded from the statistics while the queue fills from empty
LOGNORMAL_SIGMA = 1.0  # spread of the heavy-tailed size law (sigma of log size); mean is kept at mean_size

PARAMETERS: dict[str, Parameter] = {
    "flows": Parameter(20_000, "flows simulated per case (more: tighter statistics, longer run)", minimum=10),
    "load": Parameter(0.7, "offered load rho = arrival rate x mean size / link bandwidth", minimum=0.01,
                      maximum=0.99),
    "mean_size_bytes": Parameter(1e6, "mean flow size in bytes", minimum=1.0),
    "size_dist": Parameter("exponential", "flow-size law", choices=("exponential", "lognormal", "fixed")),
    "weights": Parameter(1, "weight classes: flow i gets weight 1 + i mod weights (1: plain processor sharing)",
                         minimum=1),
}
QUICK_FLOWS = 2_000


def link_bandwidth_bytes_per_s(hw: Hardware) -> tuple[float, str]:
    """The shared link of the hardware: its inter-device link, or the memory port of a single device."""
    if hw.topology.link is not None:
        return hw.topology.link.bandwidth_bytes_per_s, "topology.link"
    return hw.device.memory.bandwidth_bytes_per_s, "device.memory"


def flow_sizes(rng: np.random.Generator, law: str, mean_bytes: float, count: int) -> np.ndarray:
    if law == "exponential":
        return rng.exponential(mean_bytes, count)
    if law == "lognormal":
        mu = math.log(mean_bytes) - LOGNORMAL_SIGMA**2 / 2  # E[exp(N(mu, s^2))] = exp(mu + s^2/2)
        return rng.lognormal(mu, LOGNORMAL_SIGMA, count)
    return np.full(count, mean_bytes)


def simulate(bandwidth_bytes_per_s: float, sizes: np.ndarray, gaps_s: np.ndarray, weights: np.ndarray,
             sim: Simulation) -> np.ndarray:
    """Completion time of every flow: each one arrives after its gap and shares the link until done."""
    link = sim.bandwidth(bandwidth_bytes_per_s, "link/shared")
    fct_s = np.zeros(len(sizes))

    def one(i: int) -> Generator[simpy.events.Event, object, None]:
        start = sim.env.now
        yield link.transfer(float(sizes[i]), weight=float(weights[i]), label=f"flow {i}")
        fct_s[i] = sim.env.now - start

    def arrivals() -> Generator[simpy.events.Event, object, None]:
        for i, gap in enumerate(gaps_s):
            yield sim.env.timeout(float(gap))
            sim.process(one(i))

    sim.process(arrivals())
    sim.run()
    return fct_s


class LinkSharing:
    name = SUITE_NAME
    description = "Poisson flows sharing one link: engine vs M/G/1 processor-sharing theory"
    default_hardware = "t3-gpu"
    parameters = PARAMETERS

    def run(self, ctx: SuiteContext) -> SuiteResult:
        p = resolve_params(self, ctx.params)
        hw = ctx.hardware if ctx.hardware is not None else load_hardware(self.default_hardware)
        bandwidth, which = link_bandwidth_bytes_per_s(hw)
        count = min(int(p["flows"]), QUICK_FLOWS) if ctx.quick else int(p["flows"])
        load, mean_size = float(p["load"]), float(p["mean_size_bytes"])
        rng = np.random.default_rng(ctx.seed)
        sizes = flow_sizes(rng, str(p["size_dist"]), mean_size, count)
        gaps_s = rng.exponential(mean_size / (load * bandwidth), count)  # Poisson arrivals at rate rho*C/E[S]
        weights = 1.0 + np.arange(count) % int(p["weights"])
        fct_s = simulate(bandwidth, sizes, gaps_s, weights, Simulation(tracer=ctx.tracer))

        kept = slice(int(count * WARMUP_FRACTION), None)
        mean_fct_s = float(fct_s[kept].mean())
        slowdown = fct_s[kept] / (sizes[kept] / bandwidth)
        theory_s = (mean_size / bandwidth) / (1.0 - load)  # M/G/1-PS mean sojourn (Kleinrock 1976)
        ratio = mean_fct_s / theory_s
        case: dict[str, CaseValue] = {"flows": count, "load": load, "mean_size_bytes": mean_size,
                                      "size_dist": str(p["size_dist"]), "weights": int(p["weights"])}
        records = [
            Record(self.name, case, "mean_fct_s", mean_fct_s, "s", "simulated", hw.name),
            Record(self.name, case, "p99_fct_s", float(np.percentile(fct_s[kept], 99)), "s", "simulated", hw.name),
            Record(self.name, case, "mean_slowdown", float(slowdown.mean()), "1", "simulated", hw.name),
            Record(self.name, case, "mean_fct_over_ps_theory", ratio, "1", "simulated", hw.name,
                   note=f"M/G/1-PS mean sojourn {theory_s:.6g} s (exact for weights=1)"),
        ]
        table = Table(title=f"link-sharing on {hw.name} ({which}, {bandwidth / 1e9:.4g} GB/s)")
        table.add_column("flows", justify="right")
        table.add_column("load", number_format=".2f")
        table.add_column("sizes")
        table.add_column("weights", justify="right")
        table.add_column("mean FCT", "µs", number_format=".2f")
        table.add_column("p99 FCT", "µs", number_format=".2f")
        table.add_column("M/G/1-PS theory", "µs", number_format=".2f")
        table.add_column("ratio", number_format=".3f")
        table.add_column(f"within ±{TOLERANCE:.0%}?")
        table.add_row(count, load, str(p["size_dist"]), int(p["weights"]), mean_fct_s * 1e6, records[1].value * 1e6,
                      theory_s * 1e6, ratio, "yes" if within_tolerance(mean_fct_s, theory_s) else "no")
        notes = []
        if int(p["weights"]) > 1:
            notes.append("weighted sharing is discriminatory processor sharing: the PS formula is a reference, "
                         "not exact")
        return SuiteResult(records=records, notes=notes, tables=[table])


SUITE = LinkSharing()

__all__ = ["SUITE", "PARAMETERS", "flow_sizes", "link_bandwidth_bytes_per_s", "simulate"]
