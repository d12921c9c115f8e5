"""The suite protocol and how suites are found (built-ins plus the ``hwsim.suites`` entry points).

Lookup goes through :class:`hwsim.plugins.PluginRegistry`, the same loader (and clash rule) as the
placement solvers: a plug-in may not replace a built-in suite unless ``HWSIM_PLUGIN_REPLACE`` names it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from rich.console import Console

from hwsim.engine import Tracer
from hwsim.errors import SuiteError
from hwsim.hardware import Hardware
from hwsim.plugins import Entry, PluginRegistry, load_target
from hwsim.records import CaseValue, Record
from hwsim.suites.tables import Table

if TYPE_CHECKING:
    from hwsim.suites.catalog import SuiteInfo

ENTRY_POINT_GROUP = "hwsim.suites"

# Suites that ship with hwsim, found even when the package is imported from a source tree
# without being installed (entry points exist only after installation).
BUILTIN_SUITES: dict[str, str] = {
    "kernels-basic": "hwsim.suites.kernels_basic:SUITE",
    "t3": "hwsim.suites.t3:SUITE",
    "flover": "hwsim.suites.flover:SUITE",
    "spatten": "hwsim.suites.spatten:SUITE",
    "link-sharing": "hwsim.suites.link_sharing:SUITE",
    "moetuner": "hwsim.suites.moetuner:SUITE",
}


@dataclass
class SuiteContext:
    """What a run asks of a suite."""

    hardware: Hardware | None
    measure: bool = False
    quick: bool = False
    seed: int = 0
    tracer: Tracer | None = None
    console: Console = field(default_factory=lambda: Console(stderr=True))
    """Deprecated: suites return tables and notes and never print; kept (on stderr) for plug-ins written before."""
    figures_dir: Path | None = None
    params: Mapping[str, CaseValue] = field(default_factory=dict)
    """Knobs a caller (``hwsim sweep``, ``suite run --param``) sets; a suite reads the ones it declares
    in its optional ``parameters`` attribute, through :func:`resolve_params`. Empty: every default."""


@dataclass(frozen=True)
class Parameter:
    """One knob a suite accepts in ``ctx.params``: its default, a line of help, and its limits."""

    default: CaseValue
    help: str
    choices: tuple[CaseValue, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None

    def check(self, name: str, value: Any, where: str) -> CaseValue:
        """``value`` if it fits this parameter (an int is accepted where a float is expected), else a SuiteError."""
        kind = type(self.default)
        ok = isinstance(value, kind) and not (isinstance(value, bool) and kind is not bool)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            wanted = {int: "an integer", float: "a number", str: "text", bool: "true or false"}.get(kind, kind.__name__)
            raise SuiteError(f"{where}: parameter '{name}' has value {value!r}; expected {wanted}")
        if isinstance(value, float) and not math.isfinite(value):
            raise SuiteError(f"{where}: parameter '{name}' has value {value!r}; expected a finite number")
        if self.choices is not None and value not in self.choices:
            raise SuiteError(f"{where}: parameter '{name}' has value {value!r}; choose one of "
                             f"{', '.join(map(str, self.choices))}")
        if self.minimum is not None and value < self.minimum:  # type: ignore[operator]
            raise SuiteError(f"{where}: parameter '{name}' has value {value!r}; must be at least {self.minimum:g}")
        if self.maximum is not None and value > self.maximum:  # type: ignore[operator]
            raise SuiteError(f"{where}: parameter '{name}' has value {value!r}; must be at most {self.maximum:g}")
        return value  # type: ignore[no-any-return]


def suite_parameters(suite: Any) -> Mapping[str, Parameter]:
    """The parameters a suite declares (optional attribute ``parameters``); none for older suites."""
    return dict(getattr(suite, "parameters", None) or {})


def resolve_params(suite: Any, given: Mapping[str, Any], where: str = "") -> dict[str, CaseValue]:
    """Every declared parameter with its value: the given one, checked, or its default.

    A name the suite does not declare is an error, so a typo in a sweep grid never runs silently
    with the default.
    """
    declared = suite_parameters(suite)
    where = where or f"suite {getattr(suite, 'name', '?')}"
    for name in given:
        if name not in declared:
            known = ", ".join(declared) if declared else "none"
            raise SuiteError(
                f"{where}: suite {getattr(suite, 'name', '?')!r} has no parameter {name!r} (it has: {known})")
    return {name: p.check(name, given[name], where) if name in given else p.default for name, p in declared.items()}


@dataclass
class SuiteResult:
    """What a suite computed: records for tools, tables and notes for people, figures it drew.

    A suite never prints; the CLI renders ``tables`` and ``notes`` in the format asked for.
    """

    records: list[Record]
    notes: list[str] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    failed_sections: list[str] = field(default_factory=list)
    """Sections that failed (their notes say why); what finished is still in ``records``. The CLI exits 1."""


@runtime_checkable
class Suite(Protocol):
    name: str
    description: str
    default_hardware: str

    def run(self, ctx: SuiteContext) -> SuiteResult: ...


REGISTRY = PluginRegistry("suite", ENTRY_POINT_GROUP, BUILTIN_SUITES, SuiteError)


def _checked(obj: Any, entry: Entry) -> Suite:
    if not isinstance(obj, Suite):
        raise SuiteError(f"{entry.target} from {entry.origin} is not a suite (needs name, description, "
                         "default_hardware, run)")
    return obj


def suite_targets() -> dict[str, tuple[str, str]]:
    """name -> (import target, where it came from); a clashing name is listed and fails in :func:`get_suite`."""
    return {name: (e.target, e.origin) for name, e in REGISTRY.entries().items()}


def get_suite(name: str) -> Suite:
    entry = REGISTRY.resolve(name)
    return _checked(load_target(entry, SuiteError, "suite"), entry)


def suite_info(name: str) -> SuiteInfo:
    """What ``suite list`` shows of a suite: from the catalog for a built-in (no import), else loaded."""
    from hwsim.suites.catalog import BUILTIN_INFO, SuiteInfo

    targets = suite_targets()
    if name not in targets:
        raise SuiteError(f"unknown suite {name!r}; known: {', '.join(targets)}")
    _, origin = targets[name]
    if origin == "hwsim" and name in BUILTIN_INFO:
        return BUILTIN_INFO[name]
    suite = get_suite(name)
    return SuiteInfo(suite.name, suite.description, suite.default_hardware,
                     {k: p.default for k, p in suite_parameters(suite).items()})


def suite_target(name: str) -> str:
    """The import target (``module:attribute``) of a suite, for processes that load it by themselves."""
    return REGISTRY.resolve(name).target


def load_suite_target(target: str) -> Suite:
    """The suite object at ``module:attribute`` (what a sweep worker loads)."""
    entry = Entry(target, target, "a sweep")
    return _checked(load_target(entry, SuiteError, "suite"), entry)
