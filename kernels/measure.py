"""Measurement harness shared by the kernel suites and the calibration microbenchmarks.

One function, ``measure``, so that every figure the project reports was taken the
same way: warm-up calls (JIT compile, caches, clocks), then individually timed
calls, summarised by the median (robust to the odd preempted sample).
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from hwsim.kernels.gpu import require_gpu

__all__ = [
    "MIN_SAMPLES",
    "NOISE_LIMIT",
    "PAIR_MIN_CLEAN_ROUNDS",
    "PAIR_MIN_ON_CPU",
    "PairTiming",
    "RobustTiming",
    "Timing",
    "alone_cpu_s",
    "gpu_event_timer",
    "involuntary_switches",
    "load_average",
    "measure",
    "measure_as_calibrated",
    "measure_interleaved",
    "speed_reference_s",
    "pair_interleaved",
    "pairs_interleaved",
    "pair_times",
    "reference_s",
    "thread_counts",
    "thread_limits",
]

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
    def from_samples(cls, samples_s: tuple[float, ...], *, warmup: int, device: Device) -> Timing:
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


# --------------------------------------------------------------------------------------------------
# Measurement on a shared machine: explicit threads, interleaved repeats, a load check.
#
# A busy core only ever slows a run down, so the *minimum* of interleaved samples estimates what the
# machine does when quiet; the median and a spread figure say how much the machine interfered.

#: A case whose reference kernel ran this much slower after than before (or whose spread exceeds
#: this) is retried, and marked noisy if it stays so.
NOISE_LIMIT = 0.25


def _set_threads(threads: int) -> tuple[int, Any]:
    """Set Numba's and the BLAS pools' thread counts; return what to restore."""
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(min(threads, int(numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]
    limiter: Any = None
    try:  # threadpoolctl is optional: a bare GPU box may not have it
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

        limiter = threadpool_limits(limits=threads)
    except ImportError:
        limiter = None
    return before, limiter


class thread_limits:
    """``with thread_limits(n):`` runs Numba parallel loops and BLAS on exactly ``n`` threads."""

    def __init__(self, threads: int) -> None:
        self.threads = _check_count("threads", threads, 1)
        self._saved: tuple[int, Any] | None = None

    def __enter__(self) -> thread_limits:  # noqa: PYI034
        self._saved = _set_threads(self.threads)
        return self

    def __exit__(self, *exc: object) -> None:
        import numba

        assert self._saved is not None
        before, limiter = self._saved
        numba.set_num_threads(before)
        if limiter is not None:
            limiter.restore_original_limits()


def thread_counts() -> dict[str, int]:
    """The thread counts in force now: Numba's, and each BLAS library's (via threadpoolctl)."""
    import numba

    counts = {"numba": int(numba.get_num_threads())}
    try:
        from threadpoolctl import threadpool_info  # type: ignore[import-untyped]

        for pool in threadpool_info():
            if pool.get("user_api") == "blas":
                counts[f"blas:{pool.get('internal_api', '?')}"] = int(pool.get("num_threads", 0))
    except ImportError:
        pass
    return counts


def load_average() -> float:
    """One-minute load average (0.0 where the OS has none)."""
    try:
        return float(os.getloadavg()[0])
    except (OSError, AttributeError):
        return 0.0


def _reference_work() -> float:
    """A fixed ~1 ms of scalar Python arithmetic on one core: its time says how busy the core is."""
    acc = 0.0
    for i in range(20_000):
        acc += (i & 7) * 0.5
    return acc


def _best_of(fn: Callable[[], Any], repeats: int, clock: Callable[[], float]) -> float:
    """Shortest of ``repeats`` calls of ``fn`` by ``clock`` (seconds)."""
    best = math.inf
    for _ in range(repeats):
        t0 = clock()
        fn()
        best = min(best, clock() - t0)
    return best


def reference_s(samples: int = 5) -> float:
    """Best-of-``samples`` time of the reference work (seconds)."""
    return _best_of(_reference_work, samples, time.perf_counter)


#: Dependent multiply-adds in one speed-reference call (~25 us at 3 GHz: 4-cycle FMA latency).
SPEED_REFERENCE_STEPS = 20_000
_SPEED_KERNEL: Any = None


def speed_reference_s() -> float:
    """Thread CPU seconds of a register-resident chain of dependent multiply-adds (best of 2).

    It touches no memory, so its CPU time only changes with how fast this core runs right now:
    clock frequency and a sibling hardware thread sharing the core (a VM's vCPU can share a
    physical core with another guest). A thread CPU clock removes time-slicing but not that: on
    the 2-vCPU development VM this kernel's best-of-20 CPU time moves between 1.0x and 1.33x within
    20 s. :func:`measure_interleaved` uses it to keep only samples taken while the core ran fast.
    """
    global _SPEED_KERNEL
    if _SPEED_KERNEL is None:
        from numba import njit

        @njit(cache=True, nogil=True)
        def chain(n, v):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
            for _ in range(n):
                v = v * 0.9999999 + 1e-7
            return v

        chain(10, 1.0)
        _SPEED_KERNEL = chain
    best = math.inf
    for _ in range(2):
        c0 = time.thread_time_ns()
        _SPEED_KERNEL(SPEED_REFERENCE_STEPS, 1.0)
        best = min(best, (time.thread_time_ns() - c0) * 1e-9)
    return best


@dataclass(frozen=True)
class RobustTiming:
    """One case measured by :func:`measure_interleaved`: best, median, spread, and the load around it."""

    min_s: float
    median_s: float
    spread: float
    """(median - min) / min over the interleaved samples: 0 on a quiet machine."""
    samples: int
    load_before: float
    load_after: float
    reference_ratio: float
    """Reference-kernel time after / before the case: > 1 means the core got busier meanwhile."""
    attempts: int
    noisy: bool
    threads: Mapping[str, int]
    clock: str = "wall"
    """What ``min_s``/``median_s`` count: ``wall`` time, or ``thread_cpu`` (CPU time of the calling
    thread: a single-threaded kernel's time with any time-slicing by other processes removed)."""
    wall_min_s: float = math.nan
    core_reference_s: float = math.nan
    """Fastest core-speed reference (:func:`speed_reference_s`) of the last attempt (speed-gated runs)."""
    core_floor_s: float = math.nan
    """The calibration's core-speed reference the gate held samples to (NaN: none given)."""

    def note(self) -> str:
        """Provenance line for a measured record."""
        threads = ",".join(f"{k}={v}" for k, v in sorted(self.threads.items()))
        core = ""
        if not math.isnan(self.core_reference_s):
            core = f" core_ref={self.core_reference_s * 1e6:.1f}us"
            if not math.isnan(self.core_floor_s):
                core += f" (calibration {self.core_floor_s * 1e6:.1f}us)"
        return (f"min of {self.samples} interleaved ({self.clock} clock; wall min={self.wall_min_s:.4g}s); "
                f"median={self.median_s:.4g}s spread={self.spread:.2f} "
                f"load={self.load_before:.2f}->{self.load_after:.2f} ref_ratio={self.reference_ratio:.2f}{core} "
                f"attempts={self.attempts} noisy={self.noisy} threads[{threads}]")


#: Untimed calls before each sample of a case shorter than ``warm_below_s``. One is not enough: after
#: another kernel streamed through the caches, a working set near the L2's size reaches its steady
#: rate only on the third pass (measured here: a 1.6 MB top-k ran 3-5x, 1.3-2x, 1.1-1.5x its steady
#: time on its first three calls after a 160 MiB copy; a 1.4 MB triad 6x, 1.3x, 1.0x), so a sample
#: taken after one untimed call mixes in the slow second pass.
WARM_CALLS = 3


def measure_interleaved(
    cases: Mapping[str, Callable[[], Any]],
    *,
    rounds: int = 7,
    warmup: int = 1,
    max_time_s: float = 4.0,
    retries: int = 2,
    noise_limit: float = NOISE_LIMIT,
    timer: Callable[[Callable[[], Any]], float] | None = None,
    min_sample_s: float = 5e-4,
    clock: str = "wall",
    warm_below_s: float = 0.02,
    speed_gate: float | None = None,
    core_floor_s: float | None = None,
) -> dict[str, RobustTiming]:
    """Time every case in round-robin order ``rounds`` times; report min, median and spread per case.

    Interleaving spreads a burst of load over all cases instead of ruining one. A reference kernel
    is timed before and after; a case whose spread exceeds ``noise_limit`` or that ran while the
    reference slowed by more than ``noise_limit`` is re-measured (up to ``retries`` times, keeping
    the better minimum) and marked ``noisy`` if it never came out clean. A case shorter than
    ``min_sample_s`` is timed as a batch of back-to-back calls (per-call time reported), and a case
    shorter than ``warm_below_s`` gets WARM_CALLS untimed calls before each sample, so the previous case's
    data does not leave it cold (the models price a kernel repeated on its buffers). ``timer`` times one call
    (default: ``perf_counter`` around it; a GPU caller passes a CUDA-event timer). ``clock="thread_cpu"``
    times the calling thread's CPU time instead: exact for a kernel that runs on the calling thread
    only (Numba and BLAS limited to 1 thread), and blind to other processes taking the core.

    ``speed_gate`` (thread CPU clock only): the core's speed is checked with
    :func:`speed_reference_s` before every sample, and a sample counts only if the references on
    both sides of it are within ``1 + speed_gate`` of the fastest reference of the attempt (the
    core ran at full speed throughout); a case with fewer than two such samples is noisy and
    retried, its best kept over the attempts (on a long run most cases end up noisy that way: the
    retries are more samples, and the note says so); its best is the best gated sample of any attempt
    when there is one, the best of all samples only when none passed the gate. ``core_floor_s``: the
    calibration's fastest reference (``OperatorModels.core_reference_s``); the gate then also holds
    samples to within CORE_FLOOR_TOLERANCE of it, so a whole attempt on a slow core (a vCPU sharing
    its physical core with another guest ran every kernel here about 1.45x slower for a minute) is
    retried and, if it never speeds up, marked noisy, instead of passing as the core's best.
    Best-of over fast-core samples is what makes two calibrations agree on a VM whose per-core speed
    drifts by a third within seconds. The gate also drops a sample during which (or between its warm
    call and its end) the thread was switched out involuntarily (:func:`involuntary_switches`): the
    CPU clock leaves out the time another process ran, but not the caches that process evicted, so
    such a sample is slow for a reason that says nothing about the kernel.
    """
    if speed_gate is not None and clock != "thread_cpu":
        raise ValueError("speed_gate needs clock='thread_cpu'")
    if core_floor_s is not None and (speed_gate is None or not 0 < core_floor_s < math.inf):
        raise ValueError(f"core_floor_s must be a finite time > 0 with a speed_gate, got {core_floor_s!r}")
    if clock not in ("wall", "thread_cpu"):
        raise ValueError(f"clock must be 'wall' or 'thread_cpu', got {clock!r}")
    if clock == "thread_cpu" and thread_counts().get("numba", 1) != 1:
        raise ValueError("clock='thread_cpu' needs Numba limited to 1 thread (use thread_limits(1))")
    if not cases:
        raise ValueError("cases must not be empty")
    rounds = _check_count("rounds", rounds, 1)
    time_one = timer or _time_cpu_call
    inner: dict[str, int] = {}
    warm: dict[str, int] = {}
    for name, fn in cases.items():
        if not callable(fn):
            raise TypeError(f"every case must be callable, got {fn!r}")
        for _ in range(warmup):
            fn()
        # a call shorter than min_sample_s is timed as a batch of back-to-back calls (steady state,
        # as a kernel repeated on the same buffers runs), so timer cost and the wake-up after the
        # previous case do not dominate it
        one = min(time_one(fn) for _ in range(2))
        inner[name] = max(1, min(10_000, math.ceil(min_sample_s / max(one, 1e-9)))) if timer is None else 1
        warm[name] = WARM_CALLS if one < warm_below_s else 0
    results: dict[str, RobustTiming] = {}
    clean_min: dict[str, float] = {}  # best gated (fast-core, not switched out) sample over all attempts
    pending = list(cases)
    attempt = 0
    while pending and attempt <= retries:
        attempt += 1
        load0, ref0 = load_average(), reference_s()
        samples: dict[str, list[float]] = {name: [] for name in pending}
        walls: dict[str, list[float]] = {name: [] for name in pending}
        speeds: list[float] = []  # speed reference before each sample, in sampling order
        order: list[str] = []
        preempted: list[bool] = []  # the thread was switched out between the warm call and the sample's end
        start = time.perf_counter()
        for r in range(rounds):
            for name in pending:
                switches = involuntary_switches() if speed_gate is not None else 0
                for _ in range(warm[name]):
                    cases[name]()  # untimed calls first, so the sample runs warm (as a repeated kernel does)
                if speed_gate is not None:
                    speeds.append(speed_reference_s())
                    order.append(name)
                if clock == "thread_cpu":
                    cpu, wall = _batch_cpu(cases[name], inner[name])
                    samples[name].append(cpu)
                    walls[name].append(wall)
                else:
                    samples[name].append(_batch(time_one, cases[name], inner[name]))
                    walls[name].append(samples[name][-1])
                if speed_gate is not None:
                    preempted.append(involuntary_switches() != switches)
            if r + 1 >= MIN_SAMPLES and time.perf_counter() - start > max_time_s:
                break
        fast: dict[str, list[float]] = {name: [] for name in pending}
        if speed_gate is not None:
            speeds.append(speed_reference_s())
            limit = min(min(speeds) * (1.0 + speed_gate), (core_floor_s or math.inf) * (1.0 + CORE_FLOOR_TOLERANCE))
            seen: dict[str, int] = dict.fromkeys(pending, 0)
            for i, name in enumerate(order):
                if max(speeds[i], speeds[i + 1]) <= limit and not preempted[i]:
                    fast[name].append(samples[name][seen[name]])
                seen[name] += 1
        load1, ref1 = load_average(), reference_s()
        ratio = ref1 / ref0 if ref0 > 0 else 1.0
        threads = thread_counts()
        still: list[str] = []
        for name in pending:
            s = samples[name]
            gated = speed_gate is not None and len(fast[name]) < 2
            if speed_gate is not None and not gated:
                s = fast[name]
            lo, med = min(s), float(statistics.median(s))
            spread = (med - lo) / lo if lo > 0 else 0.0
            noisy = spread > noise_limit or abs(ratio - 1.0) > noise_limit or gated
            old = results.get(name)
            best_min = min(lo, old.min_s) if old else lo
            if fast[name]:
                clean_min[name] = min(clean_min.get(name, math.inf), min(fast[name]))
            if name in clean_min:  # a clean sample from any attempt beats every ungated one
                best_min = clean_min[name]
            wall_min = min(walls[name]) if not old else min(min(walls[name]), old.wall_min_s)
            results[name] = RobustTiming(best_min, med, spread, len(s), load0, load1, ratio, attempt, noisy, threads,
                                         clock, wall_min, min(speeds) if speeds else math.nan,
                                         math.nan if core_floor_s is None else core_floor_s)
            if noisy:
                still.append(name)
        pending = still
    return results


def involuntary_switches() -> int:
    """Times the calling thread has been switched out by the scheduler so far (Linux; 0 elsewhere)."""
    try:
        import resource

        return int(resource.getrusage(resource.RUSAGE_THREAD).ru_nivcsw)  # type: ignore[attr-defined]
    except (ImportError, AttributeError, OSError, ValueError):
        return 0


#: Single-thread measurements keep only samples taken while the core ran within this fraction of its
#: fastest (see :func:`speed_reference_s`): calibration, validation and every suite's ``--measure``.
SPEED_GATE = 0.06
#: ... and, given the calibration's fastest reference, within this fraction of that. Looser than the
#: gate: calibration's fastest is the best of thousands of references, and minutes later the best of a
#: suite's few hundred sat 4-15% above it here while its predictions held; 16-20% above it, a suite's
#: kernels ran 10-28% slower than predicted.
CORE_FLOOR_TOLERANCE = 0.15


def measure_as_calibrated(cases: Mapping[str, Callable[[], Any]], *, threads: int, quick: bool,
                          core_reference_s: float | None = None) -> tuple[dict[str, RobustTiming], str]:
    """Time ``cases`` the way calibration times its microbenchmarks, so that a measurement and the
    models calibration fitted see the same machine: interleaved best-of-k on ``threads`` threads (Numba
    and BLAS limited); on one thread by the thread's CPU clock, keeping samples only while the core ran
    at full speed and, given the calibration's ``core_reference_s``, about as fast as it ran then.
    Returns the timings (report ``min_s``, with ``note()`` as provenance) and a load note."""
    with thread_limits(threads):
        load0 = load_average()
        single = threads == 1
        timings = measure_interleaved(cases, rounds=7 if quick else 11, warmup=2, max_time_s=4.0 if quick else 10.0,
                                      clock="thread_cpu" if single else "wall",
                                      speed_gate=SPEED_GATE if single else None,
                                      core_floor_s=core_reference_s if single else None)
        load1 = load_average()
    return timings, f"load average {load0:.2f} -> {load1:.2f}"


def _batch(time_one: Callable[[Callable[[], Any]], float], fn: Callable[[], Any], calls: int) -> float:
    if calls == 1:
        return time_one(fn)

    def many() -> None:
        for _ in range(calls):
            fn()

    return time_one(many) / calls


def _batch_cpu(fn: Callable[[], Any], calls: int) -> tuple[float, float]:
    """(thread CPU seconds, wall seconds) per call of ``calls`` back-to-back calls."""
    w0, c0 = time.perf_counter_ns(), time.thread_time_ns()
    for _ in range(calls):
        fn()
    c1, w1 = time.thread_time_ns(), time.perf_counter_ns()
    return (c1 - c0) * 1e-9 / calls, (w1 - w0) * 1e-9 / calls


def _time_cpu_call(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - t0) * 1e-9


def gpu_event_timer(fn: Callable[[], Any]) -> float:
    """Device seconds of one call between CUDA events on the current stream."""
    cp = require_gpu()
    stream = cp.cuda.get_current_stream()
    ev_start, ev_end = cp.cuda.Event(), cp.cuda.Event()
    ev_start.record(stream)
    fn()
    ev_end.record(stream)
    ev_end.synchronize()
    return float(cp.cuda.get_elapsed_time(ev_start, ev_end)) * 1e-3


def pair_times(first: Callable[[], Any], second: Callable[[], Any]) -> tuple[float, float, float, float]:
    """Start two (GIL-releasing) calls together on two threads from a barrier.

    Returns (first CPU s, second CPU s, first wall s, second wall s): each thread's own CPU time
    counts only while it ran, so time-slicing by other processes drops out while hardware
    interference between the two (shared core resources, caches, memory bandwidth) stays in.
    """
    import threading

    barrier = threading.Barrier(2)
    out: dict[int, tuple[float, float]] = {}

    def worker(index: int, fn: Callable[[], Any]) -> None:
        barrier.wait()
        w0, c0 = time.perf_counter(), time.thread_time()
        fn()
        out[index] = (time.thread_time() - c0, time.perf_counter() - w0)

    threads = [threading.Thread(target=worker, args=(0, first)), threading.Thread(target=worker, args=(1, second))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out[0][0], out[1][0], out[0][1], out[1][1]


def alone_cpu_s(fn: Callable[[], Any], repeats: int = 5) -> float:
    """Best thread-CPU time of ``fn`` alone (run on the calling thread)."""
    return _best_of(fn, repeats, time.thread_time)


#: A pair run counts only if both threads were on a core for at least this fraction of their wall
#: time: a thread descheduled by another process runs part of the time alone, which hides
#: interference, so a best-of over such runs would pick the least-overlapped run.
PAIR_MIN_ON_CPU = 0.9


#: Fewest clean rounds (both threads on a core) whose slowdowns are used alone; with fewer, every
#: round's counts (a busy machine rarely lets both threads run undisturbed for a whole pair run).
PAIR_MIN_CLEAN_ROUNDS = 3


@dataclass(frozen=True)
class PairTiming:
    """Two kernels timed alone and together in the same interleaved rounds (thread CPU seconds)."""

    first_alone_s: float
    second_alone_s: float
    first_together_s: float
    second_together_s: float
    rounds: int
    clean_rounds: int
    """Rounds whose pair run had both threads on a core (:data:`PAIR_MIN_ON_CPU`); the together
    times come from these (from every round when none was clean)."""
    round_slowdowns: tuple[tuple[float, float], ...] = ()
    """Per round, each kernel's together time over its alone time in that same round."""
    round_clean: tuple[bool, ...] = ()
    round_alone: tuple[tuple[float, float], ...] = ()
    """Per round, each kernel's alone time in that round (empty from a caller that kept none)."""

    def _used(self) -> list[int]:
        """The rounds a per-round figure comes from: the clean ones when there are
        :data:`PAIR_MIN_CLEAN_ROUNDS`, else all."""
        clean = [i for i, ok in enumerate(self.round_clean) if ok]
        return clean if len(clean) >= PAIR_MIN_CLEAN_ROUNDS else list(range(len(self.round_slowdowns)))

    def round_times(self) -> list[tuple[float, float, float, float]]:
        """(first alone, second alone, first together, second together) of each used round: what a
        prediction made from one round's alone times is checked against within that round."""
        times = []
        for i in self._used():
            (a1, a2), (r1, r2) = self.round_alone[i], self.round_slowdowns[i]
            times.append((a1, a2, a1 * r1, a2 * r2))
        return times

    @property
    def both_s(self) -> float:
        """The pair's time: the later of the two threads (best of the rounds)."""
        return max(self.first_together_s, self.second_together_s)

    @property
    def slowdowns(self) -> tuple[float, float]:
        """Median over rounds of each kernel's together/alone ratio (the clean rounds when there are
        :data:`PAIR_MIN_CLEAN_ROUNDS`, else all): a ratio taken within one round is blind to the
        clock drifting between rounds, and the median to one disturbed round."""
        if not self.round_slowdowns:
            return self.first_together_s / self.first_alone_s, self.second_together_s / self.second_alone_s
        use = [self.round_slowdowns[i] for i in self._used()]
        return float(statistics.median(a for a, _ in use)), float(statistics.median(b for _, b in use))


def pair_interleaved(first: Callable[[], Any], second: Callable[[], Any], rounds: int = 5,
                     tries_per_round: int = 8) -> PairTiming:
    """Time two (GIL-releasing) kernels alone and together, interleaved round by round.

    Each round runs ``first`` alone, ``second`` alone, then the pair (retried up to
    ``tries_per_round`` times until both threads ran together). The host's core clock moves by a
    fifth or more within seconds on a VM; alone and together times taken in separate stretches would
    put that shift into the slowdown, while within a round they see the same clock.
    """
    return pairs_interleaved({"pair": (first, second)}, rounds, tries_per_round)["pair"]


def pairs_interleaved(pairs: Mapping[str, tuple[Callable[[], Any], Callable[[], Any]]], rounds: int = 5,
                      tries_per_round: int = 8) -> dict[str, PairTiming]:
    """:func:`pair_interleaved` for several pairs at once, in the same rounds: each round times every
    pair (alone, alone, together) in turn, so pairs measured for calibration and pairs held out to
    check it see the same state of the host (which, on a VM, changes from minute to minute). Each of
    the three timings follows an untimed run of the same thing, so none of them starts with caches
    the previous pair left cold (a stream pair ran 1.4x faster together than alone without it)."""
    rounds = _check_count("rounds", rounds, 1)
    if not pairs:
        raise ValueError("pairs must not be empty")
    alone = {name: [math.inf, math.inf] for name in pairs}
    clean: dict[str, list[tuple[float, float]]] = {name: [] for name in pairs}
    every: dict[str, list[tuple[float, float]]] = {name: [] for name in pairs}
    ratios: dict[str, list[tuple[float, float]]] = {name: [] for name in pairs}
    alones: dict[str, list[tuple[float, float]]] = {name: [] for name in pairs}
    flags: dict[str, list[bool]] = {name: [] for name in pairs}
    for _ in range(rounds):
        for name, (first, second) in pairs.items():
            # each timing runs warm, as a repeated kernel does: an untimed call first (the pair
            # timed before this one has just evicted these buffers from the caches)
            first()
            a1 = alone_cpu_s(first, 1)
            second()
            a2 = alone_cpu_s(second, 1)
            alone[name] = [min(alone[name][0], a1), min(alone[name][1], a2)]
            pair_times(first, second)
            ok = False
            for _ in range(max(1, tries_per_round)):
                c1, c2, w1, w2 = pair_times(first, second)
                every[name].append((c1, c2))
                ok = c1 >= PAIR_MIN_ON_CPU * w1 and c2 >= PAIR_MIN_ON_CPU * w2
                if ok:
                    clean[name].append((c1, c2))
                    break
            ratios[name].append((c1 / a1, c2 / a2))
            alones[name].append((a1, a2))
            flags[name].append(ok)
    out = {}
    for name in pairs:
        runs = clean[name] or every[name]
        out[name] = PairTiming(alone[name][0], alone[name][1], min(c for c, _ in runs), min(c for _, c in runs),
                               rounds, len(clean[name]), tuple(ratios[name]), tuple(flags[name]),
                               tuple(alones[name]))
    return out
