"""Describe this machine by measuring it: ``hwsim hw calibrate``.

Only microbenchmarks feed the fit (a STREAM-style triad, a register-resident FMA kernel), never
the GEMM/GEMV/triad/memcpy cases that ``kernels-basic`` later validates against, so the errors
that suite reports are predictions, not fits.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import yaml
from rich.console import Console

from hwsim.costs import efficiency_from_fit
from hwsim.errors import MeasurementError
from hwsim.fileio import write_text_atomic
from hwsim.hardware import Device, Efficiency, Hardware, Memory, dump_hardware, user_hardware_dir
from hwsim.kernels import microbench
from hwsim.kernels.gpu import GpuUnavailable, gpu_available, gpu_unavailable_reason

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
    dram = [(float(b), t) for b, t in stream if facts.llc_bytes and b >= 2 * facts.llc_bytes] or [(float(b), t) for b, t in stream[-2:]]
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
        memory=Memory(capacity_bytes=facts.memory_bytes or 1.0, bandwidth_bytes_per_s=memory.rate, channels=1,
                      transaction_bytes=64),
        sram_bytes=facts.llc_bytes,
        launch_overhead_s=launch_s,
        efficiency=Efficiency(compute_max, compute_half, memory_max, memory_half),
        sram_bandwidth_bytes_per_s=sram_bw,
    )
    lines = [
        f"CPU: {facts.model}, {facts.threads} threads, LLC {facts.llc_bytes / MiB:.0f} MiB",
        f"DRAM bandwidth {memory.rate / 1e9:.1f} GB/s (best triad rate over {memory.points} sizes >= 2x LLC)",
        f"on-chip bandwidth {sram_bw / 1e9:.1f} GB/s (best triad rate over {len(on_chip)} sizes <= LLC/2)" if sram_bw else "on-chip bandwidth: not fitted",
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
        name=name, kind="gpu", compute_units=int(props["multiProcessorCount"]), clock_hz=float(props["clockRate"]) * 1e3,
        peak_flops_per_s={"fp32": fp32.rate, "fp64": fp64.rate},
        memory=Memory(capacity_bytes=float(props["totalGlobalMem"]), bandwidth_bytes_per_s=memory.rate, transaction_bytes=32),
        sram_bytes=float(props["l2CacheSize"]), launch_overhead_s=launch_s,
        efficiency=Efficiency(compute_max, compute_half, memory_max, memory_half),
    )
    model = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    lines = [f"GPU: {model}", f"DRAM bandwidth {memory.rate / 1e9:.0f} GB/s",
             f"FP32 peak {fp32.rate / 1e12:.1f} TFLOP/s, FP64 {fp64.rate / 1e12:.1f} TFLOP/s",
             f"launch overhead {launch_s * 1e6:.2f} us"]
    return Hardware(name=name, description=f"{model}, calibrated by hwsim hw calibrate", device=device), lines


def write_hardware(hw: Hardware, path: Path) -> Path:
    header = (f"# Written by 'hwsim hw calibrate': every number below was measured on this machine by\n"
              f"# microbenchmarks (triad, FMA chains, empty-kernel launches), in SI base units.\n")
    return write_text_atomic(path, header + yaml.safe_dump(dump_hardware(hw), sort_keys=False))


def calibrate_command(console: Console, *, quick: bool, name: str, out: Path | None, use_gpu: bool) -> None:
    directory = user_hardware_dir()
    with console.status("calibrating the CPU (triad, FMA, dispatch)..."):
        hw, lines = cpu_hardware(name, quick)
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
    gpu_path = write_hardware(gpu, (out.with_name(f"{out.stem}-gpu{out.suffix}") if out else directory / f"{name}-gpu.yaml"))
    for line in gpu_lines:
        console.print(f"  {line}")
    console.print(f"wrote {gpu_path}")
