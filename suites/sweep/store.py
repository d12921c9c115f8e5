"""A sweep directory: one results file per finished case, one error file per failed case, a manifest.

::

    OUT/sweep.json                         what was asked: suite, seed, quick, every case and its file
    OUT/cases/<slug>--<hash>.json          a finished case's records (hwsim results file, atomic)
    OUT/cases/<slug>--<hash>.error.json    a failed case's error (removed when a rerun succeeds)
    OUT/results.json                       every finished case's records merged
    OUT/summary.md, OUT/<metric>.png       the table and figure of the chosen metric

A case counts as finished exactly when its results file exists: files are written whole or not
at all, so a sweep stopped at any moment resumes without redoing or trusting half a case.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwsim.fileio import read_text_file, write_json_atomic
from hwsim.records import Record, read_results, write_results
from hwsim.suites.sweep.grid import Case, Grid, SweepError
from hwsim.suites.sweep.worker import Outcome

MANIFEST_SCHEMA = "hwsim.sweep/1"


@dataclass(frozen=True)
class SweepDir:
    root: Path

    @property
    def cases_dir(self) -> Path:
        return self.root / "cases"

    @property
    def manifest(self) -> Path:
        return self.root / "sweep.json"

    @property
    def merged(self) -> Path:
        return self.root / "results.json"

    def result_path(self, case: Case) -> Path:
        return self.cases_dir / f"{case.file_stem}.json"

    def error_path(self, case: Case) -> Path:
        return self.cases_dir / f"{case.file_stem}.error.json"

    def is_done(self, case: Case) -> bool:
        return self.result_path(case).is_file()

    def remove_stale_temporaries(self) -> int:
        """Delete half-written temporaries a killed sweep left (``.<name>.json.*.tmp``); never a finished file."""
        if not self.cases_dir.is_dir():
            return 0
        stale = list(self.cases_dir.glob(".*.json.*.tmp"))
        for path in stale:
            path.unlink(missing_ok=True)
        return len(stale)

    def write_manifest(self, grid: Grid) -> None:
        write_json_atomic(self.manifest, {
            "schema": MANIFEST_SCHEMA, "suite": grid.suite, "grid": grid.path, "seed": grid.seed, "quick": grid.quick,
            "axes": list(grid.axes),
            "cases": [{"id": c.case_id, "file": self.result_path(c).name, "seed": c.seed, "params": dict(c.params)}
                      for c in grid.cases],
        })

    def write_outcome(self, case: Case, outcome: Outcome) -> None:
        if outcome.ok:
            write_results(self.result_path(case), outcome.records, outcome.provenance)
            self.error_path(case).unlink(missing_ok=True)
        else:
            assert outcome.error is not None
            write_json_atomic(self.error_path(case), {"case": dict(case.params), "id": case.case_id, "seed": case.seed,
                                                      "host": outcome.host, **outcome.error})

    def read_error(self, case: Case) -> dict[str, Any] | None:
        import json

        path = self.error_path(case)
        if not path.is_file():
            return None
        text = read_text_file(path, SweepError, "case error file", 64 * 1024 * 1024)
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise SweepError(f"{path}: unreadable error file ({exc})") from None
        return data if isinstance(data, dict) else None

    def records(self, grid: Grid) -> dict[str, list[Record]]:
        """case id -> records, for every finished case of the grid."""
        return {c.case_id: read_results(self.result_path(c)) for c in grid.cases if self.is_done(c)}


__all__ = ["MANIFEST_SCHEMA", "SweepDir"]
