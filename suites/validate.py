"""``hwsim validate``: calibrate, then predict and measure held-out cases of every kernel family.

One command answers "can I trust the cost models on this machine?": it fits the per-family operator
models (:mod:`hwsim.costs.families`) from the calibration microbenchmarks only, then measures the
VALIDATION cases below (shapes calibration never runs; ``tests/test_validate.py`` proves it) and
reports per family the median and worst |error| of the prediction.

Measurements are interleaved, best-of-k, on an explicit thread count, with the load recorded
(:func:`hwsim.kernels.measure.measure_interleaved`). Suites compute, the CLI presents: this module
returns records, tables and notes, never prints.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hwsim.costs.families import Interference, OperatorModels, concurrent_s, models_to_dict, shared_caches_s
from hwsim.costs.ops import operator_models
from hwsim.hardware.model import Hardware
from hwsim.records import Record, relative_error, write_results
from hwsim.suites.tables import Table

if TYPE_CHECKING:
    from hwsim.kernels.measure import PairTiming

SUITE_NAME = "validate"
CaseValue = int | float | str


@dataclass(frozen=True)
class ValidationCase:
    """One held-out case: its family, its parameters, how to build the kernel call, how to predict it."""

    family: str
    params: dict[str, CaseValue]
    build: Callable[[int], Callable[[], Any]]
    """seed -> zero-argument call that runs the kernel once on prepared inputs."""
    predict: Callable[[OperatorModels], float]

    @property
    def case(self) -> dict[str, CaseValue]:
        return {"family": self.family, **self.params}

    @property
    def label(self) -> str:
        return f"{self.family} " + " ".join(f"{k}={v}" for k, v in self.params.items())


# ----------------------------------------------------------------------------------------- CPU cases
# Shapes are chosen between and beyond the calibration shapes (kernels/microbench.py CAL_*), never equal.

VAL_COPY_BYTES = (40 * 1024, 1 << 20, 10 << 20, 160 << 20, 256 << 20)
VAL_TRIAD_N = (3_000, 60_000, 700_000, 12_000_000)
VAL_GEMM = ((256, 256, 256), (512, 512, 512), (1024, 1024, 1024), (1000, 300, 700), (2048, 2048, 2048))
VAL_GEMV = ((1024, 1024), (4096, 4096), (8192, 8192), (16384, 4096))
VAL_TOPK = ((1, 1 << 20, 128), (16, 8192, 64), (128, 2048, 32), (4, 100_000, 512), (512, 384, 24))
VAL_ATTENTION = ((12, 16, 1024, 64, 0.5), (8, 64, 512, 64, 1.0), (16, 4, 2048, 64, 0.25))
VAL_SOFTMAX = ((256, 4096), (2048, 512))


def _copy(nbytes: int) -> ValidationCase:
    def build(seed: int) -> Callable[[], Any]:
        from hwsim.kernels.basic import make_inputs, memcpy_numba

        src, dst = make_inputs("memcpy", {"nbytes": nbytes}, "float64", seed)
        return lambda: memcpy_numba(src, dst)

    return ValidationCase("copy", {"nbytes": nbytes}, build, lambda m: m.copy_s(nbytes))


def _triad(n: int) -> ValidationCase:
    def build(seed: int) -> Callable[[], Any]:
        from hwsim.kernels.basic import make_inputs, triad_numba

        a, b, c, s = make_inputs("triad", {"n": n}, "float64", seed)
        return lambda: triad_numba(a, b, c, s)

    return ValidationCase("triad", {"n": n}, build, lambda m: m.elementwise_s(n, 8.0, 2, 1))


def _gemm(m_: int, n: int, k: int) -> ValidationCase:
    def build(seed: int) -> Callable[[], Any]:
        from hwsim.kernels.basic import gemm_blas, make_inputs

        a, b, c = make_inputs("gemm", {"m": m_, "n": n, "k": k}, "float32", seed)
        return lambda: gemm_blas(a, b, c)

    return ValidationCase(
        "gemm", {"m": m_, "n": n, "k": k, "dtype": "fp32"}, build, lambda m: m.gemm_s(m_, n, k, 4.0, "fp32")
    )


def _gemv(m_: int, k: int) -> ValidationCase:
    def build(seed: int) -> Callable[[], Any]:
        from hwsim.kernels.basic import gemv_blas, make_inputs

        a, x, y = make_inputs("gemv", {"m": m_, "k": k}, "float32", seed)
        return lambda: gemv_blas(a, x, y)

    return ValidationCase("gemv", {"m": m_, "k": k, "dtype": "fp32"}, build, lambda m: m.gemv_s(m_, k, 4.0))


def _topk(rows: int, n: int, k: int) -> ValidationCase:
    def build(seed: int) -> Callable[[], Any]:
        from hwsim.kernels.topk import topk_numba

        x = np.random.default_rng(seed).standard_normal((rows, n)).astype(np.float32)
        return lambda: topk_numba(x, k)

    return ValidationCase("topk", {"rows": rows, "n": n, "k": k}, build, lambda m: m.topk_s(rows, n, k, 4.0))


def _attention(heads: int, q_len: int, kv_len: int, d: int, kept: float) -> ValidationCase:
    kept_tokens = max(1, int(kv_len * kept))

    def build(seed: int) -> Callable[[], Any]:
        from hwsim.kernels.microbench import attention_cases

        ((_, fn),) = attention_cases(((heads, q_len, kv_len, d),), seed, kept).values()
        return fn  # type: ignore[no-any-return]

    return ValidationCase(
        "attention",
        {"heads": heads, "q_len": q_len, "kv_len": kv_len, "head_dim": d, "kept_tokens": kept_tokens},
        build,
        lambda m: m.attention_s(heads, q_len, kept_tokens, d, 4.0),
    )


def _softmax(rows: int, cols: int) -> ValidationCase:
    def build(seed: int) -> Callable[[], Any]:
        from hwsim.kernels.microbench import softmax_cases

        ((_, fn),) = softmax_cases(((rows, cols),), seed).values()
        return fn  # type: ignore[no-any-return]

    return ValidationCase("softmax", {"rows": rows, "cols": cols}, build, lambda m: m.softmax_s(rows, cols, 4.0))


#: Decode steps: (batch, hidden, heads, ffn, cached length per request).
VAL_DECODE = ((1, 1024, 8, 4096, 255), (4, 1024, 16, 2048, 500), (8, 512, 8, 2048, 1000))
#: MoE layers: (tokens, experts, top_k, hidden, ffn, skew).
VAL_MOE = ((512, 8, 2, 512, 1024, 1.0), (256, 16, 2, 256, 1024, 0.5))


def _decode(batch: int, hidden: int, heads: int, ffn: int, length: int) -> ValidationCase:
    lens = [length - 13 * i for i in range(batch)]  # ragged, as requests are

    def build(seed: int) -> Callable[[], Any]:
        from hwsim.kernels.decode import LayerShape, decode_numba, make_inputs

        # a step writes the new token's K and V at index lens[b] and leaves lens as they are, so every
        # repeat does the same work on the same caches: nothing to undo between repeats (undoing by
        # copying the caches back would add their size to the footprint the step cycles through)
        inp = make_inputs(LayerShape(hidden, heads, ffn), np.array(lens, dtype=np.int64), seed)
        return partial(decode_numba, inp)

    def predict(m: OperatorModels) -> float:
        return m.decode_step_s(lens, hidden, heads, ffn, 4.0)

    return ValidationCase(
        "decode", {"batch": batch, "hidden": hidden, "heads": heads, "ffn": ffn, "len": length}, build, predict
    )


def _moe(tokens: int, experts: int, top_k: int, hidden: int, ffn: int, skew: float) -> list[ValidationCase]:
    from hwsim.kernels.moe import make_inputs

    counts = [int(c) for c in make_inputs(tokens, experts, top_k, hidden, ffn, skew, 0).counts]
    params: dict[str, CaseValue] = {
        "tokens": tokens,
        "experts": experts,
        "top_k": top_k,
        "hidden": hidden,
        "ffn": ffn,
        "skew": skew,
    }

    def build_dispatch(seed: int) -> Callable[[], Any]:
        from hwsim.kernels.moe import dispatch_numba, make_inputs

        inp = make_inputs(tokens, experts, top_k, hidden, ffn, skew, seed)
        return partial(dispatch_numba, inp.x, inp.experts, experts)

    def build_ffn(seed: int) -> Callable[[], Any]:
        from hwsim.kernels.moe import dispatch_numba, grouped_ffn_blas, make_inputs

        inp = make_inputs(tokens, experts, top_k, hidden, ffn, skew, seed)
        xp, _, offsets = dispatch_numba(inp.x, inp.experts, experts)
        return partial(grouped_ffn_blas, xp, offsets, inp.w1, inp.w2, out=np.empty_like(xp))

    slots = tokens * top_k
    return [
        ValidationCase("moe_dispatch", params, build_dispatch, lambda m: m.dispatch_s(tokens, slots, hidden, 4.0)),
        ValidationCase(
            "moe_grouped_gemm", params, build_ffn, lambda m: m.grouped_gemm_s(counts, hidden, ffn, 4.0, "fp32")
        ),
    ]


def cpu_cases(quick: bool) -> list[ValidationCase]:
    """The CPU validation cases (quick: the smaller ones of each family)."""
    cases = [_copy(b) for b in VAL_COPY_BYTES] + [_triad(n) for n in VAL_TRIAD_N]
    cases += [_gemm(*s) for s in (VAL_GEMM[:4] if quick else VAL_GEMM)]
    cases += [_gemv(*s) for s in VAL_GEMV]
    cases += [_topk(*s) for s in VAL_TOPK]
    cases += [_attention(*s) for s in VAL_ATTENTION]
    cases += [_softmax(*s) for s in VAL_SOFTMAX]
    cases += [_decode(*s) for s in VAL_DECODE]
    for s in VAL_MOE:
        cases += _moe(*s)
    return cases


# ----------------------------------------------------------------------------------------- run


@dataclass(frozen=True)
class FamilyError:
    family: str
    cases: int
    median_abs_error: float
    worst_abs_error: float
    worst_case: str


def family_errors(pairs: list[tuple[str, str, float, float]]) -> list[FamilyError]:
    """(family, case label, predicted, measured) -> per-family median and worst |relative error|."""
    by_family: dict[str, list[tuple[float, str]]] = {}
    for family, label, predicted, measured in pairs:
        err = relative_error(predicted, measured)
        if err is not None:
            by_family.setdefault(family, []).append((abs(err), label))
    out = []
    for family, errs in by_family.items():
        worst = max(errs)
        out.append(FamilyError(family, len(errs), statistics.median(e for e, _ in errs), worst[0], worst[1]))
    return out


def family_table(errors: list[FamilyError], title: str) -> Table:
    table = Table(title=title)
    table.add_column("family")
    table.add_column("cases", justify="right")
    table.add_column("median |error|", unit="%", justify="right", number_format=".1f")
    table.add_column("worst |error|", unit="%", justify="right", number_format=".1f")
    table.add_column("worst case")
    for e in errors:
        table.add_row(e.family, e.cases, e.median_abs_error * 100, e.worst_abs_error * 100, e.worst_case)
    return table


@dataclass(frozen=True)
class ValidationResult:
    records: list[Record]
    tables: list[Table]
    notes: list[str]
    errors: list[FamilyError]
    models: OperatorModels | None
    hardware: Hardware | None = None
    """The calibrated hardware (operators included) the predictions came from; written as ``validate-<name>.yaml``."""


def validate_cpu(
    *, threads: int, quick: bool, seed: int = 0, rounds: int | None = None, hardware_name: str = "host"
) -> ValidationResult:
    """Calibrate on ``threads`` threads, then predict and measure every CPU validation case."""
    from hwsim.kernels.measure import load_average
    from hwsim.suites.calibrate import calibration_table, fit_operator_models, interference_fitted

    cases = cpu_cases(quick)
    calls = {f"val {c.label}": c.build(seed) for c in cases}
    # calibration and validation cases interleaved in the same rounds: both see the same machine
    # (load drifts over minutes on a shared host); only the calibration cases enter the fit
    load0 = load_average()
    cal = fit_operator_models(threads=threads, quick=quick, seed=seed, rounds=rounds, extra=calls)
    load1 = load_average()
    # the same path as `hwsim hw calibrate` then any suite: the models become the device's
    # `operators` field and every prediction reads them back through costs.operator_models(device)
    hardware = _calibrated_hardware(hardware_name, cal.models, seed)
    models = operator_models(hardware.device)
    assert models is not None
    timings = {c.label: cal.extra_timings[f"val {c.label}"] for c in cases}
    records: list[Record] = []
    pairs: list[tuple[str, str, float, float]] = []
    rows = Table(title=f"validation cases ({threads} threads)")
    for name in ("case", "predicted", "measured (min)", "median", "spread", "error", "noisy"):
        rows.add_column(
            name,
            unit="s" if name in ("predicted", "measured (min)", "median") else "",
            justify="left" if name == "case" else "right",
        )
    for c in cases:
        t = timings[c.label]
        predicted = c.predict(models)
        pairs.append((c.family, c.label, predicted, t.min_s))
        records.append(
            Record(
                SUITE_NAME,
                c.case,
                "latency_s",
                predicted,
                "s",
                "simulated",
                hardware_name,
                note=f"per-family model, calibrated on {threads} threads",
            )
        )
        records.append(Record(SUITE_NAME, c.case, "latency_s", t.min_s, "s", "measured", hardware_name, note=t.note()))
        err = relative_error(predicted, t.min_s)
        rows.add_row(
            c.label,
            predicted,
            t.min_s,
            t.median_s,
            t.spread,
            f"{err * 100:+.1f}%" if err is not None else None,
            "yes" if t.noisy else "",
        )
    interference, unclean, contention = _contention_pairs(seed, models)
    if interference is not None:  # the pairs' calibration from the same rounds as the held-out pairs
        models = replace(models, interference=interference)
        hardware = replace(hardware, device=replace(hardware.device, operators=models))
        cal.fitted.update(interference_fitted(interference))
    for family, label, predicted, measured, note in contention:
        pairs.append((family, label, predicted, measured))
        case = {"family": family, "pair": label}
        records.append(
            Record(
                SUITE_NAME,
                case,
                "latency_s",
                predicted,
                "s",
                "simulated",
                hardware_name,
                note="interference model from calibrated alone times",
            )
        )
        records.append(Record(SUITE_NAME, case, "latency_s", measured, "s", "measured", hardware_name, note=note))
        err = relative_error(predicted, measured)
        rows.add_row(
            f"{family} {label}", predicted, measured, None, None, f"{err * 100:+.1f}%" if err is not None else None, ""
        )
    errors = family_errors(pairs)
    noisy = sum(1 for t in timings.values() if t.noisy)
    notes = [
        (
            f"load average: {load0:.2f} before, {load1:.2f} after (calibration and validation interleaved); "
            f"{noisy} of {len(timings)} cases marked noisy (spread or reference-kernel drift > 25%)"
        ),
        "measured = best of interleaved repeats (a busy core only slows a run); "
        "median and spread in each record's note",
    ] + ([f"{', '.join(unclean)}: measured while another process held a core (no round ran both threads at "
           "once); the contention rows depend on them"] if unclean else [])
    tables = [
        family_table(errors, f"per-family error on held-out cases ({threads} threads)"),
        rows,
        calibration_table(cal),
    ]
    return ValidationResult(records, tables, notes, errors, models, hardware)


def _calibrated_hardware(name: str, models: OperatorModels, seed: int) -> Hardware:
    """This CPU's hardware description (quick roofline calibration) carrying the fitted operator models."""
    from hwsim.suites.calibrate import cpu_hardware

    hw, _ = cpu_hardware(name, quick=True, seed=seed)
    return replace(hw, device=replace(hw.device, operators=models))


#: Validation pairs (kind, FMA passes, stream bytes): sizes the calibration pairs never use.
VAL_PAIRS: tuple[tuple[str, int, int], ...] = (
    ("fma+fma", 150, 0),
    ("stream+stream", 0, 20 << 20),
    ("fma+stream", 250, 12 << 20),
    ("stream+fma", 700, 30 << 20),
)


def _contention_pairs(
    seed: int, models: OperatorModels,
) -> tuple[Interference | None, tuple[str, ...], list[tuple[str, str, float, float, str]]]:
    """Two single-threaded kernels at once on two cores. The calibration pairs and these held-out
    pairs (other sizes) are timed in the same interleaved rounds, as the kernel cases are, since the
    two vCPUs' shared state (core clock; a physical core when the host puts both on one) changes from
    minute to minute; the interference is fitted from the calibration pairs only and predicts each
    held-out pair from its alone times, with ``models``' staircase pricing the caches the two kernels'
    data share (:func:`~hwsim.costs.families.shared_caches_s`). Measured: the later of the two
    threads' CPU times (time-slicing by other processes drops out; interference between the two
    stays in)."""
    import os

    from hwsim.kernels.measure import load_average, pairs_interleaved
    from hwsim.suites.calibrate import (
        PAIR_FMA_BYTES,
        PAIR_ROUNDS,
        calibration_pairs,
        interference_from,
        pair_kernels,
        unclean_pairs,
    )

    if (os.cpu_count() or 1) < 2:
        return None, (), []
    held_out = {}
    memory = {}
    footprint = {}
    for label, passes, nbytes in VAL_PAIRS:
        fmas, streams = pair_kernels(seed + 1, max(passes, 1), max(nbytes, 1 << 20))
        first, mem1, own1 = (fmas[0], 0.0, PAIR_FMA_BYTES) if label.startswith("fma") else (streams[0], 1.0, nbytes)
        second, mem2, own2 = (fmas[1], 0.0, PAIR_FMA_BYTES) if label.endswith("fma") else (streams[1], 1.0, nbytes)
        held_out[label] = (first, second)
        memory[label] = (mem1, mem2)
        footprint[label] = (float(own1), float(own2))
    load0 = load_average()
    timings = pairs_interleaved({**calibration_pairs(seed), **held_out}, PAIR_ROUNDS)
    load1 = load_average()
    interference = interference_from(timings)
    results = []
    for label in held_out:
        t = timings[label]
        predicted, measured, how = _paired(t, partial(_pair_s, models=models, memory=memory[label],
                                                      footprint=footprint[label], interference=interference))
        note = (
            f"{how}, of {t.rounds} rounds (alone, alone, together; {t.clean_rounds} with both threads on a "
            f"core), interleaved with the calibration pairs, thread CPU clock; load={load0:.2f}->{load1:.2f}; "
            "one thread per kernel"
        )
        results.append(("contention", label, predicted, measured, note))
    return interference, unclean_pairs(timings), results


def _pair_s(first_alone_s: float, second_alone_s: float, *, models: OperatorModels, memory: tuple[float, float],
            footprint: tuple[float, float], interference: Interference) -> float:
    """Both done: each alone time stretched for the caches the other kernel's data take, then the
    calibrated interference while both run (DRAM's part of it by the share of their traffic DRAM
    serves at both working sets together, :meth:`~hwsim.costs.families.OperatorModels.dram_share`)."""
    (m1, m2), (b1, b2) = memory, footprint
    first = shared_caches_s(models, first_alone_s, m1, b1, b2)
    second = shared_caches_s(models, second_alone_s, m2, b2, b1)
    dram = models.dram_share(b1 + b2) ** 2 if models.weights_measured else 1.0
    return concurrent_s(first, second, m1, m2, interference, dram)[2]


def _paired(t: PairTiming, predict: Callable[[float, float], float]) -> tuple[float, float, str]:
    """(predicted, measured, how) for a held-out pair. Each round's prediction comes from that round's
    alone times and is checked against that round's pair, as calibration takes its slowdowns within
    a round: the core clock moves between rounds, so a best-of alone time and a best-of together time
    can come from different clocks. Reported: the round whose predicted/measured ratio is the median
    (the lower one of an even count). Without per-round times: best-of alone and together."""
    rounds = t.round_times() if t.round_alone else []
    if not rounds:
        return predict(t.first_alone_s, t.second_alone_s), t.both_s, "best"
    pairs = sorted(((predict(a1, a2), max(c1, c2)) for a1, a2, c1, c2 in rounds), key=lambda pm: pm[0] / pm[1])
    predicted, measured = pairs[(len(pairs) - 1) // 2]
    return predicted, measured, f"the median-ratio round of {len(pairs)} used"


def _once(fn: Callable[[], Any]) -> float:
    import time

    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _markdown(table: Table) -> str:
    """A GitHub table (no rich needed: this runs on a bare GPU box too)."""
    from hwsim.suites.tables import format_cell

    head = [c.name + (f" ({c.unit})" if c.unit else "") for c in table.columns]
    lines = [f"**{table.title}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in table.rows:
        cells = (format_cell(v, c.number_format) for v, c in zip(row, table.columns, strict=True))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_outputs(result: ValidationResult, out: Path) -> list[Path]:
    """validate.json (simulated + measured records), the per-family table as markdown, the calibrated
    hardware file (CPU) and the fitted models as JSON."""
    import json

    from hwsim.fileio import write_text_atomic

    out.mkdir(parents=True, exist_ok=True)
    paths = [write_results(out / "validate.json", result.records)]
    text = "\n".join(_markdown(t) for t in result.tables) + "\n" + "\n".join(f"- {n}" for n in result.notes) + "\n"
    paths.append(write_text_atomic(out / "validate.md", text))
    if result.hardware is not None:  # the calibrated hardware file, usable with --hw
        from hwsim.suites.calibrate import write_hardware

        paths.append(write_hardware(result.hardware, out / f"validate-{result.hardware.name}.yaml"))
    if result.models is not None:  # the device.operators block alone, as plain JSON (also on a bare GPU box)
        paths.append(
            write_text_atomic(
                out / "operator-models.json", json.dumps(models_to_dict(result.models), indent=1, default=str) + "\n"
            )
        )
    return paths


def run_validate(
    *, device: str, threads: int | None, quick: bool, seed: int = 0, out: Path | None = None
) -> ValidationResult:
    """The whole check on one device; writes ``out`` when given. A GPU run without a GPU skips with a note."""
    if device == "gpu":
        from hwsim.suites.validate_gpu import validate_gpu

        result = validate_gpu(quick=quick, seed=seed)
    else:
        import os

        result = validate_cpu(threads=threads or (os.cpu_count() or 1), quick=quick, seed=seed)
    if out is not None and result.records:
        paths = write_outputs(result, out)
        result.notes.append("wrote " + ", ".join(str(p) for p in paths))
    return result


def main(argv: list[str] | None = None) -> int:
    """``python -m hwsim.suites.validate``: the same check without the full CLI (no rich, no PyYAML),
    for a bare GPU machine with only numpy, numba, cupy and pytest."""
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m hwsim.suites.validate", description=main.__doc__)
    p.add_argument("--device", choices=("cpu", "gpu"), default="gpu")
    p.add_argument("--threads", type=int)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", type=Path)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    result = run_validate(device=args.device, threads=args.threads, quick=args.quick, seed=args.seed, out=args.out)
    for table in result.tables:
        print(_markdown(table))
    for note in result.notes:
        print(f"- {note}", file=sys.stderr)
    return 0


__all__ = [
    "FamilyError",
    "ValidationCase",
    "ValidationResult",
    "cpu_cases",
    "family_errors",
    "family_table",
    "main",
    "run_validate",
    "validate_cpu",
    "write_outputs",
]


if __name__ == "__main__":
    raise SystemExit(main())
