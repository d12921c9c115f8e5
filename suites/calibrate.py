"""Describe this machine by measuring it: ``hwsim hw calibrate``.

Only microbenchmarks feed the fit (a STREAM-style triad, a register-resident FMA kernel), never
the GEMM/GEMV/triad/memcpy cases that ``kernels-basic`` later validates against, so the errors
that suite reports are predictions, not fits.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import yaml
from rich.console import Console

from hwsim.costs import efficiency_from_fit, fit_linear_time
from hwsim.costs.families import (
    GatherStep,
    Interference,
    MemoryStep,
    OperatorModels,
    gemm_pack_bytes,
    gemm_padded_flops,
    topk_work,
)
from hwsim.errors import MeasurementError
from hwsim.fileio import write_text_atomic
from hwsim.hardware import (
    Device,
    Efficiency,
    Hardware,
    Memory,
    dump_hardware,
    user_hardware_dir,
)
from hwsim.kernels import microbench
from hwsim.kernels.gpu import GpuUnavailable, gpu_available, gpu_unavailable_reason
from hwsim.kernels.measure import (
    PAIR_MIN_CLEAN_ROUNDS,
    SPEED_GATE,
    PairTiming,
    RobustTiming,
    load_average,
    measure_interleaved,
    pairs_interleaved,
    thread_limits,
)
from hwsim.suites.tables import Table

KiB, MiB = 1024, 1024 * 1024
# Quick calibration still needs two sizes well past any last-level cache to see DRAM.
QUICK_STREAM_SIZES_BYTES: tuple[int, ...] = (32 * KiB, 512 * KiB, 8 * MiB, 128 * MiB, 256 * MiB)


class CalibrationError(MeasurementError):
    """The measurements cannot be fitted (too noisy, or too few sizes in a regime)."""


@dataclass(frozen=True)
class CpuFacts:
    """What the operating system says about this CPU (no measurement)."""

    model: str
    clock_hz: float
    llc_bytes: float
    memory_bytes: float
    threads: int


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def _size(text: str) -> float:
    units = {"K": KiB, "M": MiB, "G": 1024 * MiB}
    text = text.strip()
    if text and text[-1] in units:
        return float(text[:-1]) * units[text[-1]]
    return float(text) if text.isdigit() else 0.0


def cpu_facts(threads: int) -> CpuFacts:
    model, mhz = platform.processor() or platform.machine(), 0.0
    for line in _read("/proc/cpuinfo").splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model in ("", platform.machine()):
            model = value.strip()
        if key.strip() == "cpu MHz" and not mhz:
            try:
                mhz = float(value)
            except ValueError:
                pass
    llc = 0.0
    for index in range(8):
        level = _read(f"/sys/devices/system/cpu/cpu0/cache/index{index}/level")
        if level:
            llc = max(llc, _size(_read(f"/sys/devices/system/cpu/cpu0/cache/index{index}/size")))
    try:
        memory = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        memory = 0.0
    return CpuFacts(model=model, clock_hz=mhz * 1e6, llc_bytes=llc, memory_bytes=memory, threads=threads)


@dataclass(frozen=True)
class Fit:
    rate: float
    fixed_s: float
    points: int


def _fit(points: Sequence[tuple[float, float]], what: str) -> Fit:
    """Rate and fixed cost of ``t = fixed + x / rate`` from (work, seconds) points.

    A busy machine only ever makes a run slower, so the best achieved rate is the estimate of the
    rate (as STREAM reports its best), and the fixed cost is what the smallest run takes beyond its
    work at that rate. A least-squares line is not used: under load its slope can come out negative.
    """
    points = [(float(x), float(t)) for x, t in points if t > 0]
    if len(points) < 2:
        raise CalibrationError(f"calibration of {what}: need at least 2 sizes with positive times, got {len(points)}")
    rate = max(x / t for x, t in points)
    smallest = sorted(points)[:2]
    fixed = max(0.0, min(t - x / rate for x, t in smallest))
    return Fit(rate, fixed, len(points))


def cpu_hardware(name: str, quick: bool, seed: int = 0) -> tuple[Hardware, list[str]]:
    """Measure the CPU and return its hardware description plus a line per fitted quantity."""
    cal = microbench.cpu_calibration(quick=quick, seed=seed)
    stream = list(cal.stream_points)
    if quick:
        stream = microbench.stream_triad_points(QUICK_STREAM_SIZES_BYTES, seed, 5)
    facts = cpu_facts(cal.threads)
    # DRAM regime: working sets at least twice the last-level cache; on chip: at most half of it
    dram = [(float(b), t) for b, t in stream if facts.llc_bytes and b >= 2 * facts.llc_bytes] or [
        (float(b), t) for b, t in stream[-2:]
    ]
    on_chip = [(float(b), t) for b, t in stream if facts.llc_bytes and b <= facts.llc_bytes / 2]
    # best sustained rate past the cache, as STREAM reports it: a busy machine only ever slows a run down
    memory = _fit(dram, "DRAM bandwidth (triad)")
    # the smallest triad moves a few KiB: its time is the cost of starting a parallel kernel
    launch_s = max(min(t for _, t in stream), cal.dispatch_overhead_s)
    fp32, fp64 = _fit(cal.fma_fp32_points, "FP32 peak (FMA)"), _fit(cal.fma_fp64_points, "FP64 peak (FMA)")
    compute_max, compute_half = efficiency_from_fit(fp32.rate, fp32.fixed_s, fp32.rate, launch_s)
    memory_max, memory_half = efficiency_from_fit(memory.rate, memory.fixed_s, memory.rate, launch_s)
    sram_bw = _fit(on_chip, "on-chip bandwidth (triad)").rate if len(on_chip) >= 2 else None
    device = Device(
        name=name,
        kind="cpu",
        compute_units=facts.threads,
        clock_hz=facts.clock_hz or 1e9,
        peak_flops_per_s={"fp32": fp32.rate, "fp64": fp64.rate},
        memory=Memory(
            capacity_bytes=facts.memory_bytes or 1.0,
            bandwidth_bytes_per_s=memory.rate,
            channels=1,
            transaction_bytes=64,
        ),
        sram_bytes=facts.llc_bytes,
        launch_overhead_s=launch_s,
        efficiency=Efficiency(compute_max, compute_half, memory_max, memory_half),
        sram_bandwidth_bytes_per_s=sram_bw,
    )
    lines = [
        f"CPU: {facts.model}, {facts.threads} threads, LLC {facts.llc_bytes / MiB:.0f} MiB",
        f"DRAM bandwidth {memory.rate / 1e9:.1f} GB/s (best triad rate over {memory.points} sizes >= 2x LLC)",
        f"on-chip bandwidth {sram_bw / 1e9:.1f} GB/s (best triad rate over {len(on_chip)} sizes <= LLC/2)"
        if sram_bw
        else "on-chip bandwidth: not fitted",
        f"FP32 peak {fp32.rate / 1e9:.1f} GFLOP/s, FP64 peak {fp64.rate / 1e9:.1f} GFLOP/s (best FMA-chain rate)",
        f"launch overhead {launch_s * 1e6:.2f} us (smallest triad); Numba call {cal.dispatch_overhead_s * 1e6:.2f} us",
    ]
    hw = Hardware(name=name, description=f"{facts.model}, calibrated by hwsim hw calibrate", device=device)
    return hw, lines


def gpu_hardware(name: str, quick: bool, seed: int = 0) -> tuple[Hardware, list[str]]:
    """Measure the GPU with CuPy (raises GpuUnavailable without one)."""
    cal = microbench.gpu_calibration(quick=quick, seed=seed)
    memory = _fit(cal.stream_points[-3:], "GPU DRAM bandwidth")
    fp32, fp64 = _fit(cal.fma_fp32_points, "GPU FP32 peak"), _fit(cal.fma_fp64_points, "GPU FP64 peak")
    launch_s = cal.launch_overhead_s
    compute_max, compute_half = efficiency_from_fit(fp32.rate, fp32.fixed_s, fp32.rate, launch_s)
    memory_max, memory_half = efficiency_from_fit(memory.rate, memory.fixed_s, memory.rate, launch_s)
    from hwsim.kernels.gpu import require_gpu

    cp = require_gpu()
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    device = Device(
        name=name,
        kind="gpu",
        compute_units=int(props["multiProcessorCount"]),
        clock_hz=float(props["clockRate"]) * 1e3,
        peak_flops_per_s={"fp32": fp32.rate, "fp64": fp64.rate},
        memory=Memory(
            capacity_bytes=float(props["totalGlobalMem"]), bandwidth_bytes_per_s=memory.rate, transaction_bytes=32
        ),
        sram_bytes=float(props["l2CacheSize"]),
        launch_overhead_s=launch_s,
        efficiency=Efficiency(compute_max, compute_half, memory_max, memory_half),
    )
    model = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    lines = [
        f"GPU: {model}",
        f"DRAM bandwidth {memory.rate / 1e9:.0f} GB/s",
        f"FP32 peak {fp32.rate / 1e12:.1f} TFLOP/s, FP64 {fp64.rate / 1e12:.1f} TFLOP/s",
        f"launch overhead {launch_s * 1e6:.2f} us",
    ]
    return Hardware(name=name, description=f"{model}, calibrated by hwsim hw calibrate", device=device), lines


def write_hardware(hw: Hardware, path: Path) -> Path:
    header = (
        "# Written by 'hwsim hw calibrate': every number below was measured on this machine by\n"
        "# microbenchmarks (triad, FMA chains, empty-kernel launches; device.operators: the per-family\n"
        "# calibration of hwsim.kernels.microbench, never a validation case), in SI base units.\n"
    )
    return write_text_atomic(path, header + yaml.safe_dump(dump_hardware(hw), sort_keys=False))


def with_operator_models(hw: Hardware, *, threads: int, quick: bool, seed: int = 0) -> tuple[Hardware, list[str]]:
    """``hw`` with its per-family operator models (``device.operators``) fitted on ``threads`` threads
    from the calibration microbenchmarks only: one calibration, one hardware file."""
    cal = fit_operator_models(threads=threads, quick=quick, seed=seed)
    m = cal.models
    dram = m.staircase[-1]
    lines = [
        f"operator models on {threads} thread(s), load {cal.load_before:.2f}->{cal.load_after:.2f}: "
        f"{len(m.staircase)} staircase steps (largest {dram.working_set_bytes / MiB:.0f} MiB: read "
        f"{dram.read_bytes_per_s / 1e9:.1f} GB/s, triad {dram.read_write_bytes_per_s / 1e9:.1f} GB/s), "
        f"GEMM {m.gemm_flops_per_s['fp32'] / 1e9:.1f} GFLOP/s, interference mem/mem "
        f"{m.interference.memory_memory:.2f} fma/fma {m.interference.compute_compute:.2f} "
        f"fma/mem {m.interference.compute_memory:.2f}",
    ]
    if m.copy_nontemporal_bytes is not None and m.copy_nontemporal_bytes_per_s is not None:
        lines.append(f"copies of {m.copy_nontemporal_bytes / MiB:.1f} MiB or more per thread write past the caches "
                     f"(C library threshold): {m.copy_nontemporal_bytes_per_s / 1e9:.1f} GB/s")
    if cal.unclean:
        lines.append(f"warning: {', '.join(cal.unclean)} measured while another process held a core (no round "
                     "ran both threads at once): run 'hwsim hw calibrate' again on a quieter machine")
    return replace(hw, device=replace(hw.device, operators=m)), lines


def calibrate_command(
    console: Console, *, quick: bool, name: str, out: Path | None, use_gpu: bool, threads: int = 1
) -> None:
    directory = user_hardware_dir()
    with console.status("calibrating the CPU (triad, FMA, dispatch)..."):
        hw, lines = cpu_hardware(name, quick)
    with console.status(f"fitting the operator models on {threads} thread(s) (staircase, GEMM, top-k, ...)..."):
        hw, more = with_operator_models(hw, threads=threads, quick=quick)
    lines += more
    path = write_hardware(hw, out or directory / f"{name}.yaml")
    for line in lines:
        console.print(f"  {line}")
    console.print(f"wrote {path}; use it with --hw {name if out is None else path}")
    if not use_gpu:
        return
    if not gpu_available():
        console.print(f"GPU: skipped ({gpu_unavailable_reason()})")
        return
    try:
        with console.status("calibrating the GPU (CuPy)..."):
            gpu, gpu_lines = gpu_hardware(f"{name}-gpu", quick)
    except GpuUnavailable as exc:
        console.print(f"GPU: skipped ({exc})")
        return
    gpu_path = write_hardware(
        gpu, (out.with_name(f"{out.stem}-gpu{out.suffix}") if out else directory / f"{name}-gpu.yaml")
    )
    for line in gpu_lines:
        console.print(f"  {line}")
    console.print(f"wrote {gpu_path}")


# --------------------------------------------------------------------------------------------------
# Per-family operator models (hwsim.costs.families), fitted from calibration microbenchmarks only.


@dataclass(frozen=True)
class ModelCalibration:
    """Fitted per-family models plus what the fit saw (for the table and the stability test)."""

    models: OperatorModels
    fitted: dict[str, float]
    """Every fitted scalar by name (the calibration-stability check compares these)."""
    timings: dict[str, RobustTiming]
    load_before: float
    load_after: float
    extra_timings: dict[str, RobustTiming] = field(default_factory=dict)
    """Timings of the ``extra`` (validation) cases measured in the same rounds; not fitted."""
    unclean: tuple[str, ...] = ()
    """Fitted numbers measured without a clean round (:func:`unclean_pairs`): reported, not trusted."""


def _fixed_and_rate(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """(fixed_s, rate) of ``t = fixed + work / rate`` from best-of-k times: the rate is the best
    achieved on the largest half of the points, the fixed cost the smallest point's remainder."""
    pts = sorted((float(w), float(t)) for w, t in points)
    big = pts[len(pts) // 2 :]
    rate = max(w / t for w, t in big)
    fixed = max(0.0, min(t - w / rate for w, t in pts[: max(1, len(pts) // 2)]))
    rate = max(w / max(t - fixed, 1e-12) for w, t in big)
    return fixed, rate


def fit_operator_models(
    *,
    threads: int,
    quick: bool,
    seed: int = 0,
    rounds: int | None = None,
    extra: Mapping[str, Callable[[], object]] | None = None,
) -> ModelCalibration:
    """Run the per-family calibration microbenchmarks on ``threads`` threads and fit their parameters.

    Only the shapes in :mod:`hwsim.kernels.microbench` (``STAIRCASE_BYTES``, ``CAL_*``) are run; the
    validation suite's shapes are disjoint. ``extra`` cases (the validation cases) are timed in the
    same interleaved rounds, so both sides see the same machine, but never enter the fit; their
    timings come back in ``ModelCalibration.extra_timings``.
    """
    rounds = rounds or (11 if quick else 15)
    sizes = microbench.STAIRCASE_BYTES  # cheap: the full staircase even when quick
    with thread_limits(threads):
        load0 = load_average()
        nontemporal = microbench.nontemporal_copy_bytes()
        stair = microbench.staircase_cases(sizes, seed, nontemporal_bytes=nontemporal)
        copy_nt = microbench.nontemporal_copy_cases(nontemporal, threads, seed)
        gemms = microbench.gemm_cases(
            microbench.CAL_GEMM_SHAPES[: 3 if quick else None] + microbench.CAL_GEMM_FEW_ROWS_SHAPES, seed)
        gemvs = microbench.gemv_cases(microbench.CAL_GEMV_SHAPES, seed)
        gemvs_dram = microbench.gemv_cases(microbench.CAL_GEMV_DRAM_SHAPES, seed)
        gathers = microbench.gather_cases(microbench.GATHER_BYTES, seed)
        soft = microbench.softmax_cases(microbench.CAL_SOFTMAX_SHAPES, seed)
        topks = microbench.topk_cases(microbench.CAL_TOPK_SHAPES, seed)
        atts = microbench.attention_cases(microbench.CAL_ATTENTION_SHAPES, seed)
        for h, q, kv, d, kept in microbench.CAL_ATTENTION_PRUNED:
            atts.update(microbench.attention_cases(((h, q, kv, d),), seed, kept))
        skinny = microbench.skinny_cases(microbench.CAL_SKINNY_SHAPES, seed)
        datt = microbench.decode_attention_cases(microbench.CAL_DECODE_ATTENTION, seed)
        disp = microbench.dispatch_cases(microbench.CAL_DISPATCH, seed)
        calls = {
            name: fn
            for group in (stair, copy_nt, gathers, gemms, gemvs, gemvs_dram, soft, topks, atts, skinny, datt, disp)
            for name, (_, fn) in group.items()
        }
        clock = "thread_cpu" if threads == 1 else "wall"
        extra = dict(extra or {})
        clash = set(extra) & set(calls)
        if clash:
            raise CalibrationError(f"validation case names collide with calibration cases: {sorted(clash)}")
        all_timings = measure_interleaved(
            {**calls, **extra},
            rounds=rounds,
            warmup=2,
            max_time_s=(20.0 if quick else 60.0) if extra else (6.0 if quick else 15.0),
            clock=clock,
            speed_gate=SPEED_GATE if clock == "thread_cpu" else None,
        )
        # Refine: the cheap cases (most of the fitted numbers: in-cache staircase steps, softmax,
        # attention, decode) again, many more interleaved rounds. A best-of estimate is only as good
        # as its chance of catching a moment when no other process evicts the caches or shares the
        # core, and on a busy machine that takes many short samples. The held-out cases get exactly
        # the same pass: a best-of over more samples comes out lower, so refining one side only
        # would bias every prediction fast.
        both = {**calls, **extra}
        cores = [t.core_reference_s for t in all_timings.values()]
        cheap = {name: both[name] for name, t in all_timings.items() if t.min_s < REFINE_BELOW_S}
        if cheap:
            again = measure_interleaved(cheap, rounds=REFINE_ROUNDS, warmup=1,
                                        max_time_s=(6.0 if quick else 12.0) * (2.0 if extra else 1.0),
                                        clock=clock, min_sample_s=2e-4,
                                        speed_gate=SPEED_GATE if clock == "thread_cpu" else None)
            cores.extend(t.core_reference_s for t in again.values())
            all_timings = {name: _better(t, again.get(name)) for name, t in all_timings.items()}
        # The costly cases (DRAM-sized steps, large GEMMs) got only a few rounds inside the first
        # pass's time limit, and few of those pass the speed gate: another pass of their own, again
        # for both sides alike.
        costly = {name: both[name] for name, t in all_timings.items() if t.min_s >= REFINE_BELOW_S}
        if costly:
            again = measure_interleaved(costly, rounds=REFINE_COSTLY_ROUNDS, warmup=0,
                                        max_time_s=(8.0 if quick else 16.0) * (2.0 if extra else 1.0),
                                        clock=clock, speed_gate=SPEED_GATE if clock == "thread_cpu" else None)
            cores.extend(t.core_reference_s for t in again.values())
            all_timings = {name: _better(t, again.get(name)) for name, t in all_timings.items()}
        timings = {name: all_timings[name] for name in calls}
        # the core's best speed seen while calibrating: later measurements are held to it
        core_reference = min((c for c in cores if math.isfinite(c)), default=None)
        extra_timings = {name: all_timings[name] for name in extra}
        best = {name: t.min_s for name, t in timings.items()}
        launch = microbench.launch_s()
        # rate per call at each working set, the call's fixed cost included: well conditioned
        # even where the fixed cost is most of the call (subtracting it would not be)
        steps = [
            MemoryStep(
                float(size),
                *(stair[f"{kind}:{size}#0"][0] / microbench.staircase_step_s(best, kind, size)
                  for kind in ("read", "triad", "copy", "weights")),
            )
            for size in sizes
        ]
        mono = steps
        tile = CPU_GEMM_TILE
        # the packing's passes through the memory levels come from the staircase, the rest is fitted;
        # where those passes alone would take a GEMM's whole measured time, the staircase and the
        # GEMMs disagree, and the packing is priced by its fitted rate alone
        stair_only = OperatorModels(threads=threads, launch_s=launch, staircase=tuple(mono),
                                    gemm_flops_per_s={"fp32": 1.0}, gemm_fixed_s=0.0,
                                    gemm_pack_moves=CPU_GEMM_PACK_MOVES)
        pack_passes_s = {name: stair_only.gemm_pack_moves_s(m, n, k, 4.0) for name, ((m, n, k), _) in gemms.items()}
        pack_moves = CPU_GEMM_PACK_MOVES if all(pack_passes_s[name] < best[name] for name in gemms) else 0.0
        gemm_rate, gemm_fixed, gemm_pack = _fit_gemm(
            [(gemm_padded_flops(m, n, k, tile, threads), gemm_pack_bytes(m, n, k, 4.0),
              best[name] - (pack_passes_s[name] if pack_moves else 0.0))
             for name, ((m, n, k), _) in gemms.items()]
        )
        base = OperatorModels(
            threads=threads,
            launch_s=launch,
            staircase=tuple(mono),
            gemm_flops_per_s={"fp32": gemm_rate},
            gemm_fixed_s=gemm_fixed,
            gemm_tile_m=tile[0],
            gemm_tile_n=tile[1],
            gemm_pack_bytes_per_s=gemm_pack,
            gemm_pack_moves=pack_moves,
            gather=tuple(GatherStep(float(size), best[f"gather:{size}"] / gathers[f"gather:{size}"][0])
                         for size in microbench.GATHER_BYTES),
            copy_nontemporal_bytes=float(nontemporal) if copy_nt and nontemporal else None,
            copy_nontemporal_bytes_per_s=next((moved / best[name] for name, (moved, _) in copy_nt.items()), None),
        )
        def gemv_fraction_of(cases: Mapping[str, tuple[tuple[int, int], object]]) -> float:
            return min(1.0, statistics.median(
                base.stream_s((m * k + k + m) * 4.0, 0.0) / max(best[name] - launch, 1e-9)
                for name, ((m, k), _) in cases.items()))

        def gemv_bytes(cases: Mapping[str, tuple[tuple[int, int], object]]) -> list[float]:
            return [(m * k + k + m) * 4.0 for (m, k), _ in cases.values()]

        gemv_fraction = gemv_fraction_of(gemvs)
        gemv_dram_fraction = gemv_fraction_of(gemvs_dram)
        soft_rate = max(r * c / max(best[name] - launch, 1e-9) for name, ((r, c), _) in soft.items())
        # the kernel's own structure (topk_work): per call, per row, quick-select elements, filter blocks
        # that store and the filter's pass, each priced where the rows live; the strided sample's
        # cache lines are priced by the measured gather (CPU_TOPK_GATHER_FACTOR), not fitted
        def topk_terms(rows: int, n: int, k: int) -> tuple[tuple[float, ...], float]:
            work = topk_work(n, k, 4.0)
            line_s = base.topk_sample_line_s(rows, n, 4.0)
            pass_s = base.stream_s(rows * n * 4.0, 0.0) if work.filtered else 0.0
            gather_s = CPU_TOPK_GATHER_FACTOR * rows * work.sample_lines * line_s
            return ((1.0, rows, rows * work.selection_elements, rows * work.hit_blocks, pass_s,
                     rows * work.dense_blocks), gather_s)

        topk_points = []
        for name, (shape, _) in topks.items():
            terms, gather_s = topk_terms(*shape)
            topk_points.append((terms, best[name] - launch - gather_s))
        topk_call, topk_row, per_select, per_hit_block, stream_factor, per_dense_block = _fit_nonnegative(topk_points)
        gather_factor = CPU_TOPK_GATHER_FACTOR
        per_flop, per_byte = _fit_two(
            [
                (4.0 * h * q * t * d, 2.0 * h * t * d * 4.0, best[name] - launch - h * q * t / soft_rate)
                for name, ((h, q, t, d), _) in atts.items()
            ]
        )
        att_rate, gather_bw = 1.0 / per_flop, (1.0 / per_byte if per_byte > 0 else math.inf)
        # skinny GEMM: the weights stream at the staircase's weights rate (one row, its dot products
        # included); each row past the first adds 2 n k dot-product FLOP: t - stream = 2 (rows - 1) n k / rate
        # (least squares on relative error: the small cases count as much as the large)
        extra_rows = [
            (2.0 * (r - 1) * n * k / best[name],
             1.0 - n * k * 4.0 / base.bandwidth(n * k * 4.0, write=False, weights=True) / best[name])
            for name, ((r, n, k), _) in skinny.items()
            if r > 1
        ]
        skinny_rate = sum(f * f for f, _ in extra_rows) / max(sum(f * y for f, y in extra_rows), 1e-30)
        dispatch_slot = max(
            0.0,
            statistics.median(
                (best[name] - launch - base.dispatch_stream_s(tokens, slots, h, 4.0)) / slots
                for name, ((tokens, slots, h), _) in disp.items()
            ),
        )
        # reported, and the fallback for a staircase without the weights kind: the weights rate as a
        # fraction of the read rate from memory (the largest step)
        skinny_fraction = min(1.0, mono[-1].weights_bytes_per_s / mono[-1].read_bytes_per_s)  # type: ignore[operator]
        datt_rate = max(
            4.0
            * b
            * h
            * (ln + 1)
            * d
            / max(best[name] - launch - base.decode_attention_stream_s([ln] * b, h, d, 4.0), 1e-9)
            for name, ((b, h, ln, d), _) in datt.items()
        )
        interference, unclean = pair_interference(seed) if (os.cpu_count() or 1) >= 2 else (Interference(), ())
        load1 = load_average()
    models = replace(
        base,
        gemv_read_fraction=gemv_fraction,
        gemv_cache_bytes=max(gemv_bytes(gemvs)),
        gemv_dram_read_fraction=gemv_dram_fraction,
        gemv_dram_bytes=min(gemv_bytes(gemvs_dram)),
        softmax_elements_per_s=soft_rate,
        topk_call_s=topk_call,
        topk_row_s=topk_row,
        topk_select_element_s=per_select,
        topk_hit_block_s=per_hit_block,
        topk_dense_block_s=per_dense_block,
        topk_gather_factor=gather_factor,
        topk_stream_factor=stream_factor,
        attention_flops_per_s=att_rate,
        gather_bytes_per_s=gather_bw,
        skinny_flops_per_s=skinny_rate,
        skinny_read_fraction=skinny_fraction,
        decode_attention_flops_per_s=datt_rate,
        dispatch_slot_s=dispatch_slot,
        interference=interference,
        core_reference_s=core_reference,
    )
    fitted = {
        "launch_s": launch,
        "gemm_fp32_flops_per_s": gemm_rate,
        "gemm_fixed_s": gemm_fixed,
        "gemm_pack_bytes_per_s": gemm_pack or 0.0,
        "gemv_read_fraction": models.gemv_read_fraction,
        "gemv_dram_read_fraction": gemv_dram_fraction,
        "softmax_elements_per_s": soft_rate,
        "topk_call_s": topk_call,
        "topk_row_s": topk_row,
        "topk_select_element_s": per_select,
        "topk_hit_block_s": per_hit_block,
        "topk_dense_block_s": per_dense_block,
        "topk_gather_factor": gather_factor,
        "topk_stream_factor": stream_factor,
        "attention_flops_per_s": att_rate,
        "gather_bytes_per_s": gather_bw,
        "skinny_flops_per_s": skinny_rate,
        "skinny_read_fraction": skinny_fraction,
        "decode_attention_flops_per_s": datt_rate,
        "dispatch_slot_s": dispatch_slot,
        **({"copy_nontemporal_bytes_per_s": base.copy_nontemporal_bytes_per_s}
           if base.copy_nontemporal_bytes_per_s is not None else {}),
        **interference_fitted(interference),
        **({"core_reference_s": core_reference} if core_reference is not None else {}),
    }
    for g in models.gather:
        fitted[f"gather_line_s@{int(g.working_set_bytes)}"] = g.line_s
    for s in mono:
        fitted[f"read_bytes_per_s@{int(s.working_set_bytes)}"] = s.read_bytes_per_s
        fitted[f"read_write_bytes_per_s@{int(s.working_set_bytes)}"] = s.read_write_bytes_per_s
        fitted[f"copy_bytes_per_s@{int(s.working_set_bytes)}"] = s.copy_bytes_per_s or 0.0
        fitted[f"weights_bytes_per_s@{int(s.working_set_bytes)}"] = s.weights_bytes_per_s or 0.0
    return ModelCalibration(models, fitted, timings, load0, load1, extra_timings, unclean)


#: Cases faster than this (calibration and held-out alike) get the refining pass of REFINE_ROUNDS more rounds.
REFINE_BELOW_S = 0.02
REFINE_ROUNDS = 41
#: Rounds of the second pass over the cases at or above REFINE_BELOW_S (time-limited).
REFINE_COSTLY_ROUNDS = 9


def _better(first: RobustTiming, second: RobustTiming | None) -> RobustTiming:
    """The timing with the lower minimum (both are best-of estimates of the same call)."""
    return first if second is None or first.min_s <= second.min_s else second


#: Cost of one cache line of the CPU top-k's strided sample, in lines of the strided-gather
#: microbenchmark over an array of one row's size (OperatorModels.topk_sample_line_s). Assumption: the
#: sample's loads behave as that gather's (a separate load per line, one element each); fixed rather
#: than fitted because the calibration shapes cannot separate it from the filter pass: left free, it
#: moved by 20-40% between two calibrations whose predictions agreed within 4%. (It used to be in
#: lines streamed at the staircase bandwidth; a gathered line took 1.7x a streamed one from the L2
#: and 3x from the L3 here, which priced a 4 MiB row's 8192-line sample 35 us short.)
CPU_TOPK_GATHER_FACTOR = 1.0


#: CPU GEMM output tile: assumption (OpenBLAS's AVX-512 SGEMM micro-kernel computes 16 x 4 and 16 x 8
#: blocks; a GEMM with 8 rows costs nearly what one with 16 does on the development host); only the
#: quantization of small matrices depends on it.
CPU_GEMM_TILE: tuple[int, int] = (16, 16)
#: Passes of a CPU BLAS GEMM over its packed bytes that the memory levels price: packing reads the
#: operands, the tiles read the panels (structure, not fitted: OperatorModels.gemm_pack_moves_s).
CPU_GEMM_PACK_MOVES = 2.0


def _fit_gemm(points: Sequence[tuple[float, float, float]]) -> tuple[float, float, float | None]:
    """(rate, fixed_s, pack_bytes_per_s) of ``t = fixed + flops / rate + packed / pack_rate`` from
    (padded flops, packed bytes, best time) points, non-negative least squares on relative error
    (:func:`_fit_nonnegative`). The shapes with few rows are what separate the packing term from the
    flops; a packing term that drops out leaves ``pack_bytes_per_s`` unset."""
    fixed, per_flop, per_byte = _fit_nonnegative([((1.0, f, p), t) for f, p, t in points])
    if per_flop <= 0:
        rate, fixed = fit_linear_time([(f, t) for f, _, t in points])
        return rate, max(fixed, 0.0), None
    return 1.0 / per_flop, fixed, (1.0 / per_byte if per_byte > 0 else None)


def _fit_two(points: Sequence[tuple[float, float, float]]) -> tuple[float, float]:
    """Non-negative ``(a, b)`` of ``t = a * x1 + b * x2`` by least squares on relative error; when
    the two-term fit goes negative, the one-term fit ``t = a * x1`` (b = 0)."""
    import numpy as np

    x = np.array([[x1, x2] for x1, x2, _ in points], dtype=float)
    t = np.array([max(tt, 1e-9) for _, _, tt in points])
    w = 1.0 / t
    coef, *_ = np.linalg.lstsq(x * w[:, None], t * w, rcond=None)
    a, b = float(coef[0]), float(coef[1])
    if a <= 0 or b < 0:
        a, b = float(np.sum(w * w * x[:, 0] * t) / np.sum(w * w * x[:, 0] ** 2)), 0.0
    return a, b


def _fit_nonnegative(points: Sequence[tuple[tuple[float, ...], float]]) -> tuple[float, ...]:
    """Non-negative coefficients of ``t = sum(c_i * x_i)`` by least squares on relative error: a term
    whose coefficient comes out negative is dropped (set to 0) and the rest refitted."""
    import numpy as np

    x = np.array([xs for xs, _ in points], dtype=float)
    t = np.array([max(tt, 1e-9) for _, tt in points])
    w = 1.0 / t
    active = list(range(x.shape[1]))
    coef = np.zeros(x.shape[1])
    while active:
        sol, *_ = np.linalg.lstsq(x[:, active] * w[:, None], t * w, rcond=None)
        coef[:] = 0.0
        coef[active] = sol
        if (sol >= 0).all():
            break
        active.pop(int(np.argmin(sol)))
    return tuple(float(c) for c in coef)


#: Calibration pairs: FMA passes over 4096 values, and ``c = a + b`` over this many bytes (x4 passes):
#: past the last-level cache alone and together, so the pair measures sharing DRAM bandwidth alone
#: (sharing the caches is priced from the staircase: ``families.shared_caches_s``). At 48 MiB a
#: stream partly fits alone and not beside the other, and its slowdown moved between 1.0 and 2.05
#: with what the host's other tenants held in the cache.
CAL_PAIR_FMA_PASSES = 400
CAL_PAIR_STREAM_BYTES = 160 * MiB
#: The FMA kernel's values (float64), and the bytes it touches (its input and output).
PAIR_FMA_VALUES = 4096
PAIR_FMA_BYTES = 2 * 8 * PAIR_FMA_VALUES


def pair_kernels(
    seed: int, fma_passes: int, stream_bytes: int
) -> tuple[list[Callable[[], object]], list[Callable[[], object]]]:
    """Two independent FMA calls and two independent stream calls (each single-threaded, GIL released)."""
    import numpy as np

    from hwsim.kernels.overlap import FMA_STEPS, _fma_stream, _vector_add

    rng = np.random.default_rng(seed)
    x = rng.random(PAIR_FMA_VALUES)
    fmas: list[Callable[[], object]] = []
    streams: list[Callable[[], object]] = []
    for _ in range(2):
        out = np.empty_like(x)
        fmas.append(partial(_fma_stream, x, out, FMA_STEPS, fma_passes))
        n = stream_bytes // 24
        a, b, c = rng.random(n), rng.random(n), np.empty(n)
        streams.append(partial(_passes, _vector_add, 4, a, b, c))
    for fn in fmas + streams:
        fn()
    return fmas, streams


def _passes(fn: Callable[..., object], count: int, *args: object) -> None:
    for _ in range(count):
        fn(*args)


#: Interleaved rounds of the calibration pairs.
PAIR_ROUNDS = 9


def calibration_pairs(seed: int) -> dict[str, tuple[Callable[[], object], Callable[[], object]]]:
    """The three calibration pairs, each kernel single-threaded: FMA+FMA, stream+stream, FMA+stream."""
    fmas, streams = pair_kernels(seed, CAL_PAIR_FMA_PASSES, CAL_PAIR_STREAM_BYTES)
    return {"cal fma+fma": (fmas[0], fmas[1]), "cal stream+stream": (streams[0], streams[1]),
            "cal fma+stream": (fmas[0], streams[0])}


#: Each calibration pair and the fitted number it determines.
PAIR_FITS = {"cal stream+stream": "interference_memory_memory", "cal fma+fma": "interference_compute_compute",
             "cal fma+stream": "interference_compute_memory"}


def interference_from(timings: Mapping[str, PairTiming]) -> Interference:
    """The calibrated slowdowns from the calibration pairs' timings (:func:`calibration_pairs`'
    names): per pair, the mean of its two kernels' median per-round slowdowns, never below 1."""
    return Interference(**{fit.removeprefix("interference_"): max(1.0, statistics.fmean(timings[pair].slowdowns))
                           for pair, fit in PAIR_FITS.items()})


def interference_fitted(interference: Interference) -> dict[str, float]:
    """The interference factors under their fitted-number names (PAIR_FITS' values)."""
    return {fit: getattr(interference, fit.removeprefix("interference_")) for fit in PAIR_FITS.values()}


def unclean_pairs(timings: Mapping[str, PairTiming]) -> tuple[str, ...]:
    """The interference numbers whose pair had fewer than PAIR_MIN_CLEAN_ROUNDS rounds with both
    threads on a core: another process held a core, so a two-thread slowdown could not be measured
    (on two cores nothing can), and the number is the best guess from disturbed rounds."""
    return tuple(fit for pair, fit in PAIR_FITS.items() if timings[pair].clean_rounds < PAIR_MIN_CLEAN_ROUNDS)


def pair_interference(seed: int) -> tuple[Interference, tuple[str, ...]]:
    """FMA+FMA, stream+stream and FMA+stream pairs on two threads, interleaved round by round: the
    calibrated slowdowns, and the names of those measured without a clean round (:func:`unclean_pairs`)."""
    timings = pairs_interleaved(calibration_pairs(seed), PAIR_ROUNDS)
    return interference_from(timings), unclean_pairs(timings)


def calibration_table(cal: ModelCalibration) -> Table:
    """The fitted parameters as data (the CLI renders it)."""
    table = Table(
        title=f"per-family calibration ({cal.models.threads} threads, load {cal.load_before:.2f}->{cal.load_after:.2f})"
    )
    table.add_column("parameter")
    table.add_column("value", justify="right", number_format=".4g")
    for name, value in cal.fitted.items():
        table.add_row(name, value)
    return table
