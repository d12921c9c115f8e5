"""Records survive a round trip, bad files are named, and compare lists every row."""

from __future__ import annotations

import json

import pytest

from hwsim.errors import RecordsError
from hwsim.fileio import write_json_atomic
from hwsim.records import Provenance, Record, read_results, write_results
from suites.compare import compare, render


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
    text = render(compare([rec(value=1.5), rec(value=1.0, source="measured")]), fmt)
    if fmt == "json":
        data = json.loads(text)
        assert data["summary"]["worst_abs_rel_error"] == pytest.approx(0.5)
    elif fmt == "csv":
        assert text.splitlines()[1].endswith(",0.5")
    else:
        assert "+50.0%" in text and "median |rel error|: 50.0%" in text
