"""``hwsim suite run flover``: Flover's temporal fusion against concurrent instances and batching baselines.

Sections (each one's records land even if a later one fails; a failed section is named in the notes
and in ``SuiteResult.failed_sections``, and the CLI then exits 1):

- ``models``: speedup over concurrent instances per model, by makespan and by mean latency, over both
  baselines (FasterTransformer-style instances with their own weights; the shared-weights variant),
  beside the paper's figures (kept as ``source="paper"`` records).
- ``gap``: the same speedups vs the mean arrival gap, beside the paper's curve.
- ``reorder``: the gain of buffer reordering.
- ``decode``: the cost model's fused-batch iteration time vs batch size (with ``--measure``: the real
  decode kernel on this CPU, and on a GPU when one is present, beside the model).
- ``trace``: every scheduler replaying a request trace (``--param trace=PATH``, default the shipped
  Azure 2023 conversation trace) with vLLM-style metrics: TTFT, TPOT, end-to-end percentiles, goodput.

The suite computes; the CLI prints. Every number comes from the simulator; the paper's stand beside
them with the project's one ±25% rule (:func:`hwsim.records.within_tolerance`), never fed back.
"""

from __future__ import annotations

import functools
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hwsim.errors import HwsimError
from hwsim.hardware import Hardware, load_hardware
from hwsim.records import Record, within_tolerance
from hwsim.suites.host import host_with_models
from hwsim.suites.registry import Parameter, SuiteContext, SuiteResult, resolve_params
from hwsim.suites.tables import Table
from hwsim.systems.flover import FloverFusion
from hwsim.systems.serving import (
    ROUTERS,
    SLO_TPOT_S,
    SLO_TTFT_S,
    ConcurrentInstances,
    ContinuousPaged,
    DynamicBatching,
    IterationCost,
    RunResult,
    Scheduler,
    ServingConfig,
    StaticBatching,
    simulate,
    simulate_replicas,
)
from hwsim.workloads.decoders import MODELS, DecoderModel, get_model
from hwsim.workloads.serving import (
    AZURE_CONV_TRACE,
    TRACE_FORMATS,
    Request,
    find_data_file,
    load_trace,
    make_requests,
    poisson_arrivals,
    split_by_context,
    uniform_lengths,
)

SUITE_NAME = "flover"

# ---- workloads (issue 6; Flover, Yao et al., HiPC 2023, arXiv:2305.13484, evaluation setup) ----------
MODEL_TP: tuple[tuple[str, int], ...] = (("gpt-j-6b", 1), ("llama-13b", 1), ("llama-33b", 2), ("llama-65b", 4))
REQUESTS = 32          # requests per experiment (paper)
PROMPT_TOKENS = 8      # prompt length (paper)
GEN_TOKENS = 512       # fixed generation length (paper)
HEADLINE_GAP_S = 0.02  # assumption: the per-model speedups are taken at the paper's densest arrivals (20 ms)
GAPS_S = (0.02, 0.5, 1.0, 2.0, 5.0)
GAP_MODEL = "gpt-j-6b"  # assumption: the gap sweep's model (the paper's GPT setup)
REORDER_MAX_GEN = (512, 1024, 2048, 4096)  # generation uniform on 128..U
REORDER_MIN_GEN = 128
REORDER_GAPS_S = (0.02, 0.5)
DYNAMIC_WINDOW_S = 0.1    # assumption: a Triton-style max queue delay
DYNAMIC_MAX_BATCH = 64
QUICK_TRACE_REQUESTS = 3000
TRACE_FLOW_ITERATIONS = 128
"""Concurrent instances on a long trace: decode iterations per HBM flow (a coarsening that keeps a
19k-request replay to seconds; the paper experiments use one flow per iteration)."""
BASELINES = ("concurrent", "concurrent-shared")
"""FasterTransformer instances with their own weights (the paper's baseline), and the shared-weights variant."""
SECTIONS = ("models", "gap", "reorder", "decode", "trace")
OVERLOAD_DRAIN = 1.1
"""A run is overloaded (offered load > 1) when it needs this much longer than the trace's span plus its
longest lone request to finish: a server that keeps up ends about one request latency after the last
arrival; one that cannot ends about (offered load) x the span, with queues that grow all the way."""

# ---- the paper's figures (as quoted in hwsim issue 6 from Flover, arXiv:2305.13484) ----------------
PAPER_CITATION = "Flover (HiPC'23, arXiv:2305.13484)"
PAPER_MODEL_SPEEDUP = {"gpt-j-6b": 10.9, "llama-13b": 11.7, "llama-33b": 13.4, "llama-65b": 16.7}
PAPER_GAP_SPEEDUP = {0.02: 11.2, 0.5: 6.5, 1.0: 4.2, 2.0: 2.1, 5.0: 1.1}
PAPER_REORDER_GAIN = (1.15, 1.23)  # typical range
PAPER_REORDER_GAIN_MAX = 1.93      # long, spread-out generation lengths

# ---- decode kernel grid (issue 6) ----------------------------------------------------------------------
DECODE_BATCHES = (1, 4, 16, 64, 256)
DECODE_CONTEXTS = (128, 512, 1024, 4096)
QUICK_DECODE_BATCHES = (1, 16, 64)
QUICK_DECODE_CONTEXTS = (128, 1024)
DECODE_KV_BUDGET_BYTES = 2.5e9  # skip grid points whose fp32 KV cache would not fit a shared 2-core box

PARAMETERS: dict[str, Parameter] = {
    "sections": Parameter("all", f"comma-separated sections to run, of: {', '.join(SECTIONS)} (all: every one)"),
    "trace": Parameter("", "request trace for the trace section: a file ('' = the shipped Azure 2023 conversation trace)"),
    "trace_format": Parameter("auto", "the trace's format (auto: detected from its first line)", choices=TRACE_FORMATS),
    "model": Parameter("gpt-j-6b", "model served in the trace section", choices=tuple(MODELS)),
    "hw": Parameter("", "hardware preset or file for the trace section ('' = --hw, else a100-sxm)"),
    "tp": Parameter(1, "tensor-parallel degree of each deployment in the trace section", minimum=1),
    "replicas": Parameter(1, "independent deployments the trace is spread over", minimum=1),
    "router": Parameter("round-robin", "how requests are spread over replicas", choices=tuple(ROUTERS)),
    "max_requests": Parameter(0, "replay only the first N requests of the trace (0: all; --quick: 3000)", minimum=0),
    "time_scale": Parameter(1.0, "multiply every arrival time (2: half the request rate)", minimum=1e-6),
    "max_context": Parameter(0, "slot length and the longest request served, in tokens (0: the model's max context)",
                             minimum=0),
}


def _verdict(sim: float, paper: float) -> bool:
    return within_tolerance(sim, paper)


@dataclass
class _Out:
    """What the sections produce; each appends as it goes, so a later failure loses nothing."""

    records: list[Record]
    hardware: str
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)

    def add(self, case: dict, metric: str, value: float, unit: str, note: str = "", source: str = "simulated",
            hardware: str | None = None, citation: str = "") -> None:
        self.records.append(Record(SUITE_NAME, case, metric, float(value), unit, source,  # type: ignore[arg-type]
                                   hardware or self.hardware, note=note, citation=citation))

    def paper(self, case: dict, metric: str, value: float, citation: str, note: str = "") -> None:
        self.add(case, metric, value, "1", note=note, source="paper", hardware="paper", citation=citation)

    def section(self, name: str, body: Callable[[], object]) -> None:
        """Run one section; a failure becomes a note and a failed section, never the end of the suite."""
        try:
            body()
        except HwsimError as exc:
            self.failed.append(name)
            self.notes.append(f"section {name} failed: {exc}")
        except Exception as exc:  # noqa: BLE001 - a bug: keep what finished and say where it broke
            self.failed.append(name)
            where = traceback.extract_tb(exc.__traceback__)[-1]
            self.notes.append(f"section {name} failed: {type(exc).__name__}: {exc} "
                              f"({Path(where.filename).name}:{where.lineno})")


def _seeds(ctx: SuiteContext) -> list[int]:
    return [ctx.seed + i for i in range(2 if ctx.quick else 5)]


def _poisson_fixed(seed: int, gap_s: float) -> list[Request]:
    rng = np.random.default_rng(seed)
    return make_requests(poisson_arrivals(REQUESTS, gap_s, rng), PROMPT_TOKENS, GEN_TOKENS)


def _poisson_at(gap_s: float) -> Callable[[int], list[Request]]:
    return lambda seed: _poisson_fixed(seed, gap_s)


@dataclass(frozen=True)
class _Speedup:
    baseline: str
    instances: int
    makespan: float
    mean_latency: float


def _speedups(cfg: ServingConfig, make: Callable[[int], list[Request]], seeds: Iterable[int],
              tracer=None) -> list[_Speedup]:
    """Per baseline, the mean over seeds of baseline / Flover by makespan and by mean latency."""
    span: dict[str, list[float]] = {b: [] for b in BASELINES}
    lat: dict[str, list[float]] = {b: [] for b in BASELINES}
    count: dict[str, int] = {}
    for seed in seeds:
        reqs = make(seed)
        fused = simulate(reqs, cfg, FloverFusion(), tracer=tracer)
        for shared in (False, True):
            base = simulate(reqs, cfg, ConcurrentInstances(shared_weights=shared), tracer=tracer)
            span[base.scheduler].append(base.makespan_s / fused.makespan_s)
            lat[base.scheduler].append(base.mean_latency_s / fused.mean_latency_s)
            count[base.scheduler] = base.instances
        tracer = None  # trace one set only
    return [_Speedup(b, count[b], float(np.mean(span[b])), float(np.mean(lat[b]))) for b in BASELINES]


def _speedup_columns(table: Table) -> None:
    table.add_column("baseline")
    table.add_column("instances", justify="right")
    table.add_column("speedup (makespan)", "x", number_format=".1f")
    table.add_column("speedup (mean latency)", "x", number_format=".1f")
    table.add_column("paper", "x", number_format=".1f")
    table.add_column("within ±25% (makespan)")
    table.add_column("within ±25% (mean latency)")


def _add_speedup(out: _Out, case: dict, s: _Speedup, paper: float, citation: str) -> tuple:
    case = {**case, "baseline": s.baseline}
    out.add(case, "speedup_makespan", s.makespan, "1")
    out.add(case, "speedup_mean_latency", s.mean_latency, "1")
    out.add(case, "instances", s.instances, "1")
    if s.baseline == "concurrent":  # the paper's baseline; its metric is not stated, so both readings join it
        for metric in ("speedup_makespan", "speedup_mean_latency"):
            out.paper(case, metric, paper, citation, note="metric not stated in the paper; joined with both readings")
    if s.baseline != "concurrent":  # the paper never ran shared weights: no verdict against its figure
        return (s.baseline, s.instances, s.makespan, s.mean_latency, None, None, None)
    return (s.baseline, s.instances, s.makespan, s.mean_latency, paper, _verdict(s.makespan, paper),
            _verdict(s.mean_latency, paper))


def _models(ctx: SuiteContext, hw: Hardware, out: _Out) -> None:
    table = Table(title=f"Flover speedup over concurrent instances, {REQUESTS} requests x ({PROMPT_TOKENS} + "
                        f"{GEN_TOKENS}) tokens, Poisson mean gap {HEADLINE_GAP_S * 1e3:.0f} ms, {hw.name}")
    table.add_column("model")
    table.add_column("TP", justify="right")
    table.add_column("lone latency", "s", number_format=".2f")
    _speedup_columns(table)
    for name, tp in MODEL_TP:
        cfg = ServingConfig(get_model(name), hw, tp=tp, max_seq_tokens=PROMPT_TOKENS + GEN_TOKENS)
        case = {"section": "models", "model": name, "tp": tp, "gap_s": HEADLINE_GAP_S}
        lone = IterationCost(cfg)
        lone_s = lone.prefill([PROMPT_TOKENS])[0] + lone.lone_decode(PROMPT_TOKENS, GEN_TOKENS)[0]
        out.add(case, "lone_latency_s", lone_s, "s")
        for s in _speedups(cfg, _poisson_at(HEADLINE_GAP_S), _seeds(ctx), ctx.tracer):
            row = _add_speedup(out, case, s, PAPER_MODEL_SPEEDUP[name],
                               f"{PAPER_CITATION}: speedup over FasterTransformer concurrent instances, {name} "
                               "(quoted in hwsim issue 6)")
            table.add_row(name, tp, lone_s, *row)
    out.tables.append(table)


def _gaps(ctx: SuiteContext, hw: Hardware, out: _Out, rows: list[tuple[float, list[_Speedup]]]) -> None:
    cfg = ServingConfig(get_model(GAP_MODEL), hw, tp=1, max_seq_tokens=PROMPT_TOKENS + GEN_TOKENS)
    table = Table(title=f"Speedup over concurrent instances vs mean arrival gap ({GAP_MODEL}, {hw.name})")
    table.add_column("mean gap", "ms", number_format=".0f")
    _speedup_columns(table)
    for gap in GAPS_S:
        speedups = _speedups(cfg, _poisson_at(gap), _seeds(ctx))
        case = {"section": "gap", "model": GAP_MODEL, "gap_s": gap}
        for s in speedups:
            row = _add_speedup(out, case, s, PAPER_GAP_SPEEDUP[gap],
                               f"{PAPER_CITATION}: speedup vs arrival gap (quoted in hwsim issue 6)")
            table.add_row(gap * 1e3, *row)
        rows.append((gap, speedups))
    out.tables.append(table)


def _reorder(ctx: SuiteContext, hw: Hardware, out: _Out) -> None:
    table = Table(title=f"Gain of buffer reordering (Flover without / with), {GAP_MODEL}, generation uniform "
                        f"{REORDER_MIN_GEN}..U")
    table.add_column("U", justify="right")
    table.add_column("mean gap", "ms", number_format=".0f")
    table.add_column("gain (mean latency)", "x", number_format=".3f")
    table.add_column("moves / run", number_format=".1f")
    table.add_column("copied / run", "GB", number_format=".2f")
    table.add_column("paper")
    table.add_column("within ±25% (of gain - 1)")
    lo, hi = PAPER_REORDER_GAIN
    for max_gen in REORDER_MAX_GEN:
        cfg = ServingConfig(get_model(GAP_MODEL), hw, tp=1, max_seq_tokens=PROMPT_TOKENS + max_gen)
        for gap in REORDER_GAPS_S:
            gains, moves, copied = [], [], []
            for seed in _seeds(ctx):
                rng = np.random.default_rng(seed)
                arrivals = poisson_arrivals(REQUESTS, gap, rng)
                reqs = make_requests(arrivals, PROMPT_TOKENS, uniform_lengths(REQUESTS, REORDER_MIN_GEN, max_gen, rng))
                plain = simulate(reqs, cfg, FloverFusion(reorder=False))
                fused = simulate(reqs, cfg, FloverFusion(reorder=True))
                gains.append(plain.mean_latency_s / fused.mean_latency_s)
                moves.append(fused.reorder_moves)
                copied.append(fused.reorder_bytes)
            gain = float(np.mean(gains))
            longest = max_gen == max(REORDER_MAX_GEN) and gap == min(REORDER_GAPS_S)
            case = {"section": "reorder", "model": GAP_MODEL, "max_gen": max_gen, "gap_s": gap}
            # judged on the gain's excess over 1 (a gain of 1.0 is "no effect", never "within 25% of 1.15")
            if longest:
                paper_text = f"up to {PAPER_REORDER_GAIN_MAX}x"
                ok = within_tolerance(gain - 1, PAPER_REORDER_GAIN_MAX - 1)
                out.paper(case, "reorder_gain", PAPER_REORDER_GAIN_MAX,
                          f"{PAPER_CITATION}: largest reordering gain, long spread-out generations (issue 6)")
            else:
                paper_text = f"{lo}-{hi}x"
                ok = lo <= gain <= hi or within_tolerance(gain - 1, lo - 1) or within_tolerance(gain - 1, hi - 1)
            out.add(case, "reorder_gain", gain, "1", f"paper {paper_text}")
            out.add(case, "reorder_moves", float(np.mean(moves)), "1")
            out.add(case, "reorder_bytes", float(np.mean(copied)), "B")
            table.add_row(max_gen, gap * 1e3, gain, float(np.mean(moves)), float(np.mean(copied)) / 1e9, paper_text, ok)
    out.tables.append(table)


def _decode_flat(ctx: SuiteContext, hw: Hardware, out: _Out) -> None:
    """The cost model's fused-batch iteration time vs batch: flat while the weight read dominates."""
    batches = (1, 4, 16, 64, 256)
    table = Table(title=f"Fused-batch decode iteration vs batch size (cost model, {hw.name}), context 1024 per request")
    table.add_column("model (TP)")
    table.add_column("batch", justify="right")
    table.add_column("iteration", "ms", number_format=".2f")
    table.add_column("x batch 1", number_format=".2f")
    table.add_column("tokens/s", number_format=".0f")
    for name, tp in MODEL_TP:
        cost = IterationCost(ServingConfig(get_model(name), hw, tp=tp))
        t1 = cost.decode_time(1, 1024)
        for b in batches:
            t = cost.decode_time(b, 1024 * b)
            out.add({"section": "decode", "model": name, "tp": tp, "batch": b, "context": 1024}, "iteration_s", t, "s")
            table.add_row(f"{name} ({tp})", b, t * 1e3, t / t1, b / t)
    out.tables.append(table)


# ---- any request trace --------------------------------------------------------------------------------


def _trace_schedulers() -> list[Callable[[], Scheduler]]:
    """Every scheduler but the shared-weights instances (a what-if shown in the paper sections; with ~70
    instances at once its max-min sharing costs ~2x the 5 s replay budget on the whole Azure trace)."""
    return [lambda: ConcurrentInstances(iterations_per_flow=TRACE_FLOW_ITERATIONS),
            StaticBatching, lambda: DynamicBatching(DYNAMIC_WINDOW_S, DYNAMIC_MAX_BATCH),
            lambda: FloverFusion(reorder=False), FloverFusion, ContinuousPaged]


def _trace_hardware(ctx: SuiteContext, params: dict, default: Hardware) -> Hardware:
    return load_hardware(str(params["hw"])) if params["hw"] else default


def _trace(ctx: SuiteContext, hw: Hardware, out: _Out, params: dict, results: dict[str, RunResult],
           label: list[str]) -> None:
    path = Path(str(params["trace"])) if params["trace"] else find_data_file(AZURE_CONV_TRACE)
    limit = int(params["max_requests"]) or (QUICK_TRACE_REQUESTS if ctx.quick else None)  # type: ignore[arg-type]
    requests = load_trace(path, str(params["trace_format"]), limit, float(params["time_scale"]))  # type: ignore[arg-type]
    model = get_model(str(params["model"]))
    tp, replicas, router = int(params["tp"]), int(params["replicas"]), str(params["router"])  # type: ignore[arg-type]
    max_context = int(params["max_context"]) or model.max_context  # type: ignore[arg-type]
    served, refused = split_by_context(requests, max_context)
    name = path.name
    label.append(name)
    base_case = {"section": "trace", "trace": name, "model": model.name, "tp": tp, "replicas": replicas}
    out.add(base_case, "requests", len(requests), "1")
    out.add(base_case, "refused_requests", len(refused), "1")
    if refused:
        lines = ", ".join(str(r.line) for r in refused[:10]) + (", ..." if len(refused) > 10 else "")
        why = "the model's context" if not params["max_context"] else "max_context"
        out.notes.append(f"trace {name}: refused {len(refused)} of {len(requests)} requests longer than "
                         f"{max_context} tokens (prompt + output; {why}): lines {lines}")
    if not served:
        raise HwsimError(f"trace {name}: every request is longer than {max_context} tokens")
    cfg = ServingConfig(model, hw, tp=tp, max_seq_tokens=max_context)
    cost = IterationCost(cfg)
    span_s = max(served[-1].arrival_s - served[0].arrival_s, 1e-9)
    where = f"{model.name} tp={tp} x {replicas} replica(s) ({router}) on {hw.name}"
    lat = Table(title=f"Trace {name}: {len(served)} requests served ({len(refused)} refused), {where}; "
                      f"slots of {max_context} tokens")
    lat.add_column("scheduler")
    for metric in ("TTFT p50", "TTFT p90", "TTFT p99", "TPOT p50", "TPOT p99", "e2e p50", "e2e p90", "e2e p99"):
        lat.add_column(metric, "s", number_format=".3g")
    thr = Table(title=f"Trace {name}: throughput and load, {where} (goodput: TTFT <= {SLO_TTFT_S:g} s and TPOT <= "
                      f"{SLO_TPOT_S:g} s, assumed objectives)")
    thr.add_column("scheduler")
    thr.add_column("instances", justify="right")
    thr.add_column("goodput", "req/s", number_format=".3g")
    thr.add_column("tokens/s", number_format=".0f")
    thr.add_column("drain ratio", number_format=".2f")
    thr.add_column("mean normalised", number_format=".1f")
    thr.add_column("events", justify="right")
    thr.add_column("sim wall", "s", number_format=".2f")
    longest_lone = 0.0
    overloaded: list[str] = []
    for make in _trace_schedulers():
        scheduler_name = make().name
        try:
            started = time.perf_counter()
            result = simulate_replicas(served, cfg, make, replicas, router)
            wall = time.perf_counter() - started
        except HwsimError as exc:
            out.failed.append(f"trace:{scheduler_name}")
            out.notes.append(f"trace {name}: scheduler {scheduler_name} failed: {exc}")
            continue
        results[scheduler_name] = result
        if not longest_lone:
            longest_lone = max(r.lone_s for r in result.records)
        case = {**base_case, "scheduler": scheduler_name}
        ttft, tpot, e2e = result.ttfts_s(), result.tpots_s(), result.latencies_s()
        cells = []
        for metric, values, qs in (("ttft", ttft, (50, 90, 99)), ("tpot", tpot, (50, 99)), ("e2e", e2e, (50, 90, 99))):
            for q in qs:
                v = float(np.percentile(values, q))
                out.add(case, f"{metric}_p{q}_s", v, "s")
                cells.append(v)
        out.add(case, "tpot_p90_s", float(np.percentile(tpot, 90)), "s")
        drain = result.makespan_s / (span_s + longest_lone)
        goodput = result.goodput_per_s()
        out.add(case, "goodput_per_s", goodput, "1/s")
        out.add(case, "tokens_per_s", result.tokens_per_s, "1/s")
        out.add(case, "mean_normalised_latency", result.mean_normalised, "1")
        out.add(case, "drain_ratio", drain, "1")
        out.add(case, "reorder_bytes", result.reorder_bytes, "B")
        lat.add_row(scheduler_name, *cells)
        thr.add_row(scheduler_name, result.instances, goodput, result.tokens_per_s, drain, result.mean_normalised,
                    result.events, wall)
        if drain > OVERLOAD_DRAIN:
            overloaded.append(f"{scheduler_name} ({drain:.1f}x)")
    out.tables += [lat, thr]
    if overloaded:
        out.notes.append(f"trace {name}: overloaded (offered load > 1): {', '.join(overloaded)} need that multiple of "
                         "the trace's span to drain (drain ratio), so their queues grow through the run and their "
                         "latencies measure the backlog, not the service")
    out.notes.append(f"trace {name}: contiguous schedulers preallocate {max_context}-token slots (the model's context), "
                     f"{cost.slots()} fit beside one weight copy; FasterTransformer instances each hold their own "
                     f"weights; the paged cache holds {cost.kv_blocks()} blocks of {cfg.block_tokens} tokens. "
                     f"Concurrent instances use one HBM flow per {TRACE_FLOW_ITERATIONS} decode iterations here "
                     "(a coarsening; the paper sections use one per iteration)")


def _figures(ctx: SuiteContext, gap_rows: list[tuple[float, list[_Speedup]]], trace: dict[str, RunResult],
             trace_label: str) -> list[Path]:
    if ctx.figures_dir is None:  # a library call or a sweep case: no files behind the caller's back
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = ctx.figures_dir
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    if gap_rows:
        fig, ax = plt.subplots(figsize=(5.8, 3.8))
        gaps = [g for g, _ in gap_rows]
        for i, baseline in enumerate(BASELINES):
            span = [next(s.makespan for s in row if s.baseline == baseline) for _, row in gap_rows]
            lat = [next(s.mean_latency for s in row if s.baseline == baseline) for _, row in gap_rows]
            ax.plot(gaps, span, "s-" if i == 0 else "s:", label=f"makespan, {baseline}")
            ax.plot(gaps, lat, "o--" if i == 0 else "o:", label=f"mean latency, {baseline}")
        ax.plot(gaps, [PAPER_GAP_SPEEDUP[g] for g in gaps], "k^-", label="paper")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("mean arrival gap (s)")
        ax.set_ylabel("Flover speedup")
        ax.set_title(f"{GAP_MODEL}, {REQUESTS} requests x {GEN_TOKENS} tokens")
        ax.legend(fontsize=7)
        fig.tight_layout()
        paths.append(folder / "flover_speedup_vs_gap.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    if trace:
        fig, ax = plt.subplots(figsize=(5.8, 3.8))
        for name, result in trace.items():
            e2e = np.sort(result.latencies_s())
            ax.plot(e2e, np.arange(1, e2e.size + 1) / e2e.size, label=name)
        ax.set_xscale("log")
        ax.set_xlabel("request latency (s)")
        ax.set_ylabel("fraction of requests")
        ax.set_title(f"trace {trace_label}")
        ax.legend(fontsize=7)
        fig.tight_layout()
        paths.append(folder / "flover_trace_latency_cdf.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


# ---- measured decode kernel on this CPU ---------------------------------------------------------------


MEASURE_THREADS = 1
"""Numba threads for calibration and the decode kernel. One: on a shared 2-core machine a parallel region
waits for whichever of its threads the OS has descheduled (we saw 2 threads run 8x slower than 1 at load 3-5)."""


def _measure_decode(ctx: SuiteContext, out: _Out) -> None:
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(min(MEASURE_THREADS, before))
    try:
        _measure_decode_threads(ctx, out)
    finally:
        numba.set_num_threads(before)
    out.notes.append(f"decode kernel and CPU calibration measured with {min(MEASURE_THREADS, before)} Numba thread(s) "
                 "on a shared machine: treat the measured times as noisy")


FLAT_TOLERANCE = 1.25  # "flat": within 25% of the batch-1 time


def _decode_grid(ctx: SuiteContext, out: _Out, hw: Hardware, device: str,
                 kv_budget_bytes: float) -> None:
    """Measure the decode step over the batch x context grid on ``device`` beside the model on ``hw``."""
    from hwsim.costs.ops import operator_models
    from hwsim.kernels import decode as D
    from hwsim.kernels.measure import measure, measure_as_calibrated

    shape = D.LayerShape()
    layer = DecoderModel("decode-layer", layers=1, hidden=shape.hidden, heads=shape.heads, ffn=shape.ffn, vocab=1,
                         mlp_matrices=2, dtype="fp32")
    cost = IterationCost(ServingConfig(layer, hw, max_seq_tokens=8192))
    models = operator_models(hw.device) if device == "cpu" else None
    batches = QUICK_DECODE_BATCHES if ctx.quick else DECODE_BATCHES
    contexts = QUICK_DECODE_CONTEXTS if ctx.quick else DECODE_CONTEXTS
    impl = D.decode_numba if device == "cpu" else D.decode_cupy
    table = Table(title=f"Decode step of one layer (d={shape.hidden}, {shape.heads} heads, ffn {shape.ffn}, fp32), "
                        f"measured on {device} ({'Numba' if device == 'cpu' else 'CuPy'}) vs "
                        + (f"the decode-step family model ({hw.name}'s operator models)" if models is not None else
                           f"cost model ({hw.name}: {hw.device.memory.bandwidth_bytes_per_s / 1e9:.1f} GB/s, "
                           f"{hw.device.peak('fp32') / 1e9:.0f} GFLOP/s)"))
    table.add_column("context", justify="right")
    table.add_column("batch", justify="right")
    table.add_column("measured", "ms", number_format=".3f")
    table.add_column("model", "ms", number_format=".3f")
    table.add_column("error", number_format="+.0%")
    table.add_column("measured x B=1", number_format=".2f")
    table.add_column("model x B=1", number_format=".2f")
    skipped, flat = [], []
    for context in contexts:
        base_meas = base_model = None
        flat_meas = flat_model = 0
        for batch in batches:
            if D.kv_cache_bytes(shape, batch, context + 1) > kv_budget_bytes:
                skipped.append(f"B={batch}, context {context}")
                continue
            rng = np.random.default_rng(ctx.seed + batch * 7919 + context)
            lens = rng.integers(context // 2, context + 1, size=batch)  # ragged: each request its own length
            inputs = D.make_inputs(shape, lens, seed=ctx.seed)
            if device == "gpu":
                inputs = D.to_gpu(inputs)
            note = ""
            if device == "cpu":  # timed as calibration times its microbenchmarks: the model saw the same machine
                timings, _ = measure_as_calibrated({"step": functools.partial(impl, inputs)}, threads=MEASURE_THREADS,
                                                   quick=ctx.quick,
                                                   core_reference_s=models.core_reference_s if models else None)
                measured_s, note = timings["step"].min_s, timings["step"].note()
            else:
                measured_s = measure(functools.partial(impl, inputs), warmup=2, repeats=7 if ctx.quick else 11,
                                     max_time_s=1.0 if ctx.quick else 2.0, device=device).median_s  # type: ignore[arg-type]
            if models is not None:  # the decode-step family model (validated by `hwsim validate`)
                model_s = models.decode_step_s([int(n) for n in lens], shape.hidden, shape.heads, shape.ffn, 4.0)
            else:
                model_s = cost.layer_decode_time(batch, int((lens + 1).sum()))
            case = {"section": f"decode-layer-{device}", "hidden": shape.hidden, "batch": batch, "context": context}
            out.add(case, "time_s", measured_s, "s", source="measured", hardware=f"{device}-host", note=note)
            out.add(case, "time_s", model_s, "s", hardware=hw.name)
            base_meas = base_meas or measured_s
            base_model = base_model or model_s
            if measured_s <= FLAT_TOLERANCE * base_meas:
                flat_meas = batch
            if model_s <= FLAT_TOLERANCE * base_model:
                flat_model = batch
            table.add_row(context, batch, measured_s * 1e3, model_s * 1e3, model_s / measured_s - 1,
                          measured_s / base_meas, model_s / base_model)
            del inputs
        flat.append(f"context {context}: measured B<={flat_meas}, model B<={flat_model}")
    out.tables.append(table)
    out.notes.append(f"flat region on {device} (largest batch within {FLAT_TOLERANCE}x of batch 1): " + "; ".join(flat))
    if hw.device.sram_bandwidth_bytes_per_s is not None:
        out.notes.append(f"the cost model takes an op whose bytes fit the {hw.device.sram_bytes / 2**20:.0f} MiB on-chip memory "
                     f"as warm ({hw.device.sram_bandwidth_bytes_per_s / 1e9:.0f} GB/s); this layer's weights total "
                     f"{D.weight_bytes(shape) / 2**20:.0f} MiB, so in a real step they are not")
    if skipped:
        out.notes.append(f"decode kernel on {device}: skipped {', '.join(skipped)} (fp32 KV cache over "
                     f"{kv_budget_bytes / 1e9:.1f} GB)")


GPU_KV_BUDGET_BYTES = 16e9  # fp32 KV of the largest grid point (B=256, context 4096) is 8.6 GB


def _measure_decode_threads(ctx: SuiteContext, out: _Out) -> None:
    from hwsim.kernels.gpu import gpu_available, gpu_unavailable_reason

    _decode_grid(ctx, out, host_with_models(ctx.hardware, threads=MEASURE_THREADS, quick=ctx.quick, seed=ctx.seed),
                 "cpu", DECODE_KV_BUDGET_BYTES)
    if gpu_available():
        gpu_hw = ctx.hardware if ctx.hardware is not None and ctx.hardware.device.kind == "gpu" else \
            load_hardware(SUITE.default_hardware)
        _decode_grid(ctx, out, gpu_hw, "gpu", GPU_KV_BUDGET_BYTES)
        out.notes.append(f"GPU decode predicted on {gpu_hw.name}; pass --hw for the GPU actually present")
    else:
        out.notes.append(f"decode kernel on GPU (CuPy) not measured: {gpu_unavailable_reason()}")


@dataclass(frozen=True)
class FloverSuite:
    name: str = SUITE_NAME
    description: str = "Flover temporal fusion vs concurrent instances and batching; any request trace; decode kernel"
    default_hardware: str = "a100-sxm"
    parameters: dict[str, Parameter] = field(default_factory=lambda: dict(PARAMETERS))

    def run(self, ctx: SuiteContext) -> SuiteResult:
        params = resolve_params(self, ctx.params)
        wanted = SECTIONS if params["sections"] == "all" else tuple(s.strip() for s in str(params["sections"]).split(","))
        unknown = [s for s in wanted if s not in SECTIONS]
        if unknown:
            from hwsim.errors import SuiteError
            raise SuiteError(f"flover: unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
        hw = ctx.hardware if ctx.hardware is not None and ctx.hardware.device.kind != "cpu" else \
            load_hardware(self.default_hardware)
        out = _Out([], hw.name)
        gap_rows: list[tuple[float, list[_Speedup]]] = []
        trace: dict[str, RunResult] = {}
        label: list[str] = []
        if "models" in wanted:
            out.section("models", lambda: _models(ctx, hw, out))
        if "gap" in wanted:
            out.section("gap", lambda: _gaps(ctx, hw, out, gap_rows))
        if "reorder" in wanted:
            out.section("reorder", lambda: _reorder(ctx, hw, out))
        if "decode" in wanted:
            out.section("decode", lambda: _decode_flat(ctx, hw, out))
        if "trace" in wanted:
            out.section("trace", lambda: _trace(ctx, _trace_hardware(ctx, params, hw), out, params, trace, label))
        out.section("figures", lambda: out.figures.extend(_figures(ctx, gap_rows, trace, label[0] if label else "")))
        if ctx.measure:
            out.section("measure", lambda: _measure_decode(ctx, out))
        if "models" in wanted or "gap" in wanted:
            out.notes.append("speedup = baseline / Flover, by makespan of the 32 requests and by mean request latency; "
                             "'concurrent' = FasterTransformer instances, each with its own weights (as many as fit "
                             "in memory), 'concurrent-shared' = one weight copy shared by as many instances as KV "
                             "slots fit (a what-if). The paper's per-model figures sit closest to the mean-latency "
                             "ratio over 'concurrent'; its speedup-vs-gap curve falls like the makespan ratio (see "
                             "results/flover/README.md)")
        return SuiteResult(out.records, out.notes, out.figures, out.tables, failed_sections=out.failed)


SUITE = FloverSuite()
