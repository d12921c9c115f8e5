"""Records survive a round trip, bad files are named, and compare lists every row."""

from __future__ import annotations

import json

import pytest

from hwsim.errors import RecordsError
from hwsim.fileio import write_json_atomic
from hwsim.records import Provenance, Record, read_results, write_results
from hwsim.suites.compare import compare, to_csv, to_json, to_table
from hwsim.suites.render import render_document


def rec(metric="time", value=1.0, source="simulated", **case):
    return Record("toy", case or {"n": 1}, metric, value, "s", source, "cpu")


def test_round_trip_keeps_every_field(tmp_path):
    prov = Provenance.collect()
    records = [rec(value=2.5, n=4, dtype="fp32"), rec(source="measured", value=3.0, n=4, dtype="fp32")]
    records = [Record(r.suite, r.case, r.metric, r.value, r.unit, r.source, r.hardware, prov) for r in records]
    path = write_results(tmp_path / "r.json", records)
    again = read_results(path)
    assert again == records
    assert again[0].case_key == "dtype=fp32,n=4"
    assert prov.python and prov.created_utc


def test_record_rejects_nonfinite_and_bad_source():
    with pytest.raises(RecordsError, match="finite"):
        rec(value=float("nan"))
    with pytest.raises(RecordsError, match="source must be one of"):
        rec(source="guessed")


def test_unreadable_files_are_named(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(RecordsError, match=r"bad.json: not valid JSON \(line 1"):
        read_results(bad)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"schema": "hwsim.results/1", "records": [{"suite": "x"}]}))
    with pytest.raises(RecordsError, match=r"wrong.json: records\[0\]: field 'case' missing"):
        read_results(wrong)
    with pytest.raises(RecordsError, match="cannot read"):
        read_results(tmp_path / "absent.json")


def test_a_failed_write_leaves_the_old_file_whole(tmp_path):
    path = write_results(tmp_path / "r.json", [rec()])
    before = path.read_text()
    with pytest.raises(ValueError):
        write_json_atomic(path, {"value": float("nan")})
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_compare_joins_and_lists_one_sided_rows():
    records = [rec(value=1.1, n=1), rec(value=1.0, source="measured", n=1),
               rec(value=3.0, n=2), rec(value=4.0, source="measured", n=2),
               rec(value=9.0, n=3), rec(value=7.0, source="measured", n=4)]
    c = compare(records)
    assert len(c.joined) == 2
    assert [r.case for r in c.only_simulated] == ["n=3"]
    assert [r.case for r in c.only_measured] == ["n=4"]
    assert c.median_abs_rel_error == pytest.approx((0.1 + 0.25) / 2)
    assert c.worst.case == "n=2" and c.worst.rel_error == pytest.approx(-0.25)


def test_compare_refuses_conflicting_duplicates():
    with pytest.raises(RecordsError, match="two measured values"):
        compare([rec(value=1.0, source="measured"), rec(value=2.0, source="measured")])
    # identical duplicates (the same file given twice) are harmless
    assert len(compare([rec(), rec()]).rows) == 1


@pytest.mark.parametrize("fmt", ["markdown", "csv", "json"])
def test_every_format_carries_the_error(fmt):
    c = compare([rec(value=1.5), rec(value=1.0, source="measured")])
    text = {"json": to_json, "csv": to_csv}.get(fmt, lambda c: render_document([to_table(c)], "markdown"))(c)
    if fmt == "json":
        data = json.loads(text)
        assert data["summary"]["worst_abs_rel_error"] == pytest.approx(0.5)
        assert data["rows"][0]["within_tolerance"] is False
    elif fmt == "csv":
        assert text.splitlines()[1].endswith(",0.5,False")
    else:
        assert "+50.0%" in text and "median |rel error|: 50.0%" in text


def test_paper_records_join_against_paper_with_the_one_tolerance_rule():
    paper = Record("toy", {"n": 1}, "time", 1.2, "s", "paper", "cpu", citation="Toy'24 Fig. 3")
    records = [rec(value=1.0), rec(value=0.5, source="measured"), paper]
    vs_paper = compare(records, against="paper")
    assert vs_paper.against == "paper"
    (row,) = vs_paper.rows
    assert row.measured == 1.2 and row.within  # |1.0 - 1.2| / 1.2 = 16.7% <= 25%
    (row,) = compare(records).rows  # the default reference is the measurement, which is 100% off
    assert row.measured == 0.5 and row.within is False
    assert "simulated vs paper" in render_document([to_table(vs_paper)], "markdown")


def test_paper_citation_round_trips(tmp_path):
    paper = Record("toy", {"n": 1}, "time", 1.2, "s", "paper", "cpu", citation="Toy'24 Fig. 3")
    write_results(tmp_path / "r.json", [paper])
    (back,) = read_results(tmp_path / "r.json")
    assert back.citation == "Toy'24 Fig. 3" and back.source == "paper"
