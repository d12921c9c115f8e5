"""Loader for SpAtten's released per-(iteration, layer, head) workload CSVs.

Format (public repository mit-han-lab/spatten, ``spatten_hardware/hardware/workloads/*.csv``; the
columns are described in that repository's testbench ``spatten/sim/TestSpAtten.scala``, which
reads them by name): a header row naming the 17 columns below, one data row per attention request.
Some files begin with a line naming the training config and end with a summary row: lines before
the header, and rows whose fields after the first are all empty, are not data and are skipped.
Any other row that does not parse is an error naming ``file:line``.

Three files ship with hwsim (``hwsim/workloads/data/spatten/``, MIT licence); a user passes their
own with ``hwsim suite run spatten --param workload=PATH``.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from hwsim.errors import WorkloadError
from hwsim.fileio import read_text_file

__all__ = [
    "BUILTIN_FILES",
    "COLUMNS",
    "ReleasedWorkload",
    "WorkloadRow",
    "builtin_workload",
    "load_spatten_csv",
]

COLUMNS: tuple[str, ...] = (
    "iteration_id", "layer_id", "head_id", "embedding_length_D", "sentence_length_L", "key_fetch_num",
    "quant_key_bit", "quant_query_bit", "auto_requant_thres", "if_requant", "auto_requant_incre",
    "value_fetch_num", "quant_value_bit", "if_accumulate_importance", "if_rescale_previous_importance",
    "if_topk", "topk",
)

BUILTIN_FILES: dict[str, str] = {
    "gpt2-small-wikitext2": "summary-gpt2-small-wikitext2-per8.csv",
    "gpt2-medium-wikitext2": "summary-gpt2-medium-wikitext2-per0-hp-step5+dedic+glob_p+local_p+hp+topk+quant.csv",
    "small": "small.csv",
}
"""Shipped files by benchmark name (see ``hwsim/workloads/data/spatten/README.md``)."""

MAX_BYTES = 16 * 1024 * 1024  # the largest released file is 0.8 MB


@dataclass(frozen=True)
class WorkloadRow:
    """One released row as written (-1 means "full precision" for the bit columns, "none" for counts)."""

    iteration: int
    layer: int
    head: int
    head_dim: int
    length: int              # sentence_length_L: tokens so far
    key_fetch: int           # keys kept after cascade token pruning
    key_bits: int
    query_bits: int
    requant_threshold: float
    requant: bool            # progressive quantization re-fetched this head's LSBs (from real scores)
    requant_bits: int
    value_fetch: int         # values kept after local value pruning
    value_bits: int
    accumulate_importance: bool
    rescale_importance: bool
    topk: bool               # the top-k engine runs cascade token pruning before this layer
    topk_k: int
    line: int                # 1-based line in the file, for messages


@dataclass(frozen=True)
class ReleasedWorkload:
    """All rows of one file, in file order."""

    name: str
    path: str
    rows: tuple[WorkloadRow, ...]

    @property
    def iterations(self) -> tuple[int, ...]:
        return tuple(sorted({r.iteration for r in self.rows}))

    @property
    def layers(self) -> int:
        return 1 + max(r.layer for r in self.rows)

    def heads_per_layer(self) -> int:
        """The model's head count (the widest layer seen; pruned heads are absent from later layers)."""
        return 1 + max(r.head for r in self.rows)

    def iteration_rows(self, iteration: int) -> tuple[WorkloadRow, ...]:
        return tuple(r for r in self.rows if r.iteration == iteration)


def _int(text: str, column: str, where: str) -> int:
    try:
        value = float(text)  # head dim is written "64.0"
    except ValueError:
        raise WorkloadError(f"{where}: column {column!r} must be a number, got {text!r}") from None
    if not value.is_integer():
        raise WorkloadError(f"{where}: column {column!r} must be a whole number, got {text!r}")
    return int(value)


def _float(text: str, column: str, where: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise WorkloadError(f"{where}: column {column!r} must be a number, got {text!r}") from None


def _bool(text: str, column: str, where: str) -> bool:
    if text in ("True", "true", "1"):
        return True
    if text in ("False", "false", "0"):
        return False
    raise WorkloadError(f"{where}: column {column!r} must be True or False, got {text!r}")


def _bits(value: int, column: str, where: str) -> int:
    if value != -1 and not 1 <= value <= 32:
        raise WorkloadError(f"{where}: column {column!r} must be -1 (full precision) or 1..32, got {value}")
    return value


def _parse_row(fields: dict[str, str], where: str, line: int) -> WorkloadRow:
    g = fields.__getitem__
    row = WorkloadRow(
        iteration=_int(g("iteration_id"), "iteration_id", where),
        layer=_int(g("layer_id"), "layer_id", where),
        head=_int(g("head_id"), "head_id", where),
        head_dim=_int(g("embedding_length_D"), "embedding_length_D", where),
        length=_int(g("sentence_length_L"), "sentence_length_L", where),
        key_fetch=_int(g("key_fetch_num"), "key_fetch_num", where),
        key_bits=_bits(_int(g("quant_key_bit"), "quant_key_bit", where), "quant_key_bit", where),
        query_bits=_bits(_int(g("quant_query_bit"), "quant_query_bit", where), "quant_query_bit", where),
        requant_threshold=_float(g("auto_requant_thres"), "auto_requant_thres", where),
        requant=_bool(g("if_requant"), "if_requant", where),
        requant_bits=_int(g("auto_requant_incre"), "auto_requant_incre", where),
        value_fetch=_int(g("value_fetch_num"), "value_fetch_num", where),
        value_bits=_bits(_int(g("quant_value_bit"), "quant_value_bit", where), "quant_value_bit", where),
        accumulate_importance=_bool(g("if_accumulate_importance"), "if_accumulate_importance", where),
        rescale_importance=_bool(g("if_rescale_previous_importance"), "if_rescale_previous_importance", where),
        topk=_bool(g("if_topk"), "if_topk", where),
        topk_k=_int(g("topk"), "topk", where),
        line=line,
    )
    for name in ("iteration", "layer", "head"):
        if getattr(row, name) < 0:
            raise WorkloadError(f"{where}: {name} must be >= 0, got {getattr(row, name)}")
    if row.head_dim < 1:
        raise WorkloadError(f"{where}: embedding_length_D must be >= 1, got {row.head_dim}")
    if not 1 <= row.key_fetch <= row.length:
        raise WorkloadError(f"{where}: key_fetch_num must lie in [1, sentence_length_L={row.length}], got {row.key_fetch}")
    if not 1 <= row.value_fetch <= row.key_fetch:
        raise WorkloadError(f"{where}: value_fetch_num must lie in [1, key_fetch_num={row.key_fetch}], "
                            f"got {row.value_fetch}")
    if row.topk and not 1 <= row.topk_k <= row.length:
        raise WorkloadError(f"{where}: topk must lie in [1, sentence_length_L={row.length}] when if_topk, "
                            f"got {row.topk_k}")
    return row


def parse_spatten_csv(text: str, source: str, name: str = "") -> ReleasedWorkload:
    """Parse the text of a released workload file; ``source`` names it in messages."""
    lines = text.splitlines()
    header_at = None
    for i, line in enumerate(lines):
        if line.split(",", 1)[0].strip() == "iteration_id":
            header_at = i
            break
    if header_at is None:
        raise WorkloadError(f"{source}: no header row starting with 'iteration_id' (is this a SpAtten workload CSV?)")
    header = [c.strip() for c in next(csv.reader([lines[header_at]]))]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise WorkloadError(f"{source}:{header_at + 1}: header lacks column(s) {', '.join(missing)}")
    rows: list[WorkloadRow] = []
    reader = csv.reader(io.StringIO("\n".join(lines[header_at + 1:])))
    for offset, cells in enumerate(reader):
        lineno = header_at + 2 + offset
        if not cells or not any(c.strip() for c in cells):
            continue
        if not any(c.strip() for c in cells[1:]):  # a config-name or summary line: not data
            continue
        where = f"{source}:{lineno}"
        if len(cells) != len(header):
            raise WorkloadError(f"{where}: row has {len(cells)} fields, the header has {len(header)}")
        rows.append(_parse_row(dict(zip(header, (c.strip() for c in cells))), where, lineno))
    if not rows:
        raise WorkloadError(f"{source}: no data rows after the header")
    seen: set[tuple[int, int, int]] = set()
    for r in rows:
        key = (r.iteration, r.layer, r.head)
        if key in seen:
            raise WorkloadError(f"{source}:{r.line}: repeated (iteration, layer, head) = {key}")
        seen.add(key)
    return ReleasedWorkload(name=name or Path(source).stem, path=source, rows=tuple(rows))


def load_spatten_csv(path: str | Path, name: str = "") -> ReleasedWorkload:
    """Read and parse a released workload file (size, binary and encoding faults name the file)."""
    text = read_text_file(path, WorkloadError, "SpAtten workload CSV", max_bytes=MAX_BYTES)
    return parse_spatten_csv(text, str(path), name)


def builtin_workload(name: str) -> ReleasedWorkload:
    """A shipped workload by benchmark name (``gpt2-small-wikitext2``, ``gpt2-medium-wikitext2``, ``small``)."""
    if name not in BUILTIN_FILES:
        raise WorkloadError(f"unknown shipped SpAtten workload {name!r}; known: {', '.join(BUILTIN_FILES)}")
    ref = resources.files("hwsim.workloads").joinpath("data").joinpath("spatten").joinpath(BUILTIN_FILES[name])
    with resources.as_file(ref) as path:
        return load_spatten_csv(path, name)
