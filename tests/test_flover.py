"""Flover serving simulator: the properties the issue's "Done means" asks for, and the mechanisms behind them."""

from __future__ import annotations

import dataclasses
import itertools
from collections import deque

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.hardware import load_hardware
from hwsim.systems.flover import (
    Active,
    BatchScheduler,
    ConcurrentInstances,
    ContinuousPaged,
    DynamicBatching,
    FloverFusion,
    StaticBatching,
    min_reorder_moves,
    reorder_slots,
    simulate,
)
from hwsim.systems.serving_cost import IterationCost, ServingConfig
from hwsim.workloads.decoders import WorkloadError, get_model
from hwsim.workloads.serving import (
    Request,
    load_azure_trace,
    make_requests,
    poisson_arrivals,
    uniform_lengths,
)

HW = load_hardware("a100-sxm")
GPTJ = ServingConfig(get_model("gpt-j-6b"), HW, tp=1, max_seq_tokens=600)


def all_schedulers(window_s: float = 0.05):
    return [ConcurrentInstances(), StaticBatching(), DynamicBatching(window_s, 8), FloverFusion(reorder=False),
            FloverFusion(reorder=True), ContinuousPaged()]


def lone_reference_s(cfg: ServingConfig, req: Request) -> float:
    """Prefill plus each decode iteration through the scalar roofline, one by one."""
    cost = IterationCost(cfg)
    decode = sum(cost.decode_time(1, req.prompt_tokens + 1 + j) for j in range(req.gen_tokens))
    return cost.prefill([req.prompt_tokens])[0] + decode


@pytest.mark.parametrize("cfg", [GPTJ, ServingConfig(get_model("llama-33b"), HW, tp=2, max_seq_tokens=600)],
                         ids=["gpt-j-tp1", "llama-33b-tp2"])
def test_lone_request_latency_is_the_sum_of_its_iterations(cfg):
    req = Request(0, 0.25, 37, 211)
    expected = lone_reference_s(cfg, req)
    for scheduler in all_schedulers(window_s=0.0):
        result = simulate([req], cfg, scheduler)
        (record,) = result.records
        assert record.latency_s == pytest.approx(expected, rel=1e-9), scheduler.name
        if scheduler.name != "concurrent":
            assert sum(s.duration_s for s in result.steps) == pytest.approx(record.latency_s, rel=1e-12)
            assert sum(s.iterations for s in result.steps) == result.iterations == req.gen_tokens


def test_far_apart_arrivals_give_every_scheduler_the_same_latencies():
    rng = np.random.default_rng(5)
    gens = uniform_lengths(6, 20, 300, rng)
    reqs = make_requests(np.arange(6) * 30.0, 8, gens)  # 30 s apart: each is long done before the next
    lone = [lone_reference_s(GPTJ, r) for r in reqs]
    window_s = 0.05
    for scheduler in all_schedulers(window_s):
        got = [r.latency_s for r in simulate(reqs, GPTJ, scheduler).records]
        # dynamic batching waits its window for company by definition; nothing else adds delay
        extra = window_s if scheduler.name == "dynamic" else 0.0
        assert got == pytest.approx([x + extra for x in lone], rel=1e-9), scheduler.name


def _bfs_min_moves(occupied: tuple[bool, ...]) -> int:
    """Fewest single moves (one item into one empty slot) to a contiguous arrangement, by search."""
    def contiguous(state):
        idx = [i for i, o in enumerate(state) if o]
        return not idx or idx[-1] - idx[0] + 1 == len(idx)
    seen, queue = {occupied}, deque([(occupied, 0)])
    while queue:
        state, depth = queue.popleft()
        if contiguous(state):
            return depth
        for src, dst in itertools.permutations(range(len(state)), 2):
            if state[src] and not state[dst]:
                nxt = list(state)
                nxt[src], nxt[dst] = False, True
                nxt = tuple(nxt)
                if nxt not in seen:
                    seen.add(nxt)
                    queue.append((nxt, depth + 1))
    raise AssertionError("unreachable")


@settings(max_examples=150, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=9))
def test_reordering_moves_exactly_the_minimum(occupied):
    slots = [f"r{i}" if o else None for i, o in enumerate(occupied)]
    before = {s for s in slots if s is not None}
    start, moves = reorder_slots(slots)
    assert len(moves) == min_reorder_moves(occupied) == _bfs_min_moves(tuple(occupied))
    assert {s for s in slots if s is not None} == before
    assert all(s is not None for s in slots[start:start + len(before)])


class _CheckedFlover(FloverFusion):
    """Flover that checks, at every eviction, that it moves no more slots than the minimum."""

    def retire(self, run, state, finished):
        occupied = [isinstance(s, Active) and not s.gone for s in self.slots[self.lo:self.hi]]
        moves_before = run.reorder_moves
        copied = super().retire(run, state, finished)
        self.checked = getattr(self, "checked", 0) + 1
        assert run.reorder_moves - moves_before == min_reorder_moves(occupied)
        return copied


def test_flover_moves_the_minimum_in_a_run_and_pays_for_each_copy():
    rng = np.random.default_rng(11)
    reqs = make_requests(poisson_arrivals(40, 0.05, rng), 8, uniform_lengths(40, 16, 400, rng))
    sched = _CheckedFlover(reorder=True)
    result = simulate(reqs, GPTJ, sched)
    assert sched.checked > 5 and result.reorder_moves > 0
    copies = [s for s in result.steps if s.kind == "reorder"]
    assert len(copies) > 0 and all(s.duration_s > 0 for s in copies)


def test_holes_stay_computed_without_reordering_and_are_closed_with_it():
    # A (long) in slot 0, B (short) in slot 1, C (long) in slot 2: B's finish leaves a hole in the middle
    reqs = [Request(0, 0.0, 8, 100), Request(1, 0.0, 8, 10), Request(2, 0.0, 8, 100)]
    kv_per_token = IterationCost(GPTJ).kv_bytes_per_token
    plain = simulate(reqs, GPTJ, FloverFusion(reorder=False))
    fused = simulate(reqs, GPTJ, FloverFusion(reorder=True))
    late = lambda result: {s.rows for s in [x for x in result.steps if x.kind == "decode"][1:]}
    assert late(plain) == {3} and late(fused) == {2}
    assert plain.reorder_moves == 0 and fused.reorder_moves == 1
    assert fused.reorder_bytes == pytest.approx((8 + 10) * kv_per_token)  # C's KV when B finished
    assert fused.records[2].latency_s < plain.records[2].latency_s


def test_memory_capacity_is_never_exceeded_and_does_bind():
    small = dataclasses.replace(HW, device=dataclasses.replace(
        HW.device, memory=dataclasses.replace(HW.device.memory, capacity_bytes=14e9)))
    cfg = ServingConfig(get_model("gpt-j-6b"), small, tp=1, max_seq_tokens=1200)
    cost = IterationCost(cfg)
    rng = np.random.default_rng(2)
    reqs = make_requests(poisson_arrivals(60, 0.01, rng), rng.integers(8, 400, 60), uniform_lengths(60, 50, 700, rng))
    for scheduler in all_schedulers():
        result = simulate(reqs, cfg, scheduler)
        assert result.peak_memory_bytes <= result.capacity_bytes, scheduler.name
        if scheduler.name != "concurrent":
            assert max(s.rows for s in result.steps) <= (cost.slots() if scheduler.name != "continuous-paged"
                                                         else len(reqs))
    paged = simulate(reqs, cfg, ContinuousPaged())
    assert paged.peak_memory_bytes > 0.9 * paged.capacity_bytes
    assert any(r.preemptions > 0 for r in paged.records)  # memory ran out and was handled by preemption


def test_same_seed_gives_identical_records():
    def run(seed):
        rng = np.random.default_rng(seed)
        reqs = make_requests(poisson_arrivals(24, 0.1, rng), 8, uniform_lengths(24, 32, 256, rng))
        return [simulate(reqs, GPTJ, s).records for s in (FloverFusion(), ContinuousPaged(), ConcurrentInstances())]
    assert run(3) == run(3)
    assert run(3) != run(4)


def test_concurrent_instances_contend_for_hbm_through_the_engine():
    reqs = [Request(0, 0.0, 8, 200), Request(1, 0.0, 8, 200)]
    cost = IterationCost(GPTJ)
    dec_s, dec_bytes = cost.lone_decode(8, 200)
    pre_s, pre_flops = cost.prefill([8])
    hbm_rate = HW.device.memory.bandwidth_bytes_per_s * HW.device.efficiency.memory_max
    cmp_rate = HW.device.peak("fp16") * HW.device.efficiency.compute_max
    pre_each_s = max(pre_s, 2 * pre_flops / cmp_rate)
    dec_each_s = max(dec_s, 2 * dec_bytes / hbm_rate)  # two flows, each capped at its lone rate
    assert dec_each_s > 1.5 * dec_s  # the case is memory-bound: sharing must show
    result = simulate(reqs, GPTJ, ConcurrentInstances())
    for record in result.records:
        assert record.latency_s == pytest.approx(pre_each_s + dec_each_s, rel=1e-9)


def test_decode_time_is_nearly_flat_in_batch_while_weights_dominate():
    cost = IterationCost(GPTJ)
    t1, t32 = cost.decode_time(1, 128), cost.decode_time(32, 32 * 128)
    assert t32 < 1.5 * t1  # weights read once per iteration: batching is almost free
    kv = np.array([10.0, 1e3, 1e5, 3e6])
    warm = dataclasses.replace(HW, device=dataclasses.replace(HW.device, sram_bandwidth_bytes_per_s=5e12))
    for c in (cost, IterationCost(ServingConfig(GPTJ.model, warm))):  # vectorised == scalar roofline, on-chip rule too
        assert c.decode_times(16, kv) == pytest.approx([c.decode_time(16, int(k)) for k in kv], rel=1e-12)
        times, nbytes = c.decode_profile(16, kv)  # the one-pass form the instances use
        assert times == pytest.approx(c.decode_times(16, kv), rel=1e-14)
        assert nbytes == pytest.approx(c.decode_bytes(16, kv), rel=1e-14)


class AtMostTwo(BatchScheduler):
    """A user's scheduler, written outside the simulator: fuse, but never more than two requests."""

    name = "at-most-two"

    def admit(self, run, state, now_s):
        take = state.waiting[: max(0, 2 - len(state.live))]
        del state.waiting[: len(take)]
        return take

    def stop_on_arrival(self, state):
        return len(state.live) < 2


class ShortestFirst(FloverFusion):
    """Another user's scheduler: Flover with shortest-generation-first admission."""

    def admit(self, run, state, now_s):
        state.waiting.sort(key=lambda r: self.waiting_request(r).gen_tokens)
        return super().admit(run, state, now_s)


def test_a_user_scheduler_is_a_class_outside_the_simulator():
    reqs = make_requests([0.0, 0.0, 0.0, 0.0], 8, [300, 300, 20, 20])
    capped = simulate(reqs, GPTJ, AtMostTwo())
    assert capped.scheduler == "at-most-two"
    assert max(s.rows for s in capped.steps) == 2
    assert capped.records[2].start_s > 0  # the third request had to wait for a free place
    small = ServingConfig(GPTJ.model, HW, max_seq_tokens=600, max_slots=2)
    fcfs = simulate(reqs, small, FloverFusion())
    sjf = simulate(reqs, small, ShortestFirst())
    assert sjf.records[2].finish_s < fcfs.records[2].finish_s
    assert sjf.mean_latency_s < fcfs.mean_latency_s


def test_azure_trace_loads_and_rejects_a_bad_row_with_its_line(tmp_path):
    good = tmp_path / "t.csv"
    good.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                    "2023-11-16 18:15:46.6805900,374,44\n2023-11-16 18:15:50.9951690,396,109\n")
    reqs = load_azure_trace(good)
    assert [(r.prompt_tokens, r.gen_tokens) for r in reqs] == [(374, 44), (396, 109)]
    assert reqs[1].arrival_s - reqs[0].arrival_s == pytest.approx(4.314579, abs=1e-6)
    for bad_row in ("2023-11-16 18:15:52.1,12\n", "2023-11-16 18:15:52.1,12,x\n", "yesterday,12,3\n",
                    "2023-11-16 18:15:52.1,0,3\n"):
        bad = tmp_path / "bad.csv"
        bad.write_text(good.read_text() + bad_row)
        with pytest.raises(WorkloadError, match=r"bad\.csv:4: "):
            load_azure_trace(bad)


def test_a_model_that_does_not_fit_is_a_user_error():
    with pytest.raises(WorkloadError, match="does not fit"):
        IterationCost(ServingConfig(get_model("llama-65b"), HW, tp=1))
    with pytest.raises(WorkloadError, match="shorter than the longest"):
        simulate([Request(0, 0.0, 8, 700)], GPTJ, FloverFusion())
