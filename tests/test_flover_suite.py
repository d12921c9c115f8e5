"""The flover suite's sections: registered, computed as data, paper figures as records, failures contained."""

from __future__ import annotations

import itertools

from hwsim.hardware import load_hardware
from hwsim.records import within_tolerance
from hwsim.suites import flover as F
from hwsim.suites.registry import SuiteContext, get_suite


def _ctx(**params) -> SuiteContext:
    return SuiteContext(hardware=None, quick=True, seed=1, params=params)


def test_suite_is_registered():
    assert get_suite("flover").name == "flover"


def test_speedup_falls_towards_one_as_arrivals_spread_out():
    out = F._Out([], "a100-sxm")
    rows: list = []
    F._gaps(_ctx(), load_hardware("a100-sxm"), out, rows)
    spans = [next(s.makespan for s in row if s.baseline == "concurrent") for _, row in rows]
    assert all(a > b for a, b in itertools.pairwise(spans))  # less overlap, less to fuse
    assert spans[0] > 5 and 0.95 < spans[-1] < 1.2
    lats = [s.mean_latency for _, row in rows for s in row]
    assert all(lat >= 0.99 for lat in lats)  # fusing never loses to concurrent instances here
    paper = {(r.case["gap_s"], r.metric): r for r in out.records if r.source == "paper"}
    assert {g for g, _ in paper} == set(F.GAPS_S)
    assert all(r.citation and r.case["baseline"] == "concurrent" for r in paper.values())
    # each paper record joins a simulated one with the same case and metric
    sim = {(r.case_key, r.metric) for r in out.records if r.source == "simulated"}
    assert all((r.case_key, r.metric) in sim for r in paper.values())
    # the table's verdicts are the one tolerance rule applied to the simulated and paper numbers
    (table,) = out.tables
    for row in table.rows:
        if row[1] == "concurrent":
            assert row[6] == within_tolerance(row[3], row[5]) and row[7] == within_tolerance(row[4], row[5])
        else:  # the paper has no shared-weights figure: no verdict
            assert row[5] is row[6] is row[7] is None


def test_instances_with_their_own_weights_are_few_and_shared_weights_many():
    out = F._Out([], "a100-sxm")
    F._models(_ctx(), load_hardware("a100-sxm"), out)
    count = {(r.case["model"], r.case["baseline"]): r.value for r in out.records if r.metric == "instances"}
    for model, _ in F.MODEL_TP:
        assert 1 <= count[model, "concurrent"] <= 6 < count[model, "concurrent-shared"]


def test_tables_are_data_and_the_suite_never_prints(capsys):
    result = get_suite("flover").run(_ctx(sections="decode,trace", trace="tests/data/azure_2023_conv_sample.csv"))
    assert capsys.readouterr().out == ""
    assert result.failed_sections == []
    assert result.tables and all(isinstance(c, (str, int, float, bool, type(None))) for t in result.tables
                                 for row in t.rows for c in row)
    assert any("azure_2023_conv_sample.csv" in t.title for t in result.tables)  # tables name the trace
    metrics = {r.metric for r in result.records if r.case.get("section") == "trace"}
    assert {"ttft_p50_s", "tpot_p99_s", "e2e_p99_s", "goodput_per_s", "refused_requests"} <= metrics


def test_a_failing_section_is_reported_and_the_others_land(monkeypatch):
    def broken(*_args, **_kwargs):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(F, "_reorder", broken)
    result = get_suite("flover").run(_ctx(sections="reorder,decode"))
    assert result.failed_sections == ["reorder"]
    assert any("section reorder failed: ZeroDivisionError: boom" in n for n in result.notes)
    assert any(r.case.get("section") == "decode" for r in result.records)


def _markdown_tables(text: str) -> list[list[list[str]]]:
    tables, current = [], []
    for line in text.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not set("".join(cells)) <= set("-:"):
                current.append(cells)
        elif current:
            tables.append(current)
            current = []
    return tables + ([current] if current else [])


def test_results_readme_verdicts_match_its_own_tables():
    from pathlib import Path

    readme = Path(__file__).resolve().parents[1] / "results" / "flover" / "README.md"
    checked = 0
    for table in _markdown_tables(readme.read_text(encoding="utf-8")):
        header, rows = table[0], table[1:]
        if "paper (x)" not in header:
            continue
        paper = header.index("paper (x)")
        for metric in ("makespan", "mean latency"):
            value, verdict = header.index(f"speedup ({metric}) (x)"), header.index(f"within ±25% ({metric})")
            for row in rows:
                if row[paper] == "—":
                    assert row[verdict] == "—"
                    continue
                assert row[verdict] == ("yes" if within_tolerance(float(row[value]), float(row[paper])) else "no"), row
                checked += 1
    assert checked == 2 * (len(F.MODEL_TP) + len(F.GAPS_S))
