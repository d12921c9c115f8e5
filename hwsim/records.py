"""One record type for every number hwsim produces, simulated or measured, and its files.

A number without its case, unit, hardware and provenance cannot be compared or trusted later,
so a :class:`Record` carries all of them, and results files are written atomically.
"""

from __future__ import annotations

import json
import math
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from hwsim.errors import RecordsError
from hwsim.fileio import read_text_file, write_json_atomic

SCHEMA = "hwsim.results/1"
Source = Literal["simulated", "measured", "paper"]
SOURCES: tuple[str, ...] = ("simulated", "measured", "paper")
"""simulated: a model's output; measured: a real kernel timed here; paper: a figure a paper reports
(the record's ``citation`` says where), kept as a record so ``hwsim compare --against paper`` can join it."""
TOLERANCE = 0.25
"""The project's one rule for agreement: |value - reference| <= 25% of |reference| (see :func:`within_tolerance`)."""
CaseValue = str | int | float | bool
_TRACKED_PACKAGES = ("hwsim", "numpy", "numba", "simpy", "pulp", "cupy", "cupy-cuda12x", "cupy-cuda13x")


@dataclass(frozen=True)
class Provenance:
    """Where and when a number was made: enough to rerun it or to distrust it."""

    created_utc: str
    host: str
    platform: str
    python: str
    git_commit: str
    packages: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def collect(cls) -> Provenance:
        packages = {}
        for name in _TRACKED_PACKAGES:
            try:
                packages[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                continue
        return cls(
            created_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            host=socket.gethostname(),
            platform=f"{platform.system()} {platform.machine()} {platform.processor() or ''}".strip(),
            python=sys.version.split()[0],
            git_commit=_git_commit(),
            packages=packages,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"created_utc": self.created_utc, "host": self.host, "platform": self.platform,
                "python": self.python, "git_commit": self.git_commit, "packages": dict(self.packages)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Provenance:
        """Lenient: provenance is informational, so a field of the wrong type is kept as text, never fatal."""
        packages = data.get("packages")
        return cls(**{k: str(data.get(k, "")) for k in ("created_utc", "host", "platform", "python", "git_commit")},
                   packages={str(k): str(v) for k, v in packages.items()} if isinstance(packages, dict) else {})


def _git_commit() -> str:
    """The commit of the hwsim checkout in use, '+dirty' if it has local changes; 'unknown' outside git."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], check=False, cwd=here, capture_output=True, text=True,
                                timeout=5)
        if commit.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], check=False, cwd=here,
                               capture_output=True, text=True, timeout=5)
        return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@dataclass(frozen=True)
class Record:
    """One number: ``value`` ``unit`` of ``metric`` for one case of one suite."""

    suite: str
    case: Mapping[str, CaseValue]
    metric: str
    value: float
    unit: str
    source: Source
    hardware: str
    provenance: Provenance | None = None
    note: str = ""
    citation: str = ""
    """For ``source='paper'``: where the figure is printed (paper, figure or table)."""

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise RecordsError(
                f"record {self.suite}/{self.metric}: source must be one of {SOURCES}, got {self.source!r}")
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float)) or not math.isfinite(self.value):
            raise RecordsError(f"record {self.suite}/{self.case_key}/{self.metric}: value must be a finite number, "
                               f"got {self.value!r}")

    @property
    def case_key(self) -> str:
        """Canonical text of the case parameters: the join key with suite and metric."""
        return ",".join(f"{k}={_format_case_value(v)}" for k, v in sorted(self.case.items()))

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.suite, self.case_key, self.metric)

    def to_dict(self, *, with_provenance: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {"suite": self.suite, "case": dict(self.case), "metric": self.metric,
                                "value": self.value, "unit": self.unit, "source": self.source,
                                "hardware": self.hardware}
        if self.note:
            data["note"] = self.note
        if self.citation:
            data["citation"] = self.citation
        if with_provenance and self.provenance is not None:
            data["provenance"] = self.provenance.to_dict()
        return data


def relative_error(value: float, reference: float) -> float | None:
    """(value - reference) / |reference|; None when the reference is zero."""
    return None if reference == 0 else (value - reference) / abs(reference)


def within_tolerance(value: float, reference: float, tolerance: float = TOLERANCE) -> bool:
    """The one "within ±25%" rule every suite and ``compare`` use: relative to the reference."""
    error = relative_error(value, reference)
    return error is not None and abs(error) <= tolerance


def _format_case_value(value: CaseValue) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


_RECORD_FIELDS: dict[str, type | tuple[type, ...]] = {
    "suite": str, "case": dict, "metric": str, "value": (int, float), "unit": str, "source": str, "hardware": str}


def record_from_dict(data: Any, where: str, default: Provenance | None = None) -> Record:
    if not isinstance(data, dict):
        raise RecordsError(f"{where}: expected an object, got {type(data).__name__}")
    for name, kind in _RECORD_FIELDS.items():
        if name not in data:
            raise RecordsError(f"{where}: field '{name}' missing")
        if not isinstance(data[name], kind) or isinstance(data[name], bool):
            raise RecordsError(f"{where}: field '{name}' has value {data[name]!r} of the wrong type")
    for k, v in data["case"].items():
        if not isinstance(v, (str, int, float, bool)):
            raise RecordsError(f"{where}: field 'case.{k}' must be a string, number or boolean, got {v!r}")
        if isinstance(v, float) and not math.isfinite(v):
            raise RecordsError(f"{where}: field 'case.{k}' must be finite, got {v!r}")
    try:
        value = float(data["value"])
    except OverflowError:  # an integer with hundreds of digits
        raise RecordsError(f"{where}: field 'value' is too large for a float") from None
    provenance = Provenance.from_dict(data["provenance"]) if isinstance(data.get("provenance"), dict) else default
    try:
        return Record(suite=data["suite"], case=data["case"], metric=data["metric"], value=value,
                      unit=data["unit"], source=data["source"], hardware=data["hardware"],
                      provenance=provenance, note=str(data.get("note", "")),
                      citation=str(data.get("citation", "")))
    except RecordsError as exc:
        raise RecordsError(f"{where}: {exc}") from None


def write_results(path: str | os.PathLike[str], records: Iterable[Record],
                  provenance: Provenance | None = None) -> Path:
    """Write records as one JSON document, atomically. Provenance shared by all records is stored once."""
    records = list(records)
    shared = provenance or next((r.provenance for r in records if r.provenance is not None), None)
    document = {
        "schema": SCHEMA,
        "provenance": shared.to_dict() if shared is not None else None,
        "records": [r.to_dict(with_provenance=r.provenance is not None and r.provenance != shared) for r in records],
    }
    return write_json_atomic(path, document)


MAX_RESULTS_BYTES = 1024**3  # a results file is a few MB; a larger one is the wrong file


def read_results(path: str | os.PathLike[str]) -> list[Record]:
    """Every record of a results file; any fault is one RecordsError naming the file (and the record)."""
    path = Path(path)
    text = read_text_file(path, RecordsError, "results file", MAX_RESULTS_BYTES)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordsError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except RecursionError:
        raise RecordsError(f"{path}: JSON nested too deeply to be a results file") from None
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        raise RecordsError(f"{path}: not an hwsim results file (expected schema {SCHEMA!r})")
    items = document.get("records")
    if not isinstance(items, list):
        raise RecordsError(f"{path}: field 'records' must be a list")
    shared = Provenance.from_dict(document["provenance"]) if isinstance(document.get("provenance"), dict) else None
    return [record_from_dict(item, f"{path}: records[{i}]", shared) for i, item in enumerate(items)]
