"""``moetuner``: what each expert-placement solver is worth in expert-parallel MoE inference.

Routing is real (issue 16 item 4): the recorded layers (0, 7, 15) and their cross-layer counts of the
public OLMoE routing statistics (``hwsim/placement/data/routing``), nothing generated. Every solver's
placement is solved on one domain's counts and evaluated by the event simulation (``hwsim.systems.moe``) on
the same domain (in-domain) and on the other (cross-domain, arxiv <-> github). The deployment model
(EP ranks of TP groups, per-GPU NICs, TP collectives, attention with the tokens) is in
``hwsim.systems.moetuner``. MoETuner's paper figures (Mixtral-8x7B only) are ``source="paper"`` records
beside the Mixtral rows. With ``--measure`` the dispatch and grouped-FFN kernels (``hwsim.kernels.moe``)
run on this CPU and are set beside the cost model.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from hwsim.errors import WorkloadError
from hwsim.hardware import load_hardware
from hwsim.kernels import moe as kmoe
from hwsim.kernels.gpu import gpu_available, gpu_unavailable_reason
from hwsim.placement import (
    Placement,
    PlacementError,
    PlacementProblem,
    get_solver,
    validate,
)
from hwsim.placement.robust import profile_problem
from hwsim.placement.routing import RealRouting, load_routing, routing_file
from hwsim.records import Record, within_tolerance
from hwsim.suites.registry import Parameter, SuiteContext, SuiteResult, resolve_params
from hwsim.suites.tables import Table
from hwsim.systems.moe import (
    MODELS,
    Batch,
    MoEModel,
    RunResult,
    simulate,
)
from hwsim.systems.moetuner import (
    Scale,
    placement_costs,
    recorded_layers,
    resample,
    scales_for,
    weight_bytes_per_gpu,
)

SUITE_NAME = "moetuner"
SOLVERS = ("contiguous", "round-robin", "greedy", "eplb", "moetuner", "moetuner-minmax", "moetuner-replicate",
           "moetuner-robust")
DOMAINS = ("arxiv", "github")

# MoETuner abstract and Section 6 (notes/placement.md), Mixtral-8x7B, single node (EP4xTP2, 8 H100) and multi
# node (EP4xTP4, 2x8 H200), over Megatron-LM contiguous placement: end-to-end speedup, token-processing tail
# latency reduction, all-to-all tail latency reduction.
PAPER = {
    "single": {"speedup_vs_contiguous": 0.093, "token_tail_reduction": 0.36, "all_to_all_tail_reduction": 0.363},
    "multi": {"speedup_vs_contiguous": 0.175, "token_tail_reduction": 0.27, "all_to_all_tail_reduction": 0.305},
}
PAPER_MODEL = "mixtral-8x7b"
CITATION = "MoETuner (2025) abstract and Section 6, Mixtral-8x7B"
PAPER_SOLVER = "moetuner"

# Workload (assumption, stated in the notes): a prefill step of 2048 tokens per GPU, average context 2048.
TOKENS_PER_GPU = 2048
CONTEXT_TOKENS = 2048
SPARE_SLOTS_PER_GPU = 1          # one extra expert slot per rank and layer, for replicas
ROBUST_PROFILES = 3              # resampled batches of the solve domain the robust solver also sees


@dataclass
class Outcome:
    solver: str
    solve_domain: str
    placement: Placement
    solve_s: float
    runs: dict[str, RunResult]   # eval domain -> run


def model_for(real: RealRouting) -> MoEModel:
    for m in MODELS.values():
        if m.experts == real.num_experts and m.top_k == real.top_k:
            return m
    raise WorkloadError(f"{real.name}: no known MoE model has {real.num_experts} experts and top-{real.top_k}")


def read_routing(path: str | Path) -> RealRouting:
    try:
        return load_routing(path)
    except PlacementError as exc:
        raise WorkloadError(f"routing file {path}: {exc}") from None


def routing_problem(model: MoEModel, scale: Scale, real: RealRouting, spare: int) -> PlacementProblem:
    c = placement_costs(model, scale.hardware, spare, scale.tp)
    loads, routing = recorded_layers(real.expert_counts, real.cross_counts)
    return PlacementProblem(loads=loads, routing=routing, gpus=c.gpus, capacity=c.capacity,
                            gpus_per_node=c.gpus_per_node, intra_node_cost=c.intra_node_cost,
                            inter_node_cost=c.inter_node_cost, name=f"{model.name} {real.name} on {scale.label}")


def _solver_options(name: str, quick: bool, problem: PlacementProblem, batch_slots: int, seed: int) -> dict:
    limit = 1.0 if quick else 2.0
    if name in ("moetuner", "moetuner-minmax"):
        return {"time_limit_s": limit, "subprocess": False} if name == "moetuner" else {"time_limit_s": limit}
    if name == "moetuner-replicate":
        return {"time_limit_s": limit}
    if name == "moetuner-robust":
        rng = np.random.default_rng([seed, 7])
        profiles = tuple(profile_problem(problem, *resample(problem.loads, problem.routing, batch_slots, rng),
                                         name=f"resample {i}") for i in range(ROBUST_PROFILES))
        return {"profiles": profiles, "base": ("moetuner", "eplb", "greedy"), "time_limit_s": 3 * limit}
    return {}


def _run_case(ctx: SuiteContext, model: MoEModel, scale: Scale, files: dict[str, RealRouting],
              params: dict) -> list[Outcome]:
    hw = scale.hardware
    batch = Batch(int(params["tokens_per_gpu"]) * hw.topology.devices * scale.tp, CONTEXT_TOKENS)
    evals = {d: recorded_layers(r.expert_counts, r.cross_counts) for d, r in files.items()}
    outcomes = []
    for solve_domain, real in files.items():
        problem = routing_problem(model, scale, real, int(params["spare_slots"]))
        for name in SOLVERS:
            solver = get_solver(name, **_solver_options(name, ctx.quick, problem, batch.tokens * model.top_k, ctx.seed))
            t0 = time.perf_counter()
            placement = solver.solve(problem)
            solve_s = time.perf_counter() - t0
            validate(problem, placement)
            runs = {d: simulate(model, hw, batch, placement.split, loads, routing, tp=scale.tp, attention_with_tokens=True,
                                tracer=ctx.tracer if (d == solve_domain and name == PAPER_SOLVER) else None,
                                track=f"{model.name} {scale.key} {name} {d}")
                    for d, (loads, routing) in evals.items()}
            outcomes.append(Outcome(name, solve_domain, placement, solve_s, runs))
    return outcomes


def _figure(curves: dict[str, dict[str, np.ndarray]], out_dir: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(curves)
    cols = min(4, len(keys))
    rows = -(-len(keys) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.0 * cols, 3.1 * rows), squeeze=False)
    for ax in axes.ravel()[len(keys):]:
        ax.set_visible(False)
    for ax, key in zip(axes.ravel(), keys):
        for solver, curve in curves[key].items():
            ax.plot(np.arange(len(curve)), curve, marker="o", ms=3, label=solver)
        ax.axhline(1.0, color="grey", lw=0.8, ls="--")
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("GPU (sorted by load)")
        ax.set_ylabel("token-slots / mean")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("per-rank expert load, solved and evaluated on arxiv, mean over the recorded layers", fontsize=10)
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "gpu_load.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------
# kernels: measured vs the cost model

KERNEL_SHAPE = {"tokens": 1024, "experts": 8, "top_k": 2, "hidden": 256, "ffn": 512}
SKEWS = (0.0, 0.5, 1.0, 1.5, 2.0)


#: Numba/BLAS threads for the measured MoE kernels and the models that predict them (one: on a shared
#: 2-core machine a parallel region waits for whichever thread the OS descheduled).
MEASURE_THREADS = 1


def _kernel_records(ctx: SuiteContext, notes: list[str], tables: list[Table]) -> list[Record]:
    """The MoE dispatch and grouped-FFN kernels on this CPU over expert skew, timed as calibration
    times its microbenchmarks, beside the MoE family models (``dispatch_s``, ``grouped_gemm_s``) of a
    calibration on the same thread count (saved, else run now; never fitted to these cases)."""
    from hwsim.costs.ops import operator_models
    from hwsim.kernels.measure import measure_as_calibrated
    from hwsim.suites.host import host_with_models

    hw = host_with_models(ctx.hardware, threads=MEASURE_THREADS, quick=ctx.quick, seed=ctx.seed)
    models = operator_models(hw.device)
    assert models is not None
    s = KERNEL_SHAPE
    records: list[Record] = []
    table = Table(title=f"MoE kernels on {hw.name}: family models vs measured ({MEASURE_THREADS} thread)")
    table.add_column("kernel")
    table.add_column("skew", number_format="g")
    table.add_column("max/mean expert load", number_format=".2f")
    table.add_column("simulated", "ms", number_format=".3f")
    table.add_column("measured", "ms", number_format=".3f")
    table.add_column("error", "%", number_format="+.0f")
    skews = SKEWS[::2] if ctx.quick else SKEWS
    predicted: dict[str, float] = {}
    calls: dict[str, Callable[[], object]] = {}
    loads: dict[str, tuple[float, float]] = {}
    for skew in skews:
        inp = kmoe.make_inputs(s["tokens"], s["experts"], s["top_k"], s["hidden"], s["ffn"], skew, ctx.seed)
        counts = [int(c) for c in inp.counts]
        xp, _, offsets = kmoe.dispatch_numba(inp.x, inp.experts, s["experts"])
        predicted[f"dispatch {skew}"] = models.dispatch_s(s["tokens"], sum(counts), s["hidden"], 4.0)
        predicted[f"grouped_ffn {skew}"] = models.grouped_gemm_s(counts, s["hidden"], s["ffn"], 4.0, "fp32")
        calls[f"dispatch {skew}"] = partial(kmoe.dispatch_numba, inp.x, inp.experts, s["experts"])
        calls[f"grouped_ffn {skew}"] = partial(kmoe.grouped_ffn_blas, xp, offsets, inp.w1, inp.w2,
                                                 out=np.empty_like(xp))
        for kernel in ("dispatch", "grouped_ffn"):
            loads[f"{kernel} {skew}"] = (float(skew), float(max(counts) / (sum(counts) / len(counts))))
    timings, load = measure_as_calibrated(calls, threads=MEASURE_THREADS, quick=ctx.quick,
                                          core_reference_s=models.core_reference_s)
    for name, fn_timing in timings.items():
        kernel = name.split()[0]
        skew, imbalance = loads[name]
        sim_s, measured = predicted[name], fn_timing.min_s
        case: dict[str, str | int | float | bool] = {"kernel": kernel, "skew": skew, **s}
        records.append(Record(SUITE_NAME, case, "kernel_time_s", sim_s, "s", "simulated", hw.name,
                              note=f"MoE family model, operator models on {models.threads} thread(s)"))
        records.append(Record(SUITE_NAME, case, "kernel_time_s", measured, "s", "measured", hw.name,
                              note=fn_timing.note()))
        table.add_row(kernel, skew, imbalance, sim_s * 1e3, measured * 1e3, (sim_s - measured) / measured * 100)
    tables.append(table)
    notes.append(f"MoE kernels measured on {MEASURE_THREADS} thread as calibration measures ({load})")
    if not gpu_available():
        notes.append(f"MoE kernels on GPU not measured: {gpu_unavailable_reason()}")
    return records


def _verdict(value: float, paper: float) -> str:
    return "yes" if within_tolerance(value, paper) else "no"


class MoETunerSuite:
    name = SUITE_NAME
    description = ("expert placement (contiguous, round-robin, greedy, EPLB, MoETuner's ILPs, replicating and robust "
                   "ILPs) in simulated EP inference on real routing, in-domain and cross-domain")
    default_hardware = "h100-sxm"
    parameters = {
        "tokens_per_gpu": Parameter(TOKENS_PER_GPU, "tokens per GPU in one forward step", minimum=1),
        "spare_slots": Parameter(SPARE_SLOTS_PER_GPU, "expert slots per rank and layer beyond experts/ranks (replicas)",
                                 minimum=0),
        "routing": Parameter("", "a routing-statistics .npz (format of placement/data/routing); default: the shipped "
                                 "arxiv and github files of Mixtral-8x7B and OLMoE"),
    }

    def run(self, ctx: SuiteContext) -> SuiteResult:
        params = resolve_params(self, ctx.params)
        single = ctx.hardware if ctx.hardware is not None else load_hardware(self.default_hardware)
        records: list[Record] = []
        notes: list[str] = []
        tables: list[Table] = []
        if params["routing"]:
            real = read_routing(str(params["routing"]))
            cases = [(model_for(real), {real.name: real})]
        else:
            cases = [(MODELS[m], {d: read_routing(routing_file(m, d)) for d in DOMAINS}) for m in ("mixtral-8x7b", "olmoe-1b-7b")]

        headline = Table(title="MoETuner paper vs simulated: Mixtral-8x7B, real recorded layers (0, 7, 15)",
                         caption="reductions are 1 - solver/contiguous; 'within' is within ±25% of the paper")
        headline.add_column("scale")
        headline.add_column("solver")
        headline.add_column("solved on")
        headline.add_column("evaluated on")
        for label in ("speedup", "token tail cut", "all-to-all tail cut"):
            headline.add_column(label, "%", number_format="+.1f")
            headline.add_column("paper", "%", number_format="+.1f")
            headline.add_column("within", justify="left")
        full = Table(title="every solver, in-domain and cross-domain (real recorded layers)")
        for col, unit, fmt in (("model", "", ""), ("scale", "", ""), ("solver", "", ""), ("solved on", "", ""),
                               ("evaluated on", "", ""), ("time", "ms", ".3f"), ("speedup", "%", "+.1f"),
                               ("token tail cut", "%", "+.1f"), ("a2a tail cut", "%", "+.1f"),
                               ("max/mean load", "", ".3f"), ("cross-GPU", "MB", ".1f"), ("cross-node", "MB", ".1f"),
                               ("replicas", "", "d"), ("solve", "s", ".2f"), ("gap", "%", ".1f")):
            full.add_column(col, unit, number_format=fmt or ".4g")
        curves: dict[str, dict[str, np.ndarray]] = {}
        for model, files in cases:
            for scale in scales_for(model, single):
                weights = weight_bytes_per_gpu(model, scale.hardware, int(params["spare_slots"]), scale.tp)
                per_gpu_capacity = scale.hardware.device.memory.capacity_bytes / scale.tp
                if weights > per_gpu_capacity:
                    notes.append(f"{model.name} {scale.label}: {weights / 1e9:.0f} GB of weights per GPU exceed its "
                                 f"{per_gpu_capacity / 1e9:.0f} GB: timed anyway")
                outcomes = _run_case(ctx, model, scale, files, params)
                base = {(o.solve_domain, d): r for o in outcomes if o.solver == "contiguous" for d, r in o.runs.items()}
                for o in outcomes:
                    info = o.placement.info
                    for d, run in o.runs.items():
                        ref = base[o.solve_domain, d]
                        values = {
                            "moe_time_s": (run.time_s, "s"),
                            "speedup_vs_contiguous": (ref.time_s / run.time_s - 1.0, "1"),
                            "token_tail_reduction": (1.0 - run.token_tail_s / ref.token_tail_s, "1"),
                            "all_to_all_tail_reduction": (1.0 - run.all_to_all_tail_s / ref.all_to_all_tail_s
                                                          if ref.all_to_all_tail_s > 0 else 0.0, "1"),
                            "max_over_mean_gpu_load": (float(np.mean(run.gpu_slots().max(axis=1) / run.gpu_slots().mean(axis=1))), "1"),
                            "cross_gpu_bytes": (run.cross_gpu_bytes, "B"),
                            "cross_node_bytes": (run.cross_node_bytes, "B"),
                            "solve_time_s": (o.solve_s, "s"),
                        }
                        if "gap" in info:
                            values["optimality_gap"] = (float(info["gap"]), "1")
                        case: dict[str, str | int | float | bool] = {"model": model.name, "scale": scale.key, "hardware": scale.hardware.name,
                                "solver": o.solver, "solve_domain": o.solve_domain, "eval_domain": d,
                                "tokens_per_gpu": int(params["tokens_per_gpu"]), "spare_slots": int(params["spare_slots"])}
                        for metric, (value, unit) in values.items():
                            records.append(Record(self.name, case, metric, float(value), unit, "simulated", scale.hardware.name))
                        full.add_row(model.name, scale.label, o.solver, o.solve_domain, d, run.time_s * 1e3,
                                     values["speedup_vs_contiguous"][0] * 100, values["token_tail_reduction"][0] * 100,
                                     values["all_to_all_tail_reduction"][0] * 100, values["max_over_mean_gpu_load"][0],
                                     run.cross_gpu_bytes / 1e6, run.cross_node_bytes / 1e6, o.placement.replicas(),
                                     o.solve_s, info["gap"] * 100 if "gap" in info else None)
                        paper = PAPER.get(scale.name) if model.name == PAPER_MODEL else None
                        if paper is not None:
                            row: list = [scale.label, o.solver, o.solve_domain, d]
                            for metric in ("speedup_vs_contiguous", "token_tail_reduction", "all_to_all_tail_reduction"):
                                sim = values[metric][0]
                                if o.solver == PAPER_SOLVER:
                                    records.append(Record(self.name, case, metric, paper[metric], "1", "paper",
                                                          scale.hardware.name, citation=CITATION))
                                    row += [sim * 100, paper[metric] * 100, _verdict(sim, paper[metric])]
                                else:
                                    row += [sim * 100, None, None]
                            headline.add_row(*row)
                    if o.solver in ("moetuner", "moetuner-replicate") and "gap" in info:
                        notes.append(f"{model.name} {scale.label} on {o.solve_domain}: {o.solver} {info.get('method')}, "
                                     f"gap {info['gap'] * 100:.1f}% to a valid bound, {o.solve_s:.2f} s")
                curves[f"{model.name} {scale.label}"] = {
                    o.solver: np.mean(-np.sort(-o.runs[o.solve_domain].gpu_slots(), axis=1)
                                      / o.runs[o.solve_domain].gpu_slots().mean(axis=1, keepdims=True), axis=0)
                    for o in outcomes if o.solve_domain == DOMAINS[0] or len(files) == 1}
        if headline.rows:
            tables.append(headline)
        tables.append(full)
        figures = [_figure(curves, ctx.figures_dir)] if ctx.figures_dir is not None else []
        if ctx.measure:
            records += _kernel_records(ctx, notes, tables)
        notes.append("routing: real counts of the recorded layers 0, 7, 15 only, chained as three MoE layers (their "
                     "pairs are 7 layers apart, so cross-layer affinity is weaker than between adjacent layers); "
                     "times are over those three layers, so 'speedup' is per MoE layer, not the paper's whole model")
        notes.append("paper figures exist for Mixtral-8x7B only; OLMoE rows have none. deepseek-v3 has no public "
                     "routing statistics here: its 58x256x8 problem is solved in tests/benchmarks only (synthetic)")
        return SuiteResult(records=records, notes=[n for n in notes if n], figures=figures, tables=tables)


SUITE = MoETunerSuite()
