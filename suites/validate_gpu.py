"""``hwsim validate --device gpu``: calibrate a CUDA GPU with CuPy, then predict and measure held-out cases.

Runs unattended on a bare GPU box: it imports only numpy, numba (via hwsim.kernels), cupy and the
pure-Python parts of hwsim (costs.families, records, suites.tables): no simpy, pulp, rich or PyYAML.
Without a GPU it returns a result with no records and one note saying why (the CLI exits 0).

Calibration (microbenchmarks only): a memory staircase (read = sum, read+write = triad, copy),
cuBLAS GEMM at fp32 and fp16 on a few shapes, GEMV, the radix-select top-k on a few shapes, and
two streams (GEMM + copy, copy + copy, GEMM + GEMM) for the interference coefficients. Validation:
other sizes of every family. Device time from CUDA events after warm-up; best and median of many
interleaved runs. Budget: a few minutes on an H100/H200-class GPU.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from hwsim.costs.families import (
    GPU_TOPK_BLOCKS_PER_SM,
    Interference,
    MemoryStep,
    OperatorModels,
    concurrent_s,
    gemm_padded_flops,
)
from hwsim.records import Record, relative_error
from hwsim.suites.tables import Table
from hwsim.suites.validate import (
    SUITE_NAME,
    ValidationResult,
    family_errors,
    family_table,
)

KiB, MiB = 1024, 1024 * 1024

#: Working sets of the GPU staircase: inside L1/shared, L2, and HBM.
GPU_STAIRCASE_BYTES = (256 * KiB, 4 * MiB, 24 * MiB, 96 * MiB, 384 * MiB, 1536 * MiB)
GPU_CAL_GEMM = ((1024, 1024, 1024), (2048, 2048, 2048), (4096, 4096, 4096), (8192, 8192, 4096))
GPU_CAL_GEMV = ((4096, 4096), (12288, 4096))
GPU_CAL_TOPK = ((1, 1 << 20, 64), (64, 32768, 32), (512, 4096, 16))
GPU_VAL_COPY_BYTES = (2 * MiB, 48 * MiB, 768 * MiB)
GPU_VAL_GEMM = ((1536, 1536, 1536), (3072, 3072, 3072), (6144, 6144, 6144), (8192, 1024, 8192), (5000, 3000, 7000))
GPU_VAL_GEMV = ((8192, 8192), (16384, 4096), (28672, 8192))
GPU_VAL_TOPK = ((1, 1 << 22, 128), (128, 16384, 64), (2048, 1024, 8))
#: cuBLAS output tile for the wave model: assumption (a common 128x128 CTA tile on Hopper).
GPU_GEMM_TILE = (128, 128)
DTYPES = {"fp32": np.float32, "fp16": np.float16}


def _measure(cp: Any, cases: dict[str, Callable[[], Any]], rounds: int) -> dict[str, Any]:
    from hwsim.kernels.measure import gpu_event_timer, measure_interleaved

    return measure_interleaved(cases, rounds=rounds, warmup=3, max_time_s=60.0, timer=gpu_event_timer)


def _pair_s(cp: Any, first: Callable[[], Any], second: Callable[[], Any], repeats: int = 9) -> float:
    """Best time of ``first`` and ``second`` launched on two streams at once (events on a third)."""
    s1, s2 = cp.cuda.Stream(non_blocking=True), cp.cuda.Stream(non_blocking=True)
    best = math.inf
    for _ in range(repeats):
        cp.cuda.Device().synchronize()
        start, end = cp.cuda.Event(), cp.cuda.Event()
        start.record(cp.cuda.get_current_stream())
        s1.wait_event(start)
        s2.wait_event(start)
        with s1:
            first()
        with s2:
            second()
        e1, e2 = cp.cuda.Event(), cp.cuda.Event()
        e1.record(s1)
        e2.record(s2)
        cp.cuda.get_current_stream().wait_event(e1)
        cp.cuda.get_current_stream().wait_event(e2)
        end.record(cp.cuda.get_current_stream())
        end.synchronize()
        best = min(best, float(cp.cuda.get_elapsed_time(start, end)) * 1e-3)
    return best


def _fit_line(points: list[tuple[float, float]]) -> tuple[float, float]:
    """(rate, fixed) of ``t = fixed + x / rate`` (relative least squares, fixed >= 0)."""
    x = np.array([p[0] for p in points])
    t = np.array([p[1] for p in points])
    w = 1.0 / t
    a = np.stack([np.ones_like(x), x], axis=1) * w[:, None]
    (fixed, slope), *_ = np.linalg.lstsq(a, t * w, rcond=None)
    if slope <= 0:
        slope, fixed = float(np.median(t / x)), 0.0
    return 1.0 / float(slope), max(float(fixed), 0.0)


def validate_gpu(*, quick: bool, seed: int = 0) -> ValidationResult:
    """Calibrate the GPU and validate every family; without a GPU, an empty result with the reason."""
    from hwsim.kernels.gpu import gpu_available, gpu_unavailable_reason

    if not gpu_available():
        return ValidationResult([], [], [f"GPU validation skipped: {gpu_unavailable_reason()}"], [], None)
    from hwsim.kernels.gpu import require_gpu
    from hwsim.kernels.topk import topk_cupy

    cp = require_gpu()
    rng = np.random.default_rng(seed)
    rounds = 7 if quick else 15
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    gpu_name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    sms = int(props["multiProcessorCount"])
    hw_name = gpu_name.lower().replace(" ", "-")

    def rand(shape: Any, dtype: Any) -> Any:
        return cp.asarray(rng.standard_normal(shape).astype(dtype))

    def fill(n: int) -> Any:
        """A float32 device array for bandwidth cases (values do not matter; no host RNG of GBs)."""
        return cp.full(n, 0.5, dtype=cp.float32)

    # ---------------------------------------------------------------- calibration
    triad = cp.ElementwiseKernel("T b, T c, T s", "T a", "a = b + s * c", "hwsim_val_triad")
    cal: dict[str, Callable[[], Any]] = {}
    work: dict[str, Any] = {}
    for size in GPU_STAIRCASE_BYTES:
        n = size // 12  # three float32 arrays: the working set is ``size``
        b, c, a = fill(n), fill(n), cp.empty(n, dtype=cp.float32)
        cal[f"triad:{size}"] = partial(triad, b, c, np.float32(3.0), a)
        work[f"triad:{size}"] = 12.0 * n
        r = fill(size // 4)
        cal[f"read:{size}"] = r.sum
        work[f"read:{size}"] = 4.0 * r.size
        src, dst = fill(size // 8), cp.empty(size // 8, dtype=cp.float32)
        cal[f"copy:{size}"] = partial(cp.copyto, dst, src)
        work[f"copy:{size}"] = 8.0 * src.size
    tiny = cp.empty(32, dtype=cp.float32)
    cal["launch"] = lambda: triad(tiny, tiny, np.float32(1.0), tiny)
    for dname, dt in DTYPES.items():
        for m, n, k in GPU_CAL_GEMM[: 3 if quick else None]:
            a, b = rand((m, k), dt), rand((k, n), dt)
            cal[f"gemm:{dname}:{m}x{n}x{k}"] = partial(cp.matmul, a, b)
            work[f"gemm:{dname}:{m}x{n}x{k}"] = (m, n, k)
    for m, k in GPU_CAL_GEMV:
        a, x = rand((m, k), np.float16), rand(k, np.float16)
        cal[f"gemv:{m}x{k}"] = partial(cp.matmul, a, x)
        work[f"gemv:{m}x{k}"] = (m, k)
    for rows, n, k in GPU_CAL_TOPK:
        x = rand((rows, n), np.float32)
        cal[f"topk:{rows}x{n}:k{k}"] = partial(topk_cupy, x, k)
        work[f"topk:{rows}x{n}:k{k}"] = (rows, n, k)
    t_cal = _measure(cp, cal, rounds)
    best = {k: v.min_s for k, v in t_cal.items()}
    launch = best["launch"]
    # per-call rates at each working set, launch included (see MemoryStep)
    steps = [
        MemoryStep(
            float(size), *(float(work[f"{kind}:{size}"]) / best[f"{kind}:{size}"] for kind in ("read", "triad", "copy"))
        )
        for size in GPU_STAIRCASE_BYTES
    ]
    rates: dict[str, float] = {}
    fixeds = []
    for dname in DTYPES:
        pts = [
            (gemm_padded_flops(work[k][0], work[k][1], work[k][2], GPU_GEMM_TILE, sms), best[k])
            for k in best
            if k.startswith(f"gemm:{dname}:")
        ]
        rate, fixed = _fit_line(pts)
        rates[dname] = rate
        fixeds.append(fixed)
    rates["bf16"] = rates[
        "fp16"
    ]  # assumption: same dense tensor-core rate (H100/H200 datasheets list equal fp16/bf16 peaks)
    base = OperatorModels(
        threads=sms,
        launch_s=launch,
        staircase=tuple(steps),
        gemm_flops_per_s=rates,
        gemm_fixed_s=statistics.median(fixeds),
        gemm_tile_m=GPU_GEMM_TILE[0],
        gemm_tile_n=GPU_GEMM_TILE[1],
    )
    gemv_fraction = statistics.median(
        base.stream_s((m * k + k + m) * 2.0, 0.0) / max(best[f"gemv:{m}x{k}"] - launch, 1e-9) for m, k in GPU_CAL_GEMV
    )
    parallel_rows = sms * GPU_TOPK_BLOCKS_PER_SM
    topk_x = np.array(
        [[math.ceil(r / parallel_rows) * n, math.ceil(r / parallel_rows)] for r, n, _ in GPU_CAL_TOPK], dtype=float
    )
    topk_t = np.array([best[f"topk:{r}x{n}:k{k}"] - launch for r, n, k in GPU_CAL_TOPK])
    coef, *_ = np.linalg.lstsq(topk_x / topk_t[:, None], np.ones_like(topk_t), rcond=None)
    per_element, per_row = max(float(coef[0]), 1e-15), max(float(coef[1]), 0.0)
    # two streams: GEMM + copy, copy + copy, GEMM + GEMM
    ga, gb = rand((4096, 4096), np.float16), rand((4096, 4096), np.float16)
    ca, cb = fill(64 * MiB), cp.empty(64 * MiB, dtype=cp.float32)
    da, db = fill(64 * MiB), cp.empty(64 * MiB, dtype=cp.float32)
    gemm_fn = partial(cp.matmul, ga, gb)
    copy_fn = partial(cp.copyto, cb, ca)
    copy2_fn = partial(cp.copyto, db, da)
    alone = _measure(cp, {"gemm": gemm_fn, "copy": copy_fn}, rounds)
    tg, tc = alone["gemm"].min_s, alone["copy"].min_s

    def solve(pair_s: float, t1: float, t2: float) -> float:
        """The symmetric slowdown s with concurrent_s(t1, t2) == pair_s (bisection)."""
        lo, hi = 1.0, 2.5
        for _ in range(40):
            mid = (lo + hi) / 2
            if concurrent_s(t1, t2, 0.0, 0.0, Interference(compute_compute=mid))[2] < pair_s:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2

    interference = Interference(
        memory_memory=solve(_pair_s(cp, copy_fn, copy2_fn), tc, tc),
        compute_compute=solve(_pair_s(cp, gemm_fn, gemm_fn), tg, tg),
        compute_memory=solve(_pair_s(cp, gemm_fn, copy_fn), tg, tc),
    )
    from dataclasses import replace

    models = replace(
        base,
        gemv_read_fraction=min(1.0, gemv_fraction),
        topk_elements_per_s=1.0 / per_element,
        topk_row_s=per_row,
        topk_parallel_rows=parallel_rows,
        interference=interference,
    )

    # ---------------------------------------------------------------- validation
    val: dict[str, Callable[[], Any]] = {}
    predict: dict[str, tuple[str, dict[str, Any], float]] = {}
    for nbytes in GPU_VAL_COPY_BYTES:
        src, dst = fill(nbytes // 4), cp.empty(nbytes // 4, dtype=cp.float32)
        val[f"copy {nbytes}"] = partial(cp.copyto, dst, src)
        predict[f"copy {nbytes}"] = ("copy", {"nbytes": nbytes}, models.copy_s(nbytes))
    for dname, dt in DTYPES.items():
        for m, n, k in GPU_VAL_GEMM[: 3 if quick else None]:
            a, b = rand((m, k), dt), rand((k, n), dt)
            label = f"gemm {dname} {m}x{n}x{k}"
            val[label] = partial(cp.matmul, a, b)
            predict[label] = (
                "gemm",
                {"m": m, "n": n, "k": k, "dtype": dname},
                models.gemm_s(m, n, k, float(np.dtype(dt).itemsize), dname),
            )
    for m, k in GPU_VAL_GEMV:
        a, x = rand((m, k), np.float16), rand(k, np.float16)
        val[f"gemv {m}x{k}"] = partial(cp.matmul, a, x)
        predict[f"gemv {m}x{k}"] = ("gemv", {"m": m, "k": k, "dtype": "fp16"}, models.gemv_s(m, k, 2.0))
    for rows, n, k in GPU_VAL_TOPK:
        x = rand((rows, n), np.float32)
        val[f"topk {rows}x{n} k{k}"] = partial(topk_cupy, x, k)
        predict[f"topk {rows}x{n} k{k}"] = ("topk", {"rows": rows, "n": n, "k": k}, models.topk_s(rows, n, k, 4.0))
    t_val = _measure(cp, val, rounds)
    records: list[Record] = []
    pairs: list[tuple[str, str, float, float]] = []
    rows_table = Table(title=f"GPU validation cases ({gpu_name})")
    for col in ("case", "predicted", "measured (min)", "error"):
        rows_table.add_column(
            col,
            unit="s" if col in ("predicted", "measured (min)") else "",
            justify="left" if col == "case" else "right",
        )
    for label, (family, params, predicted) in predict.items():
        t = t_val[label]
        case = {"family": family, "device": "gpu", **params}
        records.append(Record(SUITE_NAME, case, "latency_s", predicted, "s", "simulated", hw_name))
        records.append(Record(SUITE_NAME, case, "latency_s", t.min_s, "s", "measured", hw_name, note=t.note()))
        pairs.append((family, label, predicted, t.min_s))
        err = relative_error(predicted, t.min_s)
        rows_table.add_row(label, predicted, t.min_s, f"{err * 100:+.1f}%" if err is not None else None)
    # a held-out pair: a different GEMM shape next to a different copy size
    va, vb = rand((6144, 3072), np.float16), rand((3072, 6144), np.float16)
    vc, vd = fill(96 * MiB), cp.empty(96 * MiB, dtype=cp.float32)
    g2 = partial(cp.matmul, va, vb)
    c2 = partial(cp.copyto, vd, vc)
    alone2 = _measure(cp, {"g": g2, "c": c2}, rounds)
    pair_measured = _pair_s(cp, g2, c2)
    pair_pred = concurrent_s(alone2["g"].min_s, alone2["c"].min_s, 0.0, 1.0, models.interference)[2]
    case = {"family": "contention", "device": "gpu", "pair": "gemm6144x6144x3072+copy384MiB"}
    records.append(Record(SUITE_NAME, case, "latency_s", pair_pred, "s", "simulated", hw_name))
    records.append(
        Record(SUITE_NAME, case, "latency_s", pair_measured, "s", "measured", hw_name, note="best of 9, two streams")
    )
    pairs.append(("contention", "gemm+copy", pair_pred, pair_measured))
    errors = family_errors(pairs)
    notes = [
        f"GPU {gpu_name}: {sms} SMs; CUDA-event device time, best of {rounds} interleaved runs after warm-up",
        "bf16 GEMM rate taken equal to fp16 (assumption: equal dense tensor-core peaks on H100/H200)",
    ]
    return ValidationResult(
        records,
        [family_table(errors, f"per-family error on held-out cases ({gpu_name})"), rows_table],
        notes,
        errors,
        models,
    )


__all__ = ["validate_gpu"]
