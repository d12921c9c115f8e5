"""``kernels-basic``: GEMM, GEMV, triad and memcpy, simulated by the cost models and measured here.

The first check of any simulator is whether its roofline survives contact with the machine it
describes: run this after ``hwsim hw calibrate`` and ``hwsim compare`` shows how far off it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Mapping

from hwsim import costs
from hwsim.costs import OpCost
from hwsim.engine import Simulation
from hwsim.errors import HardwareError
from hwsim.hardware import Device, Hardware, load_hardware
from hwsim.kernels import basic
from hwsim.kernels.gpu import gpu_available, gpu_unavailable_reason
from hwsim.kernels.measure import measure
from hwsim.records import Record
from hwsim.suites.host import host_hardware
from hwsim.suites.registry import SuiteContext, SuiteResult
from hwsim.suites.tables import Table

SUITE_NAME = "kernels-basic"
DTYPE_NAMES = {"float32": "fp32", "float64": "fp64"}


@dataclass(frozen=True)
class Case:
    op: str
    size: Mapping[str, int]
    dtype: str  # numpy name: float32 | float64

    @property
    def params(self) -> dict[str, str | int]:
        return {"op": self.op, **self.size, "dtype": self.dtype}

    @property
    def label(self) -> str:
        return f"{self.op} " + "x".join(str(v) for v in self.size.values())


def _cases(quick: bool) -> list[Case]:
    squares = (256, 1024) if quick else (128, 256, 512, 1024, 2048)
    gemvs = ((1024, 1024), (4096, 4096)) if quick else ((1024, 1024), (4096, 4096), (8192, 8192), (16384, 4096))
    triads = (100_000, 10_000_000) if quick else (100_000, 1_000_000, 10_000_000, 30_000_000)
    copies = (1 << 20, 1 << 27) if quick else (1 << 20, 1 << 24, 1 << 27, 1 << 29)
    cases = [Case("gemm", {"m": s, "n": s, "k": s}, "float32") for s in squares]
    cases += [Case("gemv", {"m": m, "k": k}, "float32") for m, k in gemvs]
    cases += [Case("triad", {"n": n}, "float64") for n in triads]
    cases += [Case("memcpy", {"nbytes": b}, "float64") for b in copies]
    return cases


def cost(device: Device, case: Case) -> OpCost:
    """The cost model's view of one case, with the same flops and bytes the kernel does."""
    s, dtype = case.size, DTYPE_NAMES[case.dtype]
    if case.op == "gemm":
        return costs.gemm(device, s["m"], s["n"], s["k"], dtype)
    if case.op == "gemv":
        return costs.gemv(device, s["m"], s["k"], dtype)
    if case.op == "triad":
        return costs.elementwise(device, s["n"], dtype, inputs=2, outputs=1, flops_per_element=2)
    return costs.memcpy(device, s["nbytes"])


def simulate(hw: Hardware, cases: list[Case], sim: Simulation) -> list[float]:
    """Run the cases back to back on one device: launch, then compute and memory traffic overlapped.

    Memory traffic is a flow capped at the bandwidth the efficiency curve grants at that size, on
    the off-chip or on-chip channel, so the engine's answer is the roofline's and the trace shows why.
    """
    device = hw.device
    track = f"{hw.name}"
    dram = sim.bandwidth(device.memory.bandwidth_bytes_per_s, f"{track}/dram")
    sram_bw = device.sram_bandwidth_bytes_per_s
    sram = sim.bandwidth(sram_bw, f"{track}/sram") if sram_bw else None
    units = sim.compute(device.compute_units, f"{track}/compute")
    durations: list[float] = []

    def run_all():  # type: ignore[no-untyped-def]
        for case in cases:
            c = cost(device, case)
            start = sim.env.now
            yield sim.timed(f"{track}/launch", case.label, c.overhead_s)
            waits = []
            if c.compute_s > 0:
                waits.append(units.run(device.compute_units, c.compute_s, case.label))
            if c.memory_s > 0:
                channel = sram if sram is not None and c.bytes <= device.sram_bytes else dram
                waits.append(channel.transfer(c.bytes, cap_bytes_per_s=c.bytes / c.memory_s, label=case.label))
            yield sim.env.all_of(waits)
            durations.append(sim.env.now - start)

    sim.process(run_all())
    sim.run()
    return durations


def _measure_case(case: Case, seed: int, device: Literal["cpu", "gpu"]) -> float:
    inputs = basic.make_inputs(case.op, case.size, case.dtype, seed)
    if device == "gpu":
        inputs = basic.to_gpu(inputs)
        impl: Callable[..., object] = basic.GPU_IMPLS[case.op]
    else:
        impl = basic.CPU_IMPLS[case.op]
    return measure(lambda: impl(*inputs), warmup=3, repeats=15, device=device, max_time_s=2.0).median_s


class KernelsBasic:
    name = SUITE_NAME
    description = "GEMM, GEMV, triad, memcpy: cost model vs measurement on this machine"
    default_hardware = "host"

    def run(self, ctx: SuiteContext) -> SuiteResult:
        hw, notes = host_hardware(ctx.hardware, quick=True, seed=ctx.seed)
        cases = _cases(ctx.quick)
        simulated = simulate(hw, cases, Simulation(tracer=ctx.tracer))
        records: list[Record] = []
        table = Table(title=f"kernels-basic on {hw.name}")
        table.add_column("case")
        table.add_column("dtype")
        table.add_column("work", "GFLOP", number_format=".3g")
        table.add_column("traffic", "MB", number_format=".3g")
        table.add_column("bound")
        table.add_column("simulated", "µs", number_format=".1f")
        table.add_column("measured", "µs", number_format=".1f")
        table.add_column("error", "%", number_format="+.1f")
        for case, sim_s in zip(cases, simulated):
            c = cost(hw.device, case)
            records.append(Record(self.name, case.params, "time", sim_s, "s", "simulated", hw.name,
                                  note=f"bound={c.bound}"))
            measured = None
            if ctx.measure:
                measured = _measure_case(case, ctx.seed, "cpu")
                records.append(Record(self.name, case.params, "time", measured, "s", "measured", hw.name))
            error = (sim_s - measured) / measured * 100 if measured else None
            table.add_row(case.label, case.dtype, c.flops / 1e9, c.bytes / 1e6, c.bound,
                          sim_s * 1e6, measured * 1e6 if measured else None, error)
        if ctx.measure and not gpu_available():
            notes.append(f"GPU rows skipped: {gpu_unavailable_reason()}")
        elif ctx.measure:
            records += self._gpu_records(ctx, cases)
        return SuiteResult(records=records, notes=notes, tables=[table])

    def _gpu_records(self, ctx: SuiteContext, cases: list[Case]) -> list[Record]:
        """Simulate on the calibrated GPU ('host-gpu') when there is one, and measure with CuPy."""
        try:
            hw = load_hardware("host-gpu")
        except HardwareError:
            hw = load_hardware("h100-sxm")
        durations = simulate(hw, cases, Simulation())
        records = []
        for case, sim_s in zip(cases, durations):
            params = {**case.params, "device": "gpu"}
            records.append(Record(self.name, params, "time", sim_s, "s", "simulated", hw.name))
            measured = _measure_case(case, ctx.seed, "gpu")
            records.append(Record(self.name, params, "time", measured, "s", "measured", hw.name))
        return records


SUITE = KernelsBasic()

__all__ = ["SUITE", "Case", "cost", "simulate"]
