"""The ``spatten`` suite: SpAtten driven by its released workloads, beside the paper's headline.

Everything simulated comes out of :mod:`hwsim.systems.spatten` (the pipeline, driven row by row by
the authors' released GPT-2 workloads, and by assumed BERT schedules) or the cost models (the
GPU/CPU baselines as framework op sequences). The paper's figures are ``source="paper"`` records
beside the simulated ones with the same case and metric; the verdict is
:func:`hwsim.records.within_tolerance`. No paper number is an input to any simulated number.
``--measure`` times the baseline's op sequence and the top-k kernel on this CPU and writes the cost
model's price for the same cases, so ``hwsim compare`` joins them.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import geometric_mean
from typing import Any

import numpy as np

from hwsim.hardware import Hardware, load_hardware
from hwsim.hardware.model import Device
from hwsim.records import Record, within_tolerance
from hwsim.suites.host import host_hardware
from hwsim.suites.registry import Parameter, SuiteContext, SuiteResult, resolve_params
from hwsim.suites.tables import Table
from hwsim.systems.spatten import (
    BREAKDOWN,
    CONFIGS,
    BaselineResult,
    SpAttenResult,
    attention_ops,
    dense_baseline,
    plan_bytes,
    simulate,
    topk_engine_mean_cycles,
)
from hwsim.systems.spatten_energy import baseline_energy_j
from hwsim.systems.spatten_workloads import (
    Benchmark,
    benchmark_names,
    get_benchmark,
    load_benchmark_file,
)

SUITE_NAME = "spatten"
CITATION = "SpAtten (HPCA'21) abstract"

# Paper headline (SpAtten, HPCA 2021, abstract): averages over its 30 benchmarks (not our 6).
PAPER: dict[str, float] = {
    "dram_reduction": 10.0,
    "speedup_vs_titan_xp": 162.0,
    "speedup_vs_xeon": 347.0,
    "energy_saving_vs_titan_xp": 1193.0,
    "energy_saving_vs_xeon": 4059.0,
    "speedup_vs_a3": 1.6,            # SpAtten-1/8 vs A3
    "speedup_vs_mnnfast": 3.0,       # SpAtten-1/8 vs MNNFast
    "energy_saving_vs_a3": 1.4,
    "energy_saving_vs_mnnfast": 3.2,
}

TOPK_NS = (64, 256, 1024, 4096)
TOPK_PS = (1, 4, 16, 64)
TOPK_KS = (1, 16, 256, 512, 1024)
MEASURE_TOPK = ((16, 1024, 307), (384, 1024, 307))
# op sequences measured with --measure: (label, heads, queries, keys, cache append)
MEASURE_OPS = (("gpt2-medium generation layer", 16, 1, 1024, True), ("bert-base layer", 12, 128, 128, False))

PARAMETERS = {
    "workload": Parameter("", ("path of a workload CSV in the released SpAtten format; empty: the shipped "
                               "GPT-2 files and the assumed BERT benchmarks")),
    "iterations": Parameter(0, ("generation iterations simulated per benchmark besides the first (evenly "
                                "spaced, scaled to all); 0: 1 with --quick, else 2"), minimum=0, maximum=64),
    "layer_barrier": Parameter(False, ("wait for each layer's heads before admitting the next layer "
                                       "(the released testbench streams without one)")),
}


@dataclass
class _Bench:
    bench: Benchmark
    bytes: dict[str, dict[str, float]]      # config label -> DRAM bytes by kind
    full: SpAttenResult
    eighth: SpAttenResult
    no_pq: SpAttenResult
    a3: SpAttenResult
    mnnfast: SpAttenResult
    gpu: BaselineResult
    cpu: BaselineResult

    def total(self, label: str) -> float:
        return float(sum(self.bytes[label].values()))

    @property
    def ratios(self) -> dict[str, float]:
        full = self.full
        return {
            "dram_reduction": self.total("dense fp32") / full.total_dram_bytes,
            "speedup_vs_titan_xp": self.gpu.latency_s / full.latency_s,
            "speedup_vs_xeon": self.cpu.latency_s / full.latency_s,
            "energy_saving_vs_titan_xp": baseline_energy_j(self.gpu.hardware, self.gpu.latency_s) / full.energy_j,
            "energy_saving_vs_xeon": baseline_energy_j(self.cpu.hardware, self.cpu.latency_s) / full.energy_j,
            "speedup_vs_a3": self.a3.latency_s / self.eighth.latency_s,
            "speedup_vs_mnnfast": self.mnnfast.latency_s / self.eighth.latency_s,
            "energy_saving_vs_a3": self.a3.energy_j / self.eighth.energy_j,
            "energy_saving_vs_mnnfast": self.mnnfast.energy_j / self.eighth.energy_j,
        }


class SpAttenSuite:
    name = SUITE_NAME
    description = ("SpAtten from its released workloads: DRAM traffic by technique, cycles, energy, and speedup "
                   "over TITAN Xp / Xeon / A3 / MNNFast beside the paper")
    default_hardware = "spatten"
    parameters = PARAMETERS

    def run(self, ctx: SuiteContext) -> SuiteResult:
        params = resolve_params(self, ctx.params)
        hw = ctx.hardware or load_hardware(self.default_hardware)
        eighth_hw = load_hardware("spatten-1/8")
        gpu, cpu = load_hardware("titan-xp"), load_hardware("xeon-e5-2640v4")
        iterations = int(params["iterations"]) or (1 if ctx.quick else 2)  # type: ignore[call-overload]
        barrier = bool(params["layer_barrier"])
        path = str(params["workload"])
        if path:
            benches = [load_benchmark_file(path)]
        else:
            names = ["gpt2-small-wikitext2", "bert-base-glue"] if ctx.quick else benchmark_names()
            benches = [get_benchmark(n, seed=ctx.seed) for n in names]
        records: list[Record] = []
        notes: list[str] = []
        tables: list[Table] = []

        def rec(case: dict[str, Any], metric: str, value: float, unit: str, hardware: str, note: str = "") -> None:
            records.append(Record(SUITE_NAME, case, metric, float(value), unit, "simulated", hardware, note=note))

        rows: list[_Bench] = []
        for i, bench in enumerate(benches):
            seed = ctx.seed + 1000 * i

            def sim(h: Hardware, key: str, b: Benchmark = bench, s: int = seed) -> SpAttenResult:
                return simulate(h, b, CONFIGS[key], seed=s, iterations=iterations, layer_barrier=barrier)

            by_label = {label: plan_bytes(bench, cfg) for label, cfg in BREAKDOWN}
            by_label["dense int8"] = plan_bytes(bench, CONFIGS["dense-int8"])
            b = _Bench(bench, by_label, sim(hw, "spatten"), sim(eighth_hw, "spatten"), sim(hw, "no-progressive-quant"),
                       sim(eighth_hw, "a3"), sim(eighth_hw, "mnnfast"), dense_baseline(gpu, bench),
                       dense_baseline(cpu, bench))
            rows.append(b)
            self._records(b, rec, hw.name, eighth_hw.name)

        tables.append(self._dram_table(rows, hw.name))
        tables.append(self._latency_table(rows, hw.name, eighth_hw.name))
        tables.append(self._energy_table(rows))
        tables.append(self._baseline_table(rows, eighth_hw.name))
        head, paper_records = self._headline(rows, hw.name)
        tables.append(head)
        records += paper_records
        topk_tables, topk_records = self._topk_tables(ctx, hw)
        tables += topk_tables
        records += topk_records
        figures = self._figure(ctx, rows)
        if ctx.tracer is not None:
            bench = benches[-1] if path else get_benchmark("gpt2-medium-wikitext2")
            groups = bench.iterations()
            one = groups[len(groups) // 2]            # a middle iteration, alone
            traced = replace(bench, rows=one)
            r = simulate(hw, traced, CONFIGS["spatten"], seed=ctx.seed, tracer=ctx.tracer, layer_barrier=barrier)
            notes.append(f"trace: {bench.name} iteration {one[0].iteration} on {hw.name}, "
                         f"{r.latency_s * 1e6:.1f} us simulated")
        if ctx.measure:
            m_tables, m_records = self._measure(ctx, notes)
            tables += m_tables
            records += m_records
        notes += self._notes(rows, iterations, barrier)
        return SuiteResult(records=records, notes=notes, figures=figures, tables=tables)

    # -- records ----------------------------------------------------------------------------------
    def _records(self, b: _Bench, rec: Callable[..., None], hw_name: str, eighth_name: str) -> None:
        case = {"benchmark": b.bench.name}
        for label in ("dense fp32", "dense int8"):
            rec(case | {"config": label.replace(" ", "-")}, "dram_bytes", b.total(label), "B", hw_name)
        rec(case | {"config": "spatten"}, "dram_bytes", b.full.total_dram_bytes, "B", hw_name)
        for (label, _), (prev, _) in zip(BREAKDOWN[1:], BREAKDOWN):
            rec(case | {"technique": label}, "dram_reduction", b.total(prev) / b.total(label), "1", hw_name)
        for result, name in ((b.full, hw_name), (b.eighth, eighth_name)):
            c = case | {"platform": name, "config": "spatten"}
            rec(c, "latency_s", result.latency_s, "s", name)
            rec(c, "cycles", result.cycles, "1", name)
            rec(c, "energy_j", result.energy_j, "J", name)
        rec(case | {"platform": hw_name, "config": "no-progressive-quant"}, "latency_s", b.no_pq.latency_s, "s", hw_name)
        for result in (b.a3, b.mnnfast):
            rec(case | {"platform": eighth_name, "config": result.config}, "latency_s", result.latency_s, "s", eighth_name,
                note="model of that design on SpAtten-1/8's datapath (see results/spatten/README.md)")
        for base in (b.gpu, b.cpu):
            c = case | {"platform": base.hardware, "config": "dense-fp32"}
            rec(c, "latency_s", base.latency_s, "s", base.hardware, note="op sequence priced by the cost model")
            rec(c, "energy_j", baseline_energy_j(base.hardware, base.latency_s), "J", base.hardware,
                note="assumed power x modelled time")
        for metric, value in b.ratios.items():
            rec(case, metric, value, "1", hw_name)

    # -- tables -----------------------------------------------------------------------------------
    def _dram_table(self, rows: list[_Bench], hw_name: str) -> Table:
        t = Table(title=f"SpAtten DRAM traffic per benchmark (keys and values read; {hw_name})",
                  caption="technique columns: DRAM reduction of switching that technique on, in the order shown; "
                          "GPT-2: 32 generation iterations from the released workloads; * keep ratios assumed")
        t.add_column("benchmark")
        t.add_column("dense fp32", "MB", number_format=".1f")
        t.add_column("dense int8", "MB", number_format=".1f")
        t.add_column("SpAtten", "MB", number_format=".2f")
        t.add_column("reduction", "x", number_format=".1f")
        for label, _ in BREAKDOWN[1:]:
            t.add_column(label, "x", number_format=".2f")
        for b in rows:
            steps = [b.total(prev) / b.total(label) for (label, _), (prev, _) in zip(BREAKDOWN[1:], BREAKDOWN)]
            t.add_row(b.bench.name + (" *" if b.bench.assumed else ""), b.total("dense fp32") / 1e6,
                      b.total("dense int8") / 1e6, b.full.total_dram_bytes / 1e6,
                      b.total("dense fp32") / b.full.total_dram_bytes, *steps)
        return t

    def _latency_table(self, rows: list[_Bench], hw_name: str, eighth_name: str) -> Table:
        t = Table(title="SpAtten cycles and latency (attention only; GPT-2: generation iterations only)")
        t.add_column("benchmark")
        t.add_column(f"{hw_name} cycles", "", number_format=".4g")
        t.add_column(f"{hw_name}", "us", number_format=".1f")
        t.add_column(f"{eighth_name} cycles", "", number_format=".4g")
        t.add_column(f"{eighth_name}", "us", number_format=".1f")
        t.add_column("static quant instead of PQ", "x", number_format=".2f")
        t.add_column("TITAN Xp", "us", number_format=".1f")
        t.add_column("Xeon", "us", number_format=".1f")
        t.add_column("vs TITAN Xp", "x", number_format=".1f")
        t.add_column("vs Xeon", "x", number_format=".1f")
        for b in rows:
            r = b.ratios
            t.add_row(b.bench.name + (" *" if b.bench.assumed else ""), b.full.cycles, b.full.latency_s * 1e6,
                      b.eighth.cycles, b.eighth.latency_s * 1e6, b.no_pq.latency_s / b.full.latency_s,
                      b.gpu.latency_s * 1e6, b.cpu.latency_s * 1e6, r["speedup_vs_titan_xp"], r["speedup_vs_xeon"])
        return t

    def _energy_table(self, rows: list[_Bench]) -> Table:
        t = Table(title="SpAtten energy (per-operation table, hwsim/systems/spatten_energy.py) vs baselines",
                  caption="baselines: assumed board/package power x modelled time")
        t.add_column("benchmark")
        t.add_column("SpAtten", "uJ", number_format=".2f")
        for part in ("dram", "sram", "mac", "softmax", "topk"):
            t.add_column(f"{part} share", "%", number_format=".1f")
        t.add_column("TITAN Xp", "uJ", number_format=".4g")
        t.add_column("Xeon", "uJ", number_format=".4g")
        t.add_column("saving vs TITAN Xp", "x", number_format=".0f")
        t.add_column("saving vs Xeon", "x", number_format=".0f")
        for b in rows:
            parts = b.full.energy.breakdown_j()
            total = sum(parts.values())
            r = b.ratios
            t.add_row(b.bench.name + (" *" if b.bench.assumed else ""), total * 1e6,
                      *(100 * parts[k] / total for k in ("dram", "sram", "mac", "softmax", "topk")),
                      baseline_energy_j(b.gpu.hardware, b.gpu.latency_s) * 1e6,
                      baseline_energy_j(b.cpu.hardware, b.cpu.latency_s) * 1e6,
                      r["energy_saving_vs_titan_xp"], r["energy_saving_vs_xeon"])
        return t

    def _baseline_table(self, rows: list[_Bench], eighth_name: str) -> Table:
        t = Table(title=f"{eighth_name} vs A3 and MNNFast (models on the same datapath and bandwidth)",
                  caption="A3: every key and value at 8 bits, no pruning; MNNFast: every key, values skipped "
                          "as SpAtten's local pruning skips them; both our reading, see results/spatten/README.md")
        t.add_column("benchmark")
        t.add_column("SpAtten-1/8", "us", number_format=".1f")
        t.add_column("A3", "us", number_format=".1f")
        t.add_column("MNNFast", "us", number_format=".1f")
        t.add_column("speedup vs A3", "x", number_format=".2f")
        t.add_column("speedup vs MNNFast", "x", number_format=".2f")
        t.add_column("energy saving vs A3", "x", number_format=".2f")
        t.add_column("energy saving vs MNNFast", "x", number_format=".2f")
        for b in rows:
            r = b.ratios
            t.add_row(b.bench.name + (" *" if b.bench.assumed else ""), b.eighth.latency_s * 1e6, b.a3.latency_s * 1e6,
                      b.mnnfast.latency_s * 1e6, r["speedup_vs_a3"], r["speedup_vs_mnnfast"],
                      r["energy_saving_vs_a3"], r["energy_saving_vs_mnnfast"])
        return t

    def _headline(self, rows: list[_Bench], hw_name: str) -> tuple[Table, list[Record]]:
        t = Table(title=f"SpAtten headline: simulated vs paper (geometric mean over {len(rows)} benchmarks; "
                        "the paper averages 30)")
        t.add_column("metric")
        t.add_column("simulated, all", "x", number_format=".3g")
        t.add_column("simulated, GPT-2 only", "x", number_format=".3g")
        t.add_column("paper", "x", number_format=".4g")
        t.add_column("within ±25%")
        out: list[Record] = []
        gpt2 = [b for b in rows if b.bench.generation]
        for metric, paper in PAPER.items():
            sim = geometric_mean([b.ratios[metric] for b in rows])
            sim_gpt2 = geometric_mean([b.ratios[metric] for b in gpt2]) if gpt2 else None
            case = {"benchmark": "geomean"}
            out.append(Record(SUITE_NAME, case, metric, sim, "1", "simulated", hw_name))
            out.append(Record(SUITE_NAME, case, metric, paper, "1", "paper", hw_name, citation=CITATION))
            t.add_row(metric, sim, sim_gpt2, paper, "yes" if within_tolerance(sim, paper) else "no")
        return t, out

    def _topk_tables(self, ctx: SuiteContext, hw: Hardware) -> tuple[list[Table], list[Record]]:
        rng = np.random.default_rng(ctx.seed + 7)
        overhead = int(hw.device.engine("topk").param("overhead_cycles"))
        trials = 4 if ctx.quick else 8
        out: list[Record] = []
        t = Table(title=f"top-k engine: mean cycles (k = n/4, {trials} random rows each; released latency model)")
        t.add_column("n")
        for p in TOPK_PS:
            t.add_column(f"P={p}", "cycles", number_format=".0f")
        for n in TOPK_NS:
            cells = []
            for p in TOPK_PS:
                c = topk_engine_mean_cycles(n, n // 4, p, rng, trials, overhead)
                cells.append(c)
                out.append(Record(SUITE_NAME, {"table": "vs n", "n": n, "k": n // 4, "comparators": p},
                                  "topk_engine_cycles", c, "1", "simulated", hw.name))
            t.add_row(n, *cells)
        t2 = Table(title="top-k engine: mean cycles vs k (n = 1024, P = 16)")
        t2.add_column("k")
        t2.add_column("cycles", number_format=".0f")
        for k in TOPK_KS:
            c = topk_engine_mean_cycles(1024, k, 16, rng, trials, overhead)
            t2.add_row(k, c)
            out.append(Record(SUITE_NAME, {"table": "vs k", "n": 1024, "k": k, "comparators": 16},
                              "topk_engine_cycles", c, "1", "simulated", hw.name))
        return [t, t2], out

    def _notes(self, rows: list[_Bench], iterations: int, barrier: bool) -> list[str]:
        notes = [
            (f"GPT-2 rows come from the released workload files; iteration 0 (before any pruning) and {iterations} "
             "later iterations of 32 simulated per benchmark and scaled (DRAM bytes counted over all 32); no prompt "
             "pass (the released workloads have none). "
             f"Layer barrier: {'on' if barrier else 'off (as the released testbench)'}."),
            "BERT keep ratios, bits and re-fetching heads are assumptions (marked *); see hwsim/systems/spatten_workloads.py.",
            ("Averages are geometric means over our benchmarks; the paper averages 30 benchmarks and does not say how. "
             "A3 and MNNFast are our models of those designs; gaps are explained in results/spatten/README.md."),
        ]
        return notes

    def _figure(self, ctx: SuiteContext, rows: list[_Bench]) -> list[Path]:
        if ctx.figures_dir is None:  # a library call or a sweep case: no files behind the caller's back
            return []
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        out_dir = ctx.figures_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / ("dram_breakdown_quick.png" if ctx.quick else "dram_breakdown.png")
        labels = [b.bench.name for b in rows]
        fig, ax = plt.subplots(figsize=(9, 4))
        bottom = np.zeros(len(rows))
        for (tech, _), (prev, _) in zip(BREAKDOWN[1:], BREAKDOWN):
            vals = np.array([math.log2(b.total(prev) / b.total(tech)) for b in rows])
            ax.bar(labels, vals, bottom=bottom, label=tech)
            bottom += vals
        ax.axhline(math.log2(PAPER["dram_reduction"]), color="k", ls="--", lw=1, label="paper average 10.0x")
        ax.set_ylabel("log2 DRAM reduction vs dense fp32")
        ax.set_title("SpAtten DRAM reduction by technique (simulated)")
        ax.legend(fontsize=7)
        plt.setp(ax.get_xticklabels(), rotation=20, ha="right", fontsize=7)
        fig.tight_layout()
        fig.savefig(path, dpi=80)
        plt.close(fig)
        return [path]

    # -- measured on this CPU --------------------------------------------------------------------
    def _host_device(self, seed: int, notes: list[str]) -> Device:
        """This CPU as a Device: the project's one rule for this machine's hardware
        (:func:`hwsim.suites.host.host_hardware`: the saved calibration, else a quick one now)."""
        hw, host_notes = host_hardware(None, kind="cpu", quick=True, seed=seed)
        notes.extend(host_notes)
        return hw.device

    def _measure(self, ctx: SuiteContext, notes: list[str]) -> tuple[list[Table], list[Record]]:
        from hwsim.costs import topk as topk_cost
        from hwsim.kernels.gpu import gpu_available, gpu_unavailable_reason
        from hwsim.kernels.measure import measure_as_calibrated
        from hwsim.kernels.topk import topk_argpartition, topk_numba

        host = self._host_device(ctx.seed, notes)
        rng = np.random.default_rng(ctx.seed + 11)
        out: list[Record] = []
        t = Table(title="measured on this CPU (one thread, as calibration measures) vs cost model (host device)")
        t.add_column("case")
        t.add_column("measured (best)", "us", number_format=".1f")
        t.add_column("median", "us", number_format=".1f")
        t.add_column("spread", number_format=".2f")
        t.add_column("predicted", "us", number_format=".1f")
        t.add_column("error", "%", number_format="+.0f")
        calls: dict[str, Callable[[], Any]] = {}
        rows_of: list[tuple[str, str, dict[str, str | int | float | bool], float]] = []
        for label, heads, q, kv, append in MEASURE_OPS:
            pred = sum(o.time_s for o in attention_ops(host, heads, q, kv, 64, append))
            case: dict[str, str | int | float | bool] = {"kernel": "attention op sequence", "heads": heads, "q": q,
                                                         "kv": kv, "threads": 1}
            calls[label] = _op_sequence(rng, heads, q, kv, 64, append)
            rows_of.append((label, f"{label} (op by op)", case, pred))
        for rows, n, k in MEASURE_TOPK[:1] if ctx.quick else MEASURE_TOPK:
            x = rng.standard_normal((rows, n)).astype(np.float32)
            name = f"top-k {rows}x{n} k={k}"
            calls[name] = functools.partial(topk_numba, x, k)
            calls[name + " argpartition"] = functools.partial(topk_argpartition, x, k)
            tcase: dict[str, str | int | float | bool] = {"kernel": "topk", "rows": rows, "n": n, "k": k,
                                                          "impl": "numba"}
            rows_of.append((name, f"{name} (numba)", tcase, topk_cost(host, rows, n, k, "fp32").time_s))
            rows_of.append((name + " argpartition", f"{name} (np.argpartition)", tcase | {"impl": "np.argpartition"},
                            math.nan))
        core = host.operators.core_reference_s if host.operators is not None else None
        timings, load = measure_as_calibrated(calls, threads=1, quick=ctx.quick, core_reference_s=core)
        for key, label, case, pred in rows_of:
            m = timings[key]
            out.append(Record(SUITE_NAME, case, "latency_s", m.min_s, "s", "measured", "host-cpu", note=m.note()))
            if not math.isnan(pred):
                out.append(Record(SUITE_NAME, case, "latency_s", pred, "s", "simulated", "host-cpu"))
            t.add_row(label, m.min_s * 1e6, m.median_s * 1e6, m.spread, None if math.isnan(pred) else pred * 1e6,
                      None if math.isnan(pred) else 100 * (pred / m.min_s - 1))
        noisy = [key for key, *_ in rows_of if timings[key].noisy]
        notes.append(f"measured on this CPU on one thread, timed as calibration times its microbenchmarks (best "
                     f"of interleaved samples by the thread's CPU clock while the core ran at full speed; {load})"
                     + (f"; noisy: {', '.join(noisy)}" if noisy else ""))
        if not gpu_available():
            notes.append(f"GPU kernels not measured: {gpu_unavailable_reason()}")
        return [t], out


def _op_sequence(rng: np.random.Generator, heads: int, q: int, kv: int, d: int, append: bool) -> Callable[[], Any]:
    """The baseline's ops one call each, fp32, as :func:`attention_ops` prices them: NumPy for the
    cache appends, the batched GEMMs (BLAS), the scale, the mask and the head merge, and the
    project's fused row softmax (the kernel calibration prices; PyTorch eager's softmax is one
    kernel too, where NumPy's would be five passes)."""
    from hwsim.kernels.microbench import softmax_rows

    query = rng.standard_normal((heads, q, d)).astype(np.float32)
    cache_k = rng.standard_normal((heads, kv - 1 if append else kv, d)).astype(np.float32)
    cache_v = rng.standard_normal(cache_k.shape).astype(np.float32)
    new_k = rng.standard_normal((heads, 1, d)).astype(np.float32)
    mask = np.zeros((q, kv), dtype=np.float32)
    probs = np.empty((heads * q, kv), dtype=np.float32)
    scale = np.float32(1.0 / math.sqrt(d))

    def run() -> Any:
        k = np.concatenate([cache_k, new_k], axis=1) if append else cache_k
        v = np.concatenate([cache_v, new_k], axis=1) if append else cache_v
        s = np.matmul(query, k.transpose(0, 2, 1))
        s = s * scale
        s = s + mask
        softmax_rows(s.reshape(heads * q, kv), probs)
        o = np.matmul(probs.reshape(heads, q, kv), v)
        return np.ascontiguousarray(o.transpose(1, 0, 2))

    return run


SUITE = SpAttenSuite()
