"""The loader of SpAtten's released workload CSVs."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwsim.errors import WorkloadError
from hwsim.workloads.spatten_csv import COLUMNS, builtin_workload, load_spatten_csv

HEADER = ",".join(COLUMNS)
GOOD = "0,0,0,64.0,993,993,6,16,0.05,True,4,204,6,True,False,False,-1"


def write(tmp_path: Path, *lines: str) -> Path:
    p = tmp_path / "w.csv"
    p.write_text("\n".join(lines) + "\n")
    return p


def test_shipped_files_load_with_their_row_counts():
    small = builtin_workload("gpt2-small-wikitext2")
    medium = builtin_workload("gpt2-medium-wikitext2")
    assert len(small.rows) == 4608 and small.layers == 12 and small.heads_per_layer() == 12
    assert len(medium.rows) == 11328 and medium.layers == 24 and medium.heads_per_layer() == 16
    assert small.iterations == tuple(range(32))
    assert medium.rows[0].length == 993 and medium.rows[-1].length == 1024
    assert sum(r.requant for r in small.rows) == 323   # decided by the authors from real scores
    one = builtin_workload("small")
    assert len(one.rows) == 1 and one.rows[0].key_bits == -1


def test_config_line_and_summary_row_are_skipped(tmp_path):
    p = write(tmp_path, "configs/some.yml,,,,,,,,,,,,,,,,", HEADER, GOOD, "summary,,,,,,,,,,,,,,,,")
    w = load_spatten_csv(p)
    assert len(w.rows) == 1 and w.rows[0].line == 3 and w.rows[0].value_fetch == 204 and w.rows[0].requant


@pytest.mark.parametrize("bad, match", [
    ("0,0,0,64.0,993,abc,6,16,0.05,True,4,204,6,True,False,False,-1", "key_fetch_num"),
    ("0,0,0,64.0,993,993,6,16,0.05,maybe,4,204,6,True,False,False,-1", "if_requant"),
    ("0,0,0,64.0,993,993,6,16,0.05,True,4,995,6,True,False,False,-1", "value_fetch_num"),
    ("0,0,0,64.0,993,993,6,16", "fields"),
    ("0,0,0,64.0,993,993,40,16,0.05,True,4,204,6,True,False,False,-1", "quant_key_bit"),
])
def test_malformed_row_is_named_by_file_and_line(tmp_path, bad, match):
    p = write(tmp_path, "configs/x.yml,,,,,,,,,,,,,,,,", HEADER, GOOD, bad)
    with pytest.raises(WorkloadError, match=match) as err:
        load_spatten_csv(p)
    assert f"{p}:4:" in str(err.value)


def test_missing_header_column_repeated_row_and_binary_file(tmp_path):
    p = write(tmp_path, HEADER.replace(",topk", ""), GOOD)
    with pytest.raises(WorkloadError, match=r"w.csv:1: header lacks column\(s\) topk"):
        load_spatten_csv(p)
    p = write(tmp_path, HEADER, GOOD, GOOD)
    with pytest.raises(WorkloadError, match=r"w.csv:3: repeated"):
        load_spatten_csv(p)
    p.write_bytes(b"iteration_id\x00")
    with pytest.raises(WorkloadError, match="binary"):
        load_spatten_csv(p)
    with pytest.raises(WorkloadError, match="no header"):
        load_spatten_csv(write(tmp_path, "a,b,c"))
