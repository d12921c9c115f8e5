"""Traces from any source, and a serving simulator that survives real traffic (issue 14)."""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.errors import WorkloadError
from hwsim.hardware import load_hardware
from hwsim.suites.cli import main
from hwsim.systems.flover import FloverFusion
from hwsim.systems.serving import (
    ConcurrentInstances,
    ContinuousPaged,
    DynamicBatching,
    ServingConfig,
    StaticBatching,
    instance_count,
    route,
    simulate,
    simulate_replicas,
)
from hwsim.systems.serving.run import ServingRun
from hwsim.workloads.decoders import get_model
from hwsim.workloads.serving import (
    Request,
    detect_trace_format,
    load_trace,
    split_by_context,
)

DATA = Path(__file__).parent / "data"
HW = load_hardware("a100-sxm")
GPTJ = get_model("gpt-j-6b")
SAMPLES = {"azure_2023_conv_sample.csv": ("azure", 40), "azure_2024_code_sample.csv": ("azure", 30),
           "mooncake_sample.jsonl": ("mooncake", 25), "mooncake_long_context_sample.jsonl": ("mooncake", 60),
           "plain_sample.csv": ("csv", 20), "plain_sample.jsonl": ("jsonl", 20)}


def every_scheduler():
    return [ConcurrentInstances(), ConcurrentInstances(shared_weights=True), StaticBatching(),
            DynamicBatching(0.05, 16), FloverFusion(reorder=False), FloverFusion(), ContinuousPaged()]


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_sample_format_is_detected_and_loads(name):
    fmt, count = SAMPLES[name]
    path = DATA / name
    assert detect_trace_format(path, path.read_text()) == fmt
    reqs = load_trace(path)
    assert len(reqs) == count and reqs[0].arrival_s == 0.0
    assert all(a.arrival_s <= b.arrival_s for a, b in itertools.pairwise(reqs))
    assert load_trace(path, fmt) == reqs  # given explicitly: the same


def test_timestamps_of_each_format():
    azure23 = load_trace(DATA / "azure_2023_conv_sample.csv")
    assert azure23[1].arrival_s == pytest.approx(4.314579, abs=1e-7)  # 18:15:50.9951690 - 18:15:46.6805900
    assert (azure23[1].prompt_tokens, azure23[1].gen_tokens, azure23[1].line) == (396, 109, 3)
    azure24 = load_trace(DATA / "azure_2024_code_sample.csv")
    assert azure24[1].arrival_s == pytest.approx(0.714755 - 0.009930, abs=1e-9)
    first = json.loads((DATA / "mooncake_sample.jsonl").read_text().splitlines()[1])
    mooncake = load_trace(DATA / "mooncake_sample.jsonl")
    assert mooncake[1].arrival_s == pytest.approx(first["timestamp"] / 1e3)  # milliseconds
    assert (mooncake[1].prompt_tokens, mooncake[1].gen_tokens) == (first["input_length"], first["output_length"])


def test_utc_offsets_are_honoured(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2024-05-10 01:00:00.5+01:00,5,6\n"
                    "2024-05-10 00:00:01.000000+00:00,7,8\n")
    reqs = load_trace(path)
    assert [(r.prompt_tokens, r.arrival_s) for r in reqs] == [(5, 0.0), (7, 0.5)]


def test_limit_and_time_scale():
    full = load_trace(DATA / "plain_sample.csv")
    short = load_trace(DATA / "plain_sample.csv", limit=5, time_scale=2.0)
    assert len(short) == 5
    assert [r.arrival_s for r in short] == pytest.approx([2 * r.arrival_s for r in full[:5]])


@pytest.mark.parametrize("fmt,header,row,field", [
    ("azure", "TIMESTAMP,ContextTokens,GeneratedTokens", "2023-11-16 18:15:52.1,0,3", "ContextTokens"),
    ("azure", "TIMESTAMP,ContextTokens,GeneratedTokens", "yesterday,12,3", "TIMESTAMP"),
    ("azure", "TIMESTAMP,ContextTokens,GeneratedTokens", "2023-11-16 18:15:52.1,12,x", "GeneratedTokens"),
    ("csv", "arrival_s,prompt_tokens,gen_tokens", "nan,5,5", "arrival_s"),
    ("csv", "arrival_s,prompt_tokens,gen_tokens", "1.0,5,inf", "gen_tokens"),
    ("mooncake", "", '{"timestamp": 5, "input_length": 3.5, "output_length": 4, "hash_ids": []}', "input_length"),
    ("mooncake", "", '{"timestamp": NaN, "input_length": 3, "output_length": 4}', "timestamp"),
    ("mooncake", "", '{"timestamp": 5, "input_length": 3}', "output_length"),
    ("jsonl", "", '{"arrival_s": -1, "prompt_tokens": 3, "gen_tokens": 4}', "arrival_s"),
])
def test_a_bad_row_names_file_line_and_field(tmp_path, fmt, header, row, field):
    good = {"azure": "2023-11-16 18:15:46.6805900,374,44", "csv": "0.5,3,4",
            "mooncake": '{"timestamp": 0, "input_length": 3, "output_length": 4, "hash_ids": [1]}',
            "jsonl": '{"arrival_s": 0, "prompt_tokens": 3, "gen_tokens": 4}'}[fmt]
    lines = ([header] if header else []) + [good, good, row]
    path = tmp_path / ("t.csv" if header else "t.jsonl")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(WorkloadError, match=rf"t\.(csv|jsonl):{len(lines)}: field {field}"):
        load_trace(path, fmt)
    with pytest.raises(WorkloadError, match=rf":{len(lines)}: field {field}"):
        load_trace(path)  # detected, same message


def test_an_unknown_format_and_an_unreadable_file_are_user_errors(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(WorkloadError, match="cannot tell the trace format"):
        load_trace(path)
    path.write_bytes(b"\x00\x01")
    with pytest.raises(WorkloadError, match="binary"):
        load_trace(path)


def test_requests_beyond_the_context_are_refused_and_counted():
    reqs = load_trace(DATA / "mooncake_long_context_sample.jsonl")
    served, refused = split_by_context(reqs, 32768)
    assert served and refused and len(served) + len(refused) == len(reqs)
    assert all(r.prompt_tokens + r.gen_tokens > 32768 and r.line >= 1 for r in refused)


def test_a_long_context_trace_replays_through_every_scheduler():
    served, _ = split_by_context(load_trace(DATA / "mooncake_long_context_sample.jsonl"), 32768)
    cfg = ServingConfig(GPTJ, HW, max_seq_tokens=32768)
    for scheduler in every_scheduler():
        result = simulate(served, cfg, scheduler)
        assert len(result.records) == len(served), scheduler.name
        assert result.peak_memory_bytes <= result.capacity_bytes * (1 + 1e-12), scheduler.name
        assert all(r.arrival_s <= r.first_token_s <= r.finish_s for r in result.records), scheduler.name


# A device with room for a few dozen KV pages beside GPT-J's weights: admission and growth collide often.
TIGHT = dataclasses.replace(HW, device=dataclasses.replace(
    HW.device, memory=dataclasses.replace(HW.device.memory, capacity_bytes=12.65e9)))


@settings(max_examples=120, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 0.5), st.integers(1, 700), st.integers(1, 480)), min_size=1, max_size=40))
def test_paged_capacity_is_never_exceeded(items):
    """Random arrivals and lengths: the paged scheduler never holds more pages than the device has and never
    raises (before the fix, admission read a stale page count and ran over capacity)."""
    t, reqs = 0.0, []
    for i, (gap, prompt, gen) in enumerate(items):
        t += gap
        reqs.append(Request(i, t, prompt, gen))
    cfg = ServingConfig(GPTJ, TIGHT, max_seq_tokens=2048)
    assert ServingRun(reqs, cfg).cost.kv_blocks() * cfg.block_tokens >= 700 + 480  # each request fits alone
    result = simulate(reqs, cfg, ContinuousPaged())
    assert len(result.records) == len(reqs)
    assert result.peak_memory_bytes <= result.capacity_bytes * (1 + 1e-12)


def test_a_request_larger_than_the_whole_cache_is_refused_before_the_run():
    cfg = ServingConfig(GPTJ, TIGHT, max_seq_tokens=2048)
    with pytest.raises(WorkloadError, match="request 1 .trace line 9.: 700 \\+ 500 tokens need more KV blocks"):
        simulate([Request(0, 0.0, 8, 8), Request(1, 0.0, 700, 500, line=9)], cfg, ContinuousPaged())


def test_fastertransformer_instances_are_limited_by_memory_and_requests_wait():
    cfg = ServingConfig(get_model("llama-13b"), HW, max_seq_tokens=520)
    reqs = [Request(i, 0.0, 8, 64) for i in range(8)]
    own = ServingRun(reqs, cfg)
    count, nbytes = instance_count(own, shared_weights=False)
    weights = own.cost.weight_bytes
    assert count == int(HW.device.memory.capacity_bytes // (weights + own.cost.slot_bytes)) == 3
    assert nbytes == pytest.approx(2 * weights + 3 * own.cost.slot_bytes)
    result = simulate(reqs, cfg, ConcurrentInstances())
    starts = sorted(r.start_s for r in result.records)
    assert result.instances == 3 and starts[:3] == [0.0] * 3 and starts[3] > 0  # the fourth waited
    shared = simulate(reqs, cfg, ConcurrentInstances(shared_weights=True))
    assert shared.instances > 8 and all(r.start_s == 0.0 for r in shared.records)


def test_instances_contend_per_iteration():
    """A short request beside a long one: with per-iteration flows the short one shares bandwidth only
    while it runs, then the long one speeds up again (one whole-generation flow per request would
    average the long one's rate over its whole life)."""
    cfg = ServingConfig(GPTJ, HW, max_seq_tokens=600)
    alone = simulate([Request(0, 0.0, 8, 400)], cfg, ConcurrentInstances()).records[0].latency_s
    pair = simulate([Request(0, 0.0, 8, 400), Request(1, 0.0, 8, 40)], cfg, ConcurrentInstances()).records
    short_alone = simulate([Request(1, 0.0, 8, 40)], cfg, ConcurrentInstances()).records[0].latency_s
    assert pair[1].latency_s > 1.3 * short_alone  # slowed while both run
    assert alone < pair[0].latency_s < alone + pair[1].latency_s  # slowed only while the short one ran


def test_replicas_split_the_load_by_a_named_router():
    reqs = [Request(i, 0.01 * i, 8, 100) for i in range(12)]
    parts = route(reqs, 3, "round-robin")
    assert [len(p) for p in parts] == [4, 4, 4]
    cfg = ServingConfig(GPTJ, HW, max_seq_tokens=600)
    one = simulate(reqs, cfg, FloverFusion())
    three = simulate_replicas(reqs, cfg, FloverFusion, 3, "least-tokens")
    assert len(three.records) == 12 and three.mean_latency_s < one.mean_latency_s  # smaller batches each
    with pytest.raises(WorkloadError, match="unknown router"):
        route(reqs, 2, "nearest")


def test_cli_reads_a_trace_and_a_failed_section_exits_1_with_the_file_written(tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = main(["suite", "run", "flover", "--quick", "--param", "sections=trace", "--param",
               f"trace={DATA / 'mooncake_sample.jsonl'}", "--param", "max_requests=10", "--out", str(out),
               "--format", "json"])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert any("mooncake_sample.jsonl" in t["title"] for part in (doc if isinstance(doc, list) else [doc])
               for t in part["tables"])
    rc = main(["suite", "run", "flover", "--quick", "--param", "sections=decode,trace", "--param",
               f"trace={DATA / 'mooncake_long_context_sample.jsonl'}", "--out", str(out)])
    assert rc == 1  # every request is over GPT-J's context: the trace section fails, decode still lands
    records = json.loads(out.read_text())["records"]
    assert any(r["case"].get("section") == "decode" for r in records)
    rc = main(["suite", "run", "flover", "--param", "trace_format=xml", "--out", str(out)])
    assert rc == 2
