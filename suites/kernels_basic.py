"""``kernels-basic``: GEMM, GEMV, triad and memcpy, simulated by the cost models and measured here.

The first check of any simulator is whether its cost models survive contact with the machine they
describe: run this after ``hwsim hw calibrate`` and ``hwsim compare`` shows how far off they are.
Predictions come from the hardware's per-family operator models (``device.operators``, written by
``hwsim hw calibrate``; a GPU preset's are derived from its datasheet) when it has them, else from
the roofline, and the table says which. Metric: ``latency_s`` on both sides.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Literal, Mapping

from hwsim import costs
from hwsim.costs import OpCost
from hwsim.costs.families import OperatorModels
from hwsim.costs.ops import itemsize, operator_models
from hwsim.engine import Simulation
from hwsim.errors import HardwareError
from hwsim.hardware import Device, Hardware, load_hardware
from hwsim.kernels import basic
from hwsim.kernels.gpu import gpu_available, gpu_unavailable_reason
from hwsim.kernels.measure import measure, measure_as_calibrated
from hwsim.records import Record
from hwsim.suites.host import host_hardware
from hwsim.suites.registry import SuiteContext, SuiteResult
from hwsim.suites.tables import Table

SUITE_NAME = "kernels-basic"
METRIC = "latency_s"
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


def family_s(models: OperatorModels, case: Case) -> float:
    """One case priced by its family's calibrated model (the same functions ``hwsim validate`` checks)."""
    s, size = case.size, itemsize(DTYPE_NAMES[case.dtype])
    if case.op == "gemm":
        return models.gemm_s(s["m"], s["n"], s["k"], size, DTYPE_NAMES[case.dtype])
    if case.op == "gemv":
        return models.gemv_s(s["m"], s["k"], size)
    if case.op == "triad":
        return models.elementwise_s(s["n"], size, 2, 1)
    return models.copy_s(s["nbytes"])


def model_name(device: Device) -> str:
    """Which model predicts on this device, for the table and the records' notes."""
    if operator_models(device) is None:
        return "roofline (no device.operators: run hwsim hw calibrate)"
    if device.operators is None:
        return "per-family models derived from the datasheet (assumptions in hwsim.costs.families)"
    return f"per-family models (device.operators, calibrated on {device.operators.threads} thread(s))"


def simulate(hw: Hardware, cases: list[Case], sim: Simulation) -> list[float]:
    """Run the cases back to back on one device.

    With per-family operator models each case is one span of its family's time on the device's
    compute track. Without them (roofline): launch, then compute and memory traffic overlapped, the
    memory traffic a flow capped at the bandwidth the efficiency curve grants at that size, on the
    off-chip or on-chip channel, so the engine's answer is the roofline's and the trace shows why.
    """
    device = hw.device
    track = f"{hw.name}"
    models = operator_models(device)
    if models is not None:
        durations_f: list[float] = []

        def run_family():  # type: ignore[no-untyped-def]
            for case in cases:
                start = sim.env.now
                yield sim.timed(f"{track}/kernel", case.label, family_s(models, case))
                durations_f.append(sim.env.now - start)

        sim.process(run_family())
        sim.run()
        return durations_f
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


def _call(case: Case, seed: int, device: Literal["cpu", "gpu"]) -> Callable[[], object]:
    inputs = basic.make_inputs(case.op, case.size, case.dtype, seed)
    if device == "gpu":
        inputs = basic.to_gpu(inputs)
        impl: Callable[..., object] = basic.GPU_IMPLS[case.op]
    else:
        impl = basic.CPU_IMPLS[case.op]
    return lambda: impl(*inputs)


def _measure_case(case: Case, seed: int, device: Literal["cpu", "gpu"]) -> float:
    return measure(_call(case, seed, device), warmup=3, repeats=15, device=device, max_time_s=2.0).median_s


def measure_cpu(cases: list[Case], seed: int, threads: int, quick: bool,
                core_reference_s: float | None = None) -> tuple[list[float], list[str], str]:
    """(best time per case, its note, load note), timed as calibration times its microbenchmarks
    (:func:`hwsim.kernels.measure.measure_as_calibrated`, held to the calibration's core speed)."""
    calls = {f"{i} {c.label}": _call(c, seed, "cpu") for i, c in enumerate(cases)}
    timings, load = measure_as_calibrated(calls, threads=threads, quick=quick, core_reference_s=core_reference_s)
    ordered = [timings[f"{i} {c.label}"] for i, c in enumerate(cases)]
    return [t.min_s for t in ordered], [t.note() for t in ordered], load


class KernelsBasic:
    name = SUITE_NAME
    description = "GEMM, GEMV, triad, memcpy: cost model vs measurement on this machine"
    default_hardware = "host"

    def run(self, ctx: SuiteContext) -> SuiteResult:
        hw, notes = host_hardware(ctx.hardware, quick=True, seed=ctx.seed)
        cases = _cases(ctx.quick)
        simulated = simulate(hw, cases, Simulation(tracer=ctx.tracer))
        models = operator_models(hw.device)
        predictor = model_name(hw.device)
        notes.append(f"predicted by {predictor}")
        measured_s: list[float | None] = [None] * len(cases)
        measured_notes = [""] * len(cases)
        if ctx.measure:
            threads = models.threads if models is not None else (os.cpu_count() or 1)
            times, measured_notes, load = measure_cpu(cases, ctx.seed, threads, ctx.quick,
                                                      models.core_reference_s if models is not None else None)
            measured_s = list(times)
            notes.append(f"measured on {threads} thread(s), interleaved best-of-k; {load}")
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
        for case, sim_s, measured, mnote in zip(cases, simulated, measured_s, measured_notes):
            c = cost(hw.device, case)
            bound = "family" if models is not None else c.bound
            records.append(Record(self.name, case.params, METRIC, sim_s, "s", "simulated", hw.name,
                                  note=f"{predictor}; bound={bound}"))
            if measured is not None:
                records.append(Record(self.name, case.params, METRIC, measured, "s", "measured", hw.name, note=mnote))
            error = (sim_s - measured) / measured * 100 if measured else None
            table.add_row(case.label, case.dtype, c.flops / 1e9, c.bytes / 1e6, bound,
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
            records.append(Record(self.name, params, METRIC, sim_s, "s", "simulated", hw.name,
                                  note=model_name(hw.device)))
            measured = _measure_case(case, ctx.seed, "gpu")
            records.append(Record(self.name, params, METRIC, measured, "s", "measured", hw.name))
        return records


SUITE = KernelsBasic()

__all__ = ["METRIC", "SUITE", "Case", "cost", "family_s", "measure_cpu", "model_name", "simulate"]
