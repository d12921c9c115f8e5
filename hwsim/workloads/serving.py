"""Request streams for serving simulations: synthetic arrivals and the Azure LLM trace.

Every random draw comes from a ``numpy.random.Generator`` the caller passes in, so one seed gives
one stream. The trace loader parses plain CSV (no pickle) and names the line of any bad row.
"""

from __future__ import annotations

import csv
import datetime as _dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hwsim.workloads.decoders import WorkloadError


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


def make_requests(arrivals_s: Sequence[float], prompt_tokens: int | Sequence[int],
                  gen_tokens: int | Sequence[int]) -> list[Request]:
    """Zip arrivals with (scalar or per-request) prompt and generation lengths."""
    n = len(arrivals_s)
    prompts = np.broadcast_to(np.asarray(prompt_tokens), (n,))
    gens = np.broadcast_to(np.asarray(gen_tokens), (n,))
    return [Request(i, float(a), int(p), int(g)) for i, (a, p, g) in enumerate(zip(arrivals_s, prompts, gens))]


def _positive_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise WorkloadError(f"{name} must be an integer >= 1, got {value!r}")


# ---------------------------------------------------------------------------------------------
# Azure LLM Inference Dataset 2023, conversation trace (Azure/AzurePublicDataset,
# data/AzureLLMInferenceTrace_conv.csv, CC-BY-4.0): TIMESTAMP, ContextTokens, GeneratedTokens.

AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")


def _timestamp_s(text: str) -> tuple[int, float]:
    """'YYYY-MM-DD HH:MM:SS[.fraction]' to (whole seconds since 0001-01-01, fraction): kept apart so
    that the 7 fractional digits survive (a float of ~6e10 s keeps only ~1e-5 s)."""
    day, clock = text.strip().split(" ")
    year, month, dom = (int(x) for x in day.split("-"))
    whole, _, fraction = clock.partition(".")
    hours, minutes, seconds = (int(x) for x in whole.split(":"))
    if not (0 <= hours < 24 and 0 <= minutes < 60 and 0 <= seconds < 61) or (fraction and not fraction.isdigit()):
        raise ValueError(text)
    ordinal = _dt.date(year, month, dom).toordinal()
    frac = int(fraction) / 10 ** len(fraction) if fraction else 0.0
    return ordinal * 86400 + hours * 3600 + minutes * 60 + seconds, frac


def load_azure_trace(path: str | Path, limit: int | None = None) -> list[Request]:
    """Requests of the Azure conversation trace, arrivals shifted so the first is at 0.

    A row that does not parse (wrong column count, bad timestamp, a length that is not a positive
    integer) is an error naming the file and its line number. Rows are sorted by arrival (stable).
    """
    path = Path(path)
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise WorkloadError(f"{path}: cannot read trace ({exc.strerror})") from None
    rows: list[tuple[tuple[int, float], int, int]] = []
    with handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != AZURE_COLUMNS:
            raise WorkloadError(f"{path}: line 1: expected header {','.join(AZURE_COLUMNS)}, got {header!r}")
        for row in reader:
            line = reader.line_num
            if limit is not None and len(rows) >= limit:
                break
            if not row:
                continue
            if len(row) != 3:
                raise WorkloadError(f"{path}: line {line}: expected 3 fields, got {len(row)}: {row!r}")
            try:
                arrival = _timestamp_s(row[0])
            except ValueError:
                raise WorkloadError(f"{path}: line {line}: bad TIMESTAMP {row[0]!r}") from None
            lengths = []
            for column, text in zip(AZURE_COLUMNS[1:], row[1:]):
                text = text.strip()
                if not text.isdigit() or int(text) < 1:
                    raise WorkloadError(f"{path}: line {line}: {column} must be a positive integer, got {text!r}")
                lengths.append(int(text))
            rows.append((arrival, lengths[0], lengths[1]))
    if not rows:
        raise WorkloadError(f"{path}: no requests")
    rows.sort(key=lambda r: r[0])
    (whole0, frac0) = rows[0][0]
    return [Request(i, (w - whole0) + (f - frac0), p, g) for i, ((w, f), p, g) in enumerate(rows)]


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
