"""The suite protocol and how suites are found (built-ins plus the ``hwsim.suites`` entry points)."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import import_module, metadata
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from rich.console import Console

from hwsim.engine import Tracer
from hwsim.errors import SuiteError
from hwsim.hardware import Hardware
from hwsim.records import Record

ENTRY_POINT_GROUP = "hwsim.suites"

# Suites that ship with hwsim, found even when the package is imported from a source tree
# without being installed (entry points exist only after installation).
BUILTIN_SUITES: dict[str, str] = {
    "kernels-basic": "suites.kernels_basic:SUITE",
    "t3": "suites.t3:SUITE",
    "flover": "suites.flover:SUITE",
    "spatten": "suites.spatten:SUITE",
}


@dataclass
class SuiteContext:
    """What a run asks of a suite."""

    hardware: Hardware | None
    measure: bool = False
    quick: bool = False
    seed: int = 0
    tracer: Tracer | None = None
    console: Console = field(default_factory=lambda: Console(stderr=False))
    figures_dir: Path | None = None


@dataclass
class SuiteResult:
    records: list[Record]
    notes: list[str] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)


@runtime_checkable
class Suite(Protocol):
    name: str
    description: str
    default_hardware: str

    def run(self, ctx: SuiteContext) -> SuiteResult: ...


def _load(target: str, origin: str) -> Suite:
    module_name, _, attribute = target.partition(":")
    try:
        obj: Any = getattr(import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise SuiteError(f"suite from {origin} ({target}) cannot be loaded: {exc}") from None
    if not isinstance(obj, Suite):
        raise SuiteError(f"{target} from {origin} is not a suite (needs name, description, default_hardware, run)")
    return obj


def suite_targets() -> dict[str, tuple[str, str]]:
    """name -> (import target, where it came from)."""
    found = {name: (target, "hwsim") for name, target in BUILTIN_SUITES.items()}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        origin = ep.dist.name if ep.dist is not None else "entry point"
        if ep.name not in found or found[ep.name][0] != ep.value:
            found[ep.name] = (ep.value, origin)
    return dict(sorted(found.items()))


def get_suite(name: str) -> Suite:
    targets = suite_targets()
    if name not in targets:
        raise SuiteError(f"unknown suite {name!r}; known: {', '.join(targets)}")
    target, origin = targets[name]
    return _load(target, origin)
