"""``moetuner``: what each expert-placement solver is worth in expert-parallel MoE inference.

Per model / node scale / solver: the placement is solved on routing fitted to one domain (arxiv) and
evaluated by the event simulation (``hwsim.systems.moe``) on routing of the other domain (github),
fresh samples, so a gain cannot come from fitting the evaluation data. Reported beside MoETuner's
end-to-end speedups over contiguous placement (9.3% single node, 17.5% multi node, paper abstract).
With ``--measure`` the dispatch and grouped-FFN kernels (``hwsim.kernels.moe``) run on this CPU over skew
levels and are set beside the cost model the simulation uses.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import time

import numpy as np
from rich.console import Console
from rich.table import Table

from hwsim.costs import itemsize, memcpy
from hwsim.hardware import Hardware, Topology, load_hardware
from hwsim.records import Record
from hwsim.systems.moe import (MODELS, Batch, MoEModel, RunResult, grouped_gemm_s, simulate, slot_bytes,
                               slot_seconds)
from hwsim.kernels import moe as kmoe
from hwsim.kernels.gpu import gpu_available, gpu_unavailable_reason
from hwsim.kernels.measure import measure
from hwsim.placement import PlacementProblem, get_solver, objective, validate
from hwsim.placement.routing import RoutingModel, fit_model, load_routing, routing_file, sample_trace, synthetic_model
from hwsim.suites.registry import Parameter, SuiteContext, SuiteResult, resolve_params

SUITE_NAME = "moetuner"
SOLVERS = ("contiguous", "round-robin", "greedy", "eplb", "moetuner")
SOLVE_DOMAIN, EVAL_DOMAIN = "arxiv", "github"

# MoETuner abstract / Section 6: end-to-end speedup of its placement over contiguous (Megatron-LM) placement.
PAPER_SPEEDUP = {"single": 0.093, "multi": 0.175}

# Which real routing file backs each model; deepseek-v3 has none, so it borrows OLMoE's fitted skew
# and affinity (both fine-grained top-8 routers) on its own 256-expert, 58-layer structure.
ROUTING_SOURCE = {"mixtral-8x7b": "mixtral-8x7b", "olmoe-1b-7b": "olmoe-1b-7b", "deepseek-v3": "olmoe-1b-7b"}

# Workload (assumption, stated in the notes): a prefill step of 2048 tokens per GPU, average context 2048.
TOKENS_PER_GPU = 2048
CONTEXT_TOKENS = 2048
SPARE_SLOTS_PER_GPU = 1          # one extra expert slot per GPU and layer, for EPLB's redundant copies
STRUCTURE_SEED = 20250210        # the model's own routing structure, shared by both domains


@dataclass(frozen=True)
class Scale:
    name: str                    # "single" | "multi"
    hardware: Hardware
    tp: int = 1                  # GPUs per expert-parallel rank (tensor parallelism inside it)

    @property
    def label(self) -> str:
        g = self.hardware.topology.devices
        return f"{self.name} EP{g}" + (f"xTP{self.tp}" if self.tp > 1 else "")

    @property
    def key(self) -> str:
        return self.name + (f"-tp{self.tp}" if self.tp > 1 else "")


def _multi_node(base: Hardware, nodes: int, per_node: int, inter: Hardware) -> Hardware:
    """``nodes`` x ``per_node`` GPUs of ``base``, nodes joined by ``inter``'s network link."""
    topo = Topology(kind="two-level", devices=nodes * per_node, link=base.topology.link, nodes=nodes,
                    inter_link=inter.topology.inter_link)
    return replace(base, name=f"{base.name}-{nodes}x{per_node}", topology=topo)


def tp_rank(hw: Hardware, tp: int) -> Hardware:
    """An expert-parallel rank of ``tp`` GPUs: its GEMMs split ``tp`` ways (compute and HBM add up), while
    every GPU of the rank still sends and receives the rank's whole token stream (Megatron-style expert
    tensor parallelism all-gathers tokens inside the TP group), so its network port stays one GPU's."""
    d = hw.device
    device = replace(d, peak_flops_per_s={k: v * tp for k, v in d.peak_flops_per_s.items()},
                     memory=replace(d.memory, capacity_bytes=d.memory.capacity_bytes * tp,
                                    bandwidth_bytes_per_s=d.memory.bandwidth_bytes_per_s * tp))
    return replace(hw, name=f"{hw.name}-tp{tp}", device=device)


def scales_for(model: MoEModel, single: Hardware) -> list[Scale]:
    multi = load_hardware("h100-sxm-2x8")
    if model.experts >= multi.topology.devices:
        return [Scale("single", single), Scale("multi", multi)]
    # Mixtral's 8 experts: the paper's 4-way expert parallelism, one EP rank per GPU (4 GPUs, or 2 nodes x 2),
    # and the paper's own layout, EP4xTP2 on one node and EP4xTP4 on two (MoETuner Section 6)
    ep = 4
    one_node = replace(single, name=f"{single.name}-ep{ep}", topology=replace(single.topology, devices=ep))
    two_nodes = _multi_node(single, 2, ep // 2, multi)
    return [Scale("single", one_node), Scale("multi", two_nodes),
            Scale("single", tp_rank(one_node, 2), tp=2), Scale("multi", tp_rank(two_nodes, 4), tp=4)]


_FIT_CACHE: dict[tuple[str, int], tuple[RoutingModel, RoutingModel, list[dict]]] = {}


def routing_models(model: MoEModel, seed: int) -> tuple[RoutingModel, RoutingModel, list[dict]]:
    """Fitted (solve-domain, eval-domain) models and the fit reports (fitted once per model and seed)."""
    key = (model.name, seed)
    if key not in _FIT_CACHE:
        _FIT_CACHE[key] = _fit(model, seed)
    return _FIT_CACHE[key]


def _fit(model: MoEModel, seed: int) -> tuple[RoutingModel, RoutingModel, list[dict]]:
    src = ROUTING_SOURCE[model.name]
    fitted, reports = {}, []
    for domain in (SOLVE_DOMAIN, EVAL_DOMAIN):
        real = load_routing(routing_file(src, domain))
        m, rep = fit_model(real, STRUCTURE_SEED + seed)
        reports.append(rep)
        if src != model.name:  # synthetic structure at the model's size, with the fitted skew and affinity
            m = synthetic_model(model.moe_layers, model.experts, rep.zipf_s, rep.concentration,
                                np.random.default_rng(STRUCTURE_SEED + seed), top_k=model.top_k)
        fitted[domain] = m
    return fitted[SOLVE_DOMAIN], fitted[EVAL_DOMAIN], [r.__dict__ for r in reports]


def placement_problem(model: MoEModel, hw: Hardware, loads: np.ndarray, routing: np.ndarray,
                      spare_slots: int = SPARE_SLOTS_PER_GPU) -> PlacementProblem:
    """The placement problem the simulation implies, in units of one GPU's time per token-slot.

    Tail term unit: what one more token-slot costs the GPU that serves it: its expert FFN plus receiving
    the slot (dispatch) and (k-1)/k partial outputs (combine), each arriving from a uniformly random GPU
    (same node over NVLink, other node over the network). Traffic term: a slot moving between GPUs of a
    node costs its bytes over NVLink, between nodes over the network, divided by the number of GPUs
    because all ports carry the all-to-all in parallel.
    """
    topo = hw.topology
    g = topo.devices
    per_node = topo.devices_per_node
    nbytes = slot_bytes(model)
    intra_s = nbytes / topo.link.bandwidth_bytes_per_s  # type: ignore[union-attr]
    inter_s = nbytes / topo.inter_link.bandwidth_bytes_per_s if topo.inter_link is not None else intra_s
    ingress_s = (per_node - 1) / g * intra_s + (g - per_node) / g * inter_s
    unit_s = slot_seconds(model, hw) + (1 + (model.top_k - 1) / model.top_k) * ingress_s
    return PlacementProblem(loads=loads, routing=routing, gpus=g, capacity=model.experts // g + spare_slots,
                            gpus_per_node=per_node, intra_node_cost=intra_s / g / unit_s,
                            inter_node_cost=inter_s / g / unit_s, name=f"{model.name} on {hw.name}")


def weight_bytes_per_gpu(model: MoEModel, hw: Hardware, spare_slots: int = SPARE_SLOTS_PER_GPU) -> float:
    """Weights one GPU holds when every expert slot is used (memory capacity is not part of the timing)."""
    w = itemsize(model.weight_dtype)
    slots = model.experts // hw.topology.devices + spare_slots
    per_layer = (slots * model.expert_ffn + model.shared_ffn) * model.ffn_matrices * model.hidden + model.attention_params
    return per_layer * model.moe_layers * w


@dataclass
class Outcome:
    solver: str
    runs: list[RunResult]
    solve_s: float
    gap: float | None
    info: dict

    @property
    def time_s(self) -> float:
        return float(np.mean([r.time_s for r in self.runs]))

    def p99_layer_s(self) -> float:
        return float(np.percentile(np.concatenate([r.layer_times_s() for r in self.runs]), 99))

    def max_over_mean(self) -> float:
        slots = np.concatenate([r.gpu_slots() for r in self.runs])
        return float(np.mean(slots.max(axis=1) / slots.mean(axis=1)))

    def mean_sorted_load(self) -> np.ndarray:
        slots = np.concatenate([r.gpu_slots() for r in self.runs])
        return np.mean(-np.sort(-slots, axis=1) / slots.mean(axis=1, keepdims=True), axis=0)


def _run_case(ctx: SuiteContext, model: MoEModel, scale: Scale, batches: int, quick: bool,
              params: dict) -> tuple[list[Outcome], list[dict]]:
    hw = scale.hardware
    g = hw.topology.devices
    solve_model, eval_model, fits = routing_models(model, ctx.seed)
    batch = Batch(int(params["tokens_per_gpu"]) * g, CONTEXT_TOKENS)
    slots = batch.tokens * model.top_k
    solve_trace = sample_trace(solve_model, 4 * slots, np.random.default_rng([ctx.seed, 1]))
    eval_rng = np.random.default_rng([ctx.seed, 2])
    eval_traces = [sample_trace(eval_model, slots, eval_rng) for _ in range(batches)]
    problem = placement_problem(model, hw, solve_trace.loads, solve_trace.routing, int(params["spare_slots"]))
    outcomes = []
    for name in SOLVERS:
        options = {"time_limit_s": 4.0 if quick else 50.0, "hard_timeout_s": 10.0 if quick else 60.0} if name == "moetuner" else {}
        solver = get_solver(name, **options)
        t0 = time.perf_counter()
        placement = solver.solve(problem)
        solve_s = time.perf_counter() - t0
        validate(problem, placement)
        runs = []
        for i, tr in enumerate(eval_traces):
            tracer = ctx.tracer if i == 0 else None
            runs.append(simulate(model, hw, batch, placement.split, tr.loads, tr.routing, tracer=tracer,
                                 track=f"{model.name} {scale.key} {name}"))
        gap = placement.info.get("gap") if name == "moetuner" else None
        info = dict(placement.info)
        info["objective_solve_domain"] = objective(problem, placement).total
        outcomes.append(Outcome(name, runs, solve_s, gap, info))
    return outcomes, fits


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
    fig.suptitle("per-GPU expert load on the evaluation domain, mean over layers and batches", fontsize=10)
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


def _kernel_records(ctx: SuiteContext, notes: list[str]) -> list[Record]:
    from hwsim.suites.host import host_hardware

    hw, more = host_hardware(None, quick=True, seed=ctx.seed)
    notes += more
    s = KERNEL_SHAPE
    kernel_model = MoEModel("kernel", s["experts"], s["top_k"], 1, s["hidden"], s["ffn"], 2, 0, 1, 1,
                            weight_dtype="fp32", act_dtype="fp32")
    records: list[Record] = []
    table = Table(title=f"MoE kernels on {hw.name}: cost model vs measured (loaded machine)")
    for col in ("kernel", "skew", "max/mean expert load", "simulated", "measured", "error"):
        table.add_column(col, justify="right")
    skews = SKEWS[::2] if ctx.quick else SKEWS
    for skew in skews:
        inp = kmoe.make_inputs(s["tokens"], s["experts"], s["top_k"], s["hidden"], s["ffn"], skew, ctx.seed)
        counts = inp.counts
        xp, _, offsets = kmoe.dispatch_numba(inp.x, inp.experts, s["experts"])
        cases = {
            "dispatch": (memcpy(hw.device, kmoe.dispatch_bytes(int(counts.sum()), s["hidden"], 4)).time_s,
                         lambda: kmoe.dispatch_numba(inp.x, inp.experts, s["experts"])),
            "grouped_ffn": (grouped_gemm_s(kernel_model, hw, counts.astype(float)),
                            lambda: kmoe.grouped_ffn_blas(xp, offsets, inp.w1, inp.w2)),
        }
        for kernel, (sim_s, fn) in cases.items():
            measured = measure(fn, warmup=2, repeats=5 if ctx.quick else 11, device="cpu", max_time_s=1.0).median_s
            case = {"kernel": kernel, "skew": skew, **s}
            records.append(Record(SUITE_NAME, case, "kernel_time", sim_s, "s", "simulated", hw.name))
            records.append(Record(SUITE_NAME, case, "kernel_time", measured, "s", "measured", hw.name))
            table.add_row(kernel, f"{skew:g}", f"{counts.max() / counts.mean():.2f}", f"{sim_s * 1e3:.3f} ms",
                          f"{measured * 1e3:.3f} ms", f"{(sim_s - measured) / measured * 100:+.0f}%")
    _wide(ctx).print(table)
    if not gpu_available():
        notes.append(f"MoE kernels on GPU not measured: {gpu_unavailable_reason()}")
    return records


# ---------------------------------------------------------------------------------------------

def _wide(ctx: SuiteContext) -> Console:
    """The tables have many columns: print them at least 200 characters wide."""
    if ctx.console.width >= 200:
        return ctx.console
    return Console(file=ctx.console.file, width=200, force_terminal=ctx.console.is_terminal)


class MoETunerSuite:
    name = SUITE_NAME
    description = "expert placement (contiguous, round-robin, greedy, EPLB, MoETuner ILP) in simulated EP inference"
    default_hardware = "h100-sxm"
    parameters = {
        "tokens_per_gpu": Parameter(TOKENS_PER_GPU, "tokens per GPU in one forward step (smaller: more per-batch skew)",
                                    minimum=1),
        "spare_slots": Parameter(SPARE_SLOTS_PER_GPU, "expert slots per GPU and layer beyond experts/GPUs (EPLB's replicas)",
                                 minimum=0),
    }

    def run(self, ctx: SuiteContext) -> SuiteResult:
        params = resolve_params(self, ctx.params)
        single = ctx.hardware if ctx.hardware is not None else load_hardware(self.default_hardware)
        models = ["mixtral-8x7b", "olmoe-1b-7b"] if ctx.quick else list(MODELS)
        batches = 2 if ctx.quick else 4
        records: list[Record] = []
        notes: list[str] = []
        curves: dict[str, dict[str, np.ndarray]] = {}
        table = Table(title=f"MoETuner: solved on {SOLVE_DOMAIN} routing, evaluated on {EVAL_DOMAIN} routing")
        for col in ("model", "scale", "solver", "e2e ms", "speedup", "paper", "within ±25%?", "p99 layer ms",
                    "max/mean load", "cross-GPU GB", "cross-node GB", "objective (solve domain)", "solve s", "gap"):
            table.add_column(col, justify="left" if col in ("model", "scale", "solver", "within ±25%?") else "right")
        fit_table = Table(title="routing generator fitted to the real files")
        for col in ("file", "zipf s", "concentration", "CV real", "CV fitted", "affinity real", "affinity fitted"):
            fit_table.add_column(col, justify="right")
        seen_fits: set[str] = set()
        for model_name in models:
            model = MODELS[model_name]
            for scale in scales_for(model, single):
                outcomes, fits = _run_case(ctx, model, scale, batches, ctx.quick, params)
                weights = weight_bytes_per_gpu(model, scale.hardware, int(params["spare_slots"]))
                if weights > scale.hardware.device.memory.capacity_bytes:
                    notes.append(f"{model.name} {scale.label}: up to {weights / 1e9:.0f} GB of weights per GPU "
                                 f"(expert slots incl. the spare one, attention, shared experts) exceed its "
                                 f"{scale.hardware.device.memory.capacity_bytes / 1e9:.0f} GB: timed anyway, "
                                 "but a real deployment needs more or larger GPUs")
                for f in fits:
                    if f["name"] not in seen_fits:
                        seen_fits.add(f["name"])
                        fit_table.add_row(f["name"], f"{f['zipf_s']:.3f}", f"{f['concentration']:.3g}", f"{f['real_cv']:.3f}",
                                          f"{f['fitted_cv']:.3f}", f"{f['real_affinity']:.4f}", f"{f['fitted_affinity']:.4f}")
                        for metric in ("real_cv", "fitted_cv", "real_affinity", "fitted_affinity"):
                            records.append(Record(self.name, {"routing_file": f["name"]}, metric, float(f[metric]), "1",
                                                  "simulated", "none"))
                base = outcomes[0].time_s
                curves[f"{model.name} {scale.label}"] = {
                    o.solver: o.mean_sorted_load() for o in outcomes}
                for o in outcomes:
                    speedup = base / o.time_s - 1.0
                    case = {"model": model.name, "scale": scale.key, "hardware": scale.hardware.name, "solver": o.solver,
                            "tokens_per_gpu": int(params["tokens_per_gpu"]), "spare_slots": int(params["spare_slots"]),
                            "gpus": scale.hardware.topology.devices}
                    runs = o.runs
                    values = {
                        "e2e_time": (o.time_s, "s"), "speedup_vs_contiguous": (speedup, "1"),
                        "p99_layer_time": (o.p99_layer_s(), "s"), "max_over_mean_gpu_load": (o.max_over_mean(), "1"),
                        "cross_gpu_bytes": (float(np.mean([r.cross_gpu_bytes for r in runs])), "B"),
                        "cross_node_bytes": (float(np.mean([r.cross_node_bytes for r in runs])), "B"),
                        "solve_time": (o.solve_s, "s"),
                        "objective_solve_domain": (o.info["objective_solve_domain"], "slot-times"),
                    }
                    if o.gap is not None:
                        values["optimality_gap"] = (float(o.gap), "1")
                    for metric, (value, unit) in values.items():
                        records.append(Record(self.name, case, metric, float(value), unit, "simulated", scale.hardware.name))
                    paper = PAPER_SPEEDUP[scale.name] if o.solver == "moetuner" else None
                    within = "—" if paper is None else ("yes" if abs(speedup - paper) <= 0.25 * paper else "no")
                    table.add_row(model.name, scale.label, o.solver,
                                  f"{o.time_s * 1e3:.2f}", f"{speedup * 100:+.1f}%",
                                  "—" if paper is None else f"+{paper * 100:.1f}%", within,
                                  f"{o.p99_layer_s() * 1e3:.3f}", f"{o.max_over_mean():.3f}",
                                  f"{values['cross_gpu_bytes'][0] / 1e9:.2f}", f"{values['cross_node_bytes'][0] / 1e9:.2f}",
                                  f"{o.info['objective_solve_domain']:.4g}", f"{o.solve_s:.2f}", "—" if o.gap is None else f"{o.gap * 100:.1f}%")
                    if o.solver == "moetuner":
                        notes.append(f"{model.name} {scale.label}: moetuner {o.info.get('method')} via {o.info.get('backend')}, "
                                     f"status {o.info.get('status')}, gap {o.gap * 100:.1f}% to a proven bound" if o.gap is not None else "")
        wide = _wide(ctx)
        wide.print(fit_table)
        wide.print(table)
        # figures only where the caller points (the CLI: next to the results file); none for library calls
        figures = [_figure(curves, ctx.figures_dir)] if ctx.figures_dir is not None else []
        if ctx.measure:
            records += _kernel_records(ctx, notes)
        notes.append("the paper's speedups are for Mixtral-8x7B (EP4xTP2 on 8 H100, EP4xTP4 on 2x8 H200) only; other "
                     "models' rows have no paper number to compare with")
        return SuiteResult(records=records, notes=[n for n in notes if n], figures=figures)


SUITE = MoETunerSuite()
