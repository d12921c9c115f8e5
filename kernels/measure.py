"""Measurement harness shared by the kernel suites and the calibration microbenchmarks.

One function, ``measure``, so that every figure the project reports was taken the
same way: warm-up calls (JIT compile, caches, clocks), then individually timed
calls, summarised by the median (robust to the odd preempted sample).
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Literal

from hwsim.kernels.gpu import require_gpu

__all__ = ["Timing", "measure", "MIN_SAMPLES"]

Device = Literal["cpu", "gpu"]

#: An early stop (time budget spent) still keeps at least this many timed samples.
MIN_SAMPLES = 3


@dataclass(frozen=True)
class Timing:
    """Summary of timed calls; ``repeats``/``warmup`` are the counts actually run."""

    median_s: float
    min_s: float
    max_s: float
    mean_s: float
    repeats: int
    warmup: int
    device: Device
    samples_s: tuple[float, ...]

    @classmethod
    def from_samples(cls, samples_s: tuple[float, ...], *, warmup: int, device: Device) -> "Timing":
        """Build the summary from raw per-call seconds."""
        if not samples_s:
            raise ValueError("samples_s: need at least one sample, got 0")
        return cls(
            median_s=float(statistics.median(samples_s)),
            min_s=float(min(samples_s)),
            max_s=float(max(samples_s)),
            mean_s=float(statistics.fmean(samples_s)),
            repeats=len(samples_s),
            warmup=warmup,
            device=device,
            samples_s=tuple(float(s) for s in samples_s),
        )


def _check_count(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _validate(fn: Any, warmup: Any, repeats: Any, device: Any, max_time_s: Any) -> None:
    if not callable(fn):
        raise ValueError(f"fn must be callable, got {fn!r}")
    _check_count("warmup", warmup, 0)
    _check_count("repeats", repeats, 1)
    if device not in ("cpu", "gpu"):
        raise ValueError(f"device must be 'cpu' or 'gpu', got {device!r}")
    if isinstance(max_time_s, bool) or not isinstance(max_time_s, (int, float)):
        raise ValueError(f"max_time_s must be a number, got {max_time_s!r}")
    if not math.isfinite(max_time_s) or max_time_s <= 0:
        raise ValueError(f"max_time_s must be finite and > 0, got {max_time_s!r}")


def measure(
    fn: Callable[[], Any],
    *,
    warmup: int = 3,
    repeats: int = 15,
    device: Device = "cpu",
    max_time_s: float = 2.0,
) -> Timing:
    """Time ``fn()``: ``warmup`` untimed calls, then up to ``repeats`` timed calls.

    Stops early once ``max_time_s`` of wall time (warm-up included) is spent, but
    always keeps at least ``min(MIN_SAMPLES, repeats)`` timed samples. CPU samples
    use ``time.perf_counter_ns``; GPU samples use CUDA events recorded on the
    current stream around each call, so they measure device time, not launch time.
    """
    _validate(fn, warmup, repeats, device, max_time_s)
    if device == "gpu":
        return _measure_gpu(fn, warmup, repeats, float(max_time_s))
    return _measure_cpu(fn, warmup, repeats, float(max_time_s))


def _measure_cpu(fn: Callable[[], Any], warmup: int, repeats: int, max_time_s: float) -> Timing:
    budget_ns = int(max_time_s * 1e9)
    floor = min(MIN_SAMPLES, repeats)
    start_ns = time.perf_counter_ns()
    done_warmup = 0
    for _ in range(warmup):
        fn()
        done_warmup += 1
        if time.perf_counter_ns() - start_ns >= budget_ns:
            break
    samples: list[float] = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        fn()
        t1 = time.perf_counter_ns()
        samples.append((t1 - t0) * 1e-9)
        if len(samples) >= floor and t1 - start_ns >= budget_ns:
            break
    return Timing.from_samples(tuple(samples), warmup=done_warmup, device="cpu")


def _measure_gpu(fn: Callable[[], Any], warmup: int, repeats: int, max_time_s: float) -> Timing:
    cp = require_gpu()
    budget_s = max_time_s
    floor = min(MIN_SAMPLES, repeats)
    start_s = time.perf_counter()
    done_warmup = 0
    for _ in range(warmup):
        fn()
        done_warmup += 1
        cp.cuda.get_current_stream().synchronize()
        if time.perf_counter() - start_s >= budget_s:
            break
    cp.cuda.Device().synchronize()
    samples: list[float] = []
    for _ in range(repeats):
        stream = cp.cuda.get_current_stream()
        ev_start = cp.cuda.Event()
        ev_end = cp.cuda.Event()
        ev_start.record(stream)
        fn()
        ev_end.record(stream)
        ev_end.synchronize()
        samples.append(cp.cuda.get_elapsed_time(ev_start, ev_end) * 1e-3)
        if len(samples) >= floor and time.perf_counter() - start_s >= budget_s:
            break
    return Timing.from_samples(tuple(samples), warmup=done_warmup, device="gpu")
