"""Request streams for serving simulations: synthetic arrivals and real request traces (Azure, Mooncake, plain).

Every random draw comes from a ``numpy.random.Generator`` the caller passes in, so one seed gives
one stream. Trace loaders parse text (no pickle) and name the file, line and field of any bad row.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hwsim.errors import WorkloadError
from hwsim.fileio import read_text_file


@dataclass(frozen=True)
class Request:
    """One generation request: when it arrives, how long its prompt is, how many tokens it generates."""

    rid: int
    arrival_s: float
    prompt_tokens: int
    gen_tokens: int
    line: int = 0
    """Line of the trace file this request came from (0: not from a file), for messages."""

    def __post_init__(self) -> None:
        if not self.arrival_s >= 0 or self.prompt_tokens < 1 or self.gen_tokens < 1:
            raise WorkloadError(f"request {self.rid}: need arrival_s >= 0, prompt_tokens >= 1, gen_tokens >= 1, "
                                f"got {self.arrival_s}, {self.prompt_tokens}, {self.gen_tokens}")


def fixed_arrivals(n: int, gap_s: float) -> np.ndarray:
    """``n`` arrivals ``gap_s`` apart, the first at 0."""
    _positive_count("n", n)
    if not gap_s >= 0:
        raise WorkloadError(f"gap_s must be >= 0, got {gap_s!r}")
    return np.arange(n, dtype=float) * float(gap_s)


def poisson_arrivals(n: int, mean_gap_s: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` arrivals of a Poisson process with mean gap ``mean_gap_s``, the first at 0."""
    _positive_count("n", n)
    if not mean_gap_s > 0:
        raise WorkloadError(f"mean_gap_s must be > 0, got {mean_gap_s!r}")
    gaps = rng.exponential(mean_gap_s, size=n)
    gaps[0] = 0.0
    return np.cumsum(gaps)


def uniform_lengths(n: int, low: int, high: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` generation lengths uniform on the integers ``low..high`` (inclusive)."""
    _positive_count("n", n)
    if not 1 <= low <= high:
        raise WorkloadError(f"need 1 <= low <= high, got low={low}, high={high}")
    return rng.integers(low, high + 1, size=n)


def make_requests(arrivals_s: Sequence[float] | np.ndarray, prompt_tokens: int | Sequence[int] | np.ndarray,
                  gen_tokens: int | Sequence[int] | np.ndarray) -> list[Request]:
    """Zip arrivals with (scalar or per-request) prompt and generation lengths."""
    n = len(arrivals_s)
    prompts = np.broadcast_to(np.asarray(prompt_tokens), (n,))
    gens = np.broadcast_to(np.asarray(gen_tokens), (n,))
    return [Request(i, float(a), int(p), int(g)) for i, (a, p, g) in enumerate(zip(arrivals_s, prompts, gens))]


def _positive_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise WorkloadError(f"{name} must be an integer >= 1, got {value!r}")


# ---------------------------------------------------------------------------------------------
# Request traces. Formats (``fmt``), detected from the first line when not given:
#   azure     Azure LLM inference traces (Azure/AzurePublicDataset, CC-BY-4.0): header
#             TIMESTAMP,ContextTokens,GeneratedTokens; 2023 timestamps '2023-11-16 18:17:03.9799600',
#             2024 ones '2024-05-10 00:00:00.009930+00:00' (a UTC offset).
#   mooncake  Mooncake traces (kvcache-ai/Mooncake, FAST'25): JSON lines with ``timestamp`` in ms,
#             ``input_length``, ``output_length`` and ``hash_ids`` (prefix-cache block ids, unused here).
#   csv       any CSV with a header naming arrival_s, prompt_tokens and gen_tokens (other columns ignored).
#   jsonl     JSON lines with the keys arrival_s, prompt_tokens and gen_tokens.

AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
PLAIN_COLUMNS = ("arrival_s", "prompt_tokens", "gen_tokens")
MOONCAKE_KEYS = ("timestamp", "input_length", "output_length")
TRACE_FORMATS = ("auto", "azure", "mooncake", "csv", "jsonl")


def _timestamp_s(text: str) -> tuple[int, float]:
    """'YYYY-MM-DD HH:MM:SS[.fraction][+HH:MM|Z]' to (whole UTC seconds since 0001-01-01, fraction):
    kept apart so that the 7 fractional digits survive (a float of ~6e10 s keeps only ~1e-5 s)."""
    text = text.strip()
    offset_s = 0
    if text.endswith("Z"):
        text = text[:-1]
    elif len(text) > 6 and text[-6] in "+-" and text[-3] == ":":
        sign = 1 if text[-6] == "+" else -1
        oh, om = int(text[-5:-3]), int(text[-2:])
        if not (0 <= oh < 24 and 0 <= om < 60):
            raise ValueError(text)
        offset_s = sign * (oh * 3600 + om * 60)
        text = text[:-6]
    day, clock = text.split(" ")
    year, month, dom = (int(x) for x in day.split("-"))
    whole, _, fraction = clock.partition(".")
    hours, minutes, seconds = (int(x) for x in whole.split(":"))
    if not (0 <= hours < 24 and 0 <= minutes < 60 and 0 <= seconds < 61) or (fraction and not fraction.isdigit()):
        raise ValueError(text)
    ordinal = _dt.date(year, month, dom).toordinal()
    frac = int(fraction) / 10 ** len(fraction) if fraction else 0.0
    return ordinal * 86400 + hours * 3600 + minutes * 60 + seconds - offset_s, frac


def _bad(path: Path, line: int, field: str, why: str) -> WorkloadError:
    return WorkloadError(f"{path}:{line}: field {field}: {why}")


MAX_TOKEN_COUNT = 2**53  # assumption: far beyond any context; a larger count is a damaged row


def _count(path: Path, line: int, field: str, value: object) -> int:
    """A positive integer token count (an integral float such as 12.0 from JSON is accepted)."""
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            value = int(text)
        else:
            try:
                value = float(text)
            except ValueError:
                raise _bad(path, line, field, f"must be a positive integer, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(path, line, field, f"must be a positive integer, got {value!r}")
    if isinstance(value, int) and value > MAX_TOKEN_COUNT:  # hundreds of digits would overflow a float below
        raise _bad(path, line, field, f"must be at most {MAX_TOKEN_COUNT}, got {value}")
    if not math.isfinite(value) or value != int(value) or value < 1:
        raise _bad(path, line, field, f"must be a positive integer, got {value!r}")
    return int(value)


def _seconds(path: Path, line: int, field: str, value: object, scale: float = 1.0) -> float:
    """A finite, non-negative time (``scale`` converts its unit to seconds)."""
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise _bad(path, line, field, f"must be a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise _bad(path, line, field, f"must be a finite number >= 0, got {value!r}")
    return float(value) * scale


Row = tuple[tuple[int, float], int, int, int]  # ((whole s, fraction s), prompt, gen, line)


def _csv_rows(path: Path, text: str, fmt: str) -> list[Row]:
    lines = text.splitlines()
    reader = csv.reader(lines)
    header = [h.strip() for h in next(reader, [])]
    wanted = AZURE_COLUMNS if fmt == "azure" else PLAIN_COLUMNS
    missing = [c for c in wanted if c not in header]
    if missing:
        raise WorkloadError(f"{path}:1: header lacks {', '.join(missing)} (a {fmt} trace needs {','.join(wanted)}; "
                            f"got {','.join(header) or 'nothing'})")
    where = [header.index(c) for c in wanted]
    rows: list[Row] = []
    for row in reader:
        line = reader.line_num
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise WorkloadError(f"{path}:{line}: expected {len(header)} fields, got {len(row)}: {row!r}")
        cells = [row[i] for i in where]
        if fmt == "azure":
            try:
                arrival = _timestamp_s(cells[0])
            except (ValueError, OverflowError):  # a year with many digits overflows the date type
                raise _bad(path, line, "TIMESTAMP", f"not a timestamp: {cells[0]!r}") from None
        else:
            arrival = (0, _seconds(path, line, wanted[0], cells[0]))
        rows.append((arrival, _count(path, line, wanted[1], cells[1]), _count(path, line, wanted[2], cells[2]), line))
    return rows


def _json_rows(path: Path, text: str, fmt: str) -> list[Row]:
    keys = MOONCAKE_KEYS if fmt == "mooncake" else PLAIN_COLUMNS
    scale = 1e-3 if fmt == "mooncake" else 1.0  # Mooncake timestamps are milliseconds
    rows: list[Row] = []
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)  # NaN/Infinity parse as floats and fail the finite checks below
        except json.JSONDecodeError as exc:
            raise WorkloadError(f"{path}:{line}: not JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise WorkloadError(f"{path}:{line}: expected a JSON object, got {type(obj).__name__}")
        for key in keys:
            if key not in obj:
                raise _bad(path, line, key, "missing")
        if fmt == "mooncake" and "hash_ids" in obj and not isinstance(obj["hash_ids"], list):
            raise _bad(path, line, "hash_ids", f"must be a list of block ids, got {obj['hash_ids']!r}")
        arrival = _seconds(path, line, keys[0], obj[keys[0]], scale)
        rows.append(((0, arrival), _count(path, line, keys[1], obj[keys[1]]), _count(path, line, keys[2], obj[keys[2]]),
                     line))
    return rows


def detect_trace_format(path: str | Path, text: str) -> str:
    """The format of a trace from its first non-empty line (see the table above)."""
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    if first.startswith("{"):
        try:
            obj = json.loads(first)
        except json.JSONDecodeError as exc:
            raise WorkloadError(f"{path}:1: looks like JSON lines but is not JSON ({exc.msg})") from None
        return "mooncake" if isinstance(obj, dict) and "input_length" in obj else "jsonl"
    header = {h.strip() for h in first.split(",")}
    if set(AZURE_COLUMNS) <= header:
        return "azure"
    if set(PLAIN_COLUMNS) <= header:
        return "csv"
    raise WorkloadError(f"{path}:1: cannot tell the trace format from {first[:80]!r}; give one of "
                        f"{', '.join(TRACE_FORMATS[1:])} (trace_format=)")


def load_trace(path: str | Path, fmt: str = "auto", limit: int | None = None,
               time_scale: float = 1.0) -> list[Request]:
    """Requests of a trace file, sorted by arrival (stable), the first at 0; each keeps its line number.

    ``limit``: keep the first ``limit`` requests by arrival. ``time_scale``: multiply every arrival
    time (2 = half the request rate). A row that does not parse is an error naming ``file:line`` and
    the field; every number must be finite.
    """
    path = Path(path)
    if fmt not in TRACE_FORMATS:
        raise WorkloadError(f"unknown trace format {fmt!r}; choose one of {', '.join(TRACE_FORMATS)}")
    if not (math.isfinite(time_scale) and time_scale > 0):
        raise WorkloadError(f"time_scale must be a finite number > 0, got {time_scale!r}")
    if limit is not None and limit < 1:
        raise WorkloadError(f"max_requests must be >= 1, got {limit}")
    text = read_text_file(path, WorkloadError, "trace")
    if fmt == "auto":
        fmt = detect_trace_format(path, text)
    rows = _json_rows(path, text, fmt) if fmt in ("mooncake", "jsonl") else _csv_rows(path, text, fmt)
    if not rows:
        raise WorkloadError(f"{path}: no requests")
    rows.sort(key=lambda r: r[0])
    if limit is not None:
        rows = rows[:limit]
    (whole0, frac0) = rows[0][0]
    return [Request(i, ((w - whole0) + (f - frac0)) * time_scale, p, g, line)
            for i, ((w, f), p, g, line) in enumerate(rows)]


def load_azure_trace(path: str | Path, limit: int | None = None) -> list[Request]:
    """The Azure LLM inference trace (2023 or 2024 timestamps); see :func:`load_trace`."""
    return load_trace(path, "azure", limit)


def split_by_context(requests: Sequence[Request], max_context: int) -> tuple[list[Request], list[Request]]:
    """(requests whose prompt plus output fit ``max_context`` tokens, those that do not): a server
    refuses the latter (vLLM rejects a prompt over the model's length; here the whole sequence must fit)."""
    served = [r for r in requests if r.prompt_tokens + r.gen_tokens <= max_context]
    refused = [r for r in requests if r.prompt_tokens + r.gen_tokens > max_context]
    return served, refused


AZURE_CONV_TRACE = "traces/azure_llm_2023_conv.csv"
DATA_ENV = "HWSIM_DATA"


def find_data_file(relative: str) -> Path:
    """A data file: ``$HWSIM_DATA/<relative>``, else the copy shipped in this package, else
    ``shared/data/<relative>`` in the nearest parent of this checkout that has one."""
    import os

    tried = []
    root = os.environ.get(DATA_ENV)
    if root:
        tried.append(Path(root) / relative)
    tried.append(Path(__file__).resolve().parent / "data" / relative)
    for parent in Path(__file__).resolve().parents:
        tried.append(parent / "shared" / "data" / relative)
    for candidate in tried:
        if candidate.is_file():
            return candidate
    raise WorkloadError(f"data file {relative!r} not found; set {DATA_ENV} to the folder that holds it")
