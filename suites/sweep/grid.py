"""A sweep grid: a YAML file of suite and hardware parameters, expanded into checked cases.

::

    hardware: t3-gpu                 # base hardware (default: the suite's own); may also be an axis
    quick: false
    fixed: {flows: 20000}            # set in every case
    axes:                            # cartesian product, in file order
      load: [0.5, 0.7, 0.9]
      hw.topology.link.bandwidth: ["50 GB/s", "150 GB/s"]
    zip:                             # each group is one more axis whose lists advance together
      - {size_dist: [exponential, lognormal], mean_size_bytes: [1.0e+6, 2.0e+6]}
    cases:                           # explicit extra cases (over 'fixed')
      - {load: 0.95}

Keys starting ``hw.`` are hardware overrides (:mod:`hwsim.suites.sweep.overrides`); ``hardware`` picks
the base hardware; every other key is a suite parameter, checked against the parameters the
suite declares. Every case is checked before any runs, and an error names the file, the field
and the value.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwsim.errors import ConfigError, HwsimError, SuiteError
from hwsim.fileio import read_yaml_file
from hwsim.hardware import Hardware, load_hardware
from hwsim.records import CaseValue
from hwsim.suites.registry import Suite, resolve_params, suite_target
from hwsim.suites.sweep import overrides as ov

HARDWARE_KEY = "hardware"
TOP_KEYS = {"suite", "hardware", "quick", "seed", "metric", "fixed", "axes", "zip", "cases"}
MAX_CASE_INT = 2**63 - 1  # a case integer must fit every consumer (numpy int64, JSON readers)
SEED_MODULUS = 2**32  # a case seed fits every generator, numpy's legacy seeding included
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


class SweepError(ConfigError):
    """A sweep grid or its options are malformed, or a sweep directory is inconsistent."""


@dataclass(frozen=True)
class Case:
    """One point of the grid, ready to run anywhere: everything a worker needs is in here."""

    params: Mapping[str, CaseValue]       # canonical: suite params, 'hardware', hw.* in base units
    suite_params: Mapping[str, CaseValue]
    hardware: str | None                  # base hardware name or path; None: the suite's default
    overrides: tuple[ov.Override, ...]
    case_id: str                          # stable hash of suite, sweep seed, quick and params
    slug: str                             # readable name of the params
    seed: int                             # derived from the sweep seed and the params

    @property
    def file_stem(self) -> str:
        return f"{self.slug}--{self.case_id}"


@dataclass(frozen=True)
class Grid:
    path: str
    suite: str
    suite_target: str                     # module:attribute the workers load
    cases: tuple[Case, ...]
    axes: tuple[str, ...]                 # canonical keys that take more than one value, in grid order
    quick: bool
    seed: int
    metric: str | None
    hardware_name: str                    # the base hardware named by the grid, else the suite's default
    default_hardware: str = ""            # the suite's own default
    document: Mapping[str, Any] = field(default_factory=dict)

    def hardware_for(self, case: Case, cache: dict[str, Hardware] | None = None) -> Hardware | None:
        """The case's hardware, loaded here where the sweep starts, so workers on other machines need
        neither this machine's files nor its ``~/.hwsim``. None: the suite's default, and it does not
        load here (``host`` before calibration), so the suite decides, as in ``hwsim suite run``."""
        cache = cache if cache is not None else {}
        name = case.hardware or self.default_hardware
        if name not in cache:
            try:
                cache[name] = load_hardware(name)
            except HwsimError:
                if case.hardware is None and not case.overrides:
                    return None
                raise
        return ov.apply(cache[name], list(case.overrides), f"{self.path}: case {case.slug}")


def suite_metrics(suite: Any) -> frozenset[str] | None:
    """The metric names a suite declares (optional attribute ``metrics``), or None when it does not say."""
    declared = getattr(suite, "metrics", None)
    return frozenset(declared) if declared else None


def check_metric(suite: Any, metric: str, where: str) -> None:
    """Refuse a metric the suite declares it never reports, before any case runs."""
    known = suite_metrics(suite)
    if known is not None and metric not in known:
        raise SweepError(f"{where}: suite {getattr(suite, 'name', '?')!r} reports no metric {metric!r} "
                         f"(it reports: {', '.join(sorted(known))})")


def _fail(path: str, where: str, message: str) -> SweepError:
    return SweepError(f"{path}: {where}: {message}" if where else f"{path}: {message}")


def case_value(value: Any, path: str, where: str) -> CaseValue:
    """A case value: string, number or boolean. YAML reads '1e6' as text, so plain numbers in text become numbers.

    NaN, infinity and numbers too large for a float are refused: no case can mean them.
    """
    if isinstance(value, str) and _NUMBER.match(value.strip()):
        if re.fullmatch(r"[-+]?\d+", value.strip()):
            value = int(value)
        else:
            value = float(value)
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        if abs(value) > MAX_CASE_INT:
            raise _fail(path, where, f"value {value!r} is too large")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _fail(path, where, f"value {value!r} must be a finite number")
        return value
    raise _fail(path, where, f"value {value!r} must be a string, number or boolean")


def _mapping(node: Any, path: str, where: str) -> dict[str, Any]:
    if not isinstance(node, dict):
        raise _fail(path, where, f"expected a mapping, got {type(node).__name__} {node!r}")
    for key in node:
        if not isinstance(key, str) or not key:
            raise _fail(path, where, f"key {key!r} must be a non-empty string")
    return node


def _values(node: Any, path: str, where: str) -> list[tuple[CaseValue, str]]:
    if not isinstance(node, list) or not node:
        raise _fail(path, where, f"expected a non-empty list of values, got {node!r}")
    return [(case_value(v, path, f"{where}[{i}]"), f"{where}[{i}]") for i, v in enumerate(node)]


def stable_hash(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def case_seed(sweep_seed: int, suite: str, params: Mapping[str, CaseValue]) -> int:
    """The case's own seed: a hash of the sweep seed and the case, so order and place do not matter."""
    return int(stable_hash({"seed": sweep_seed, "suite": suite, "params": dict(params)})[:16], 16) % SEED_MODULUS


def slug(params: Mapping[str, CaseValue], limit: int = 80) -> str:
    def short(key: str) -> str:
        return ".".join(key.split(".")[-2:]) if key.startswith(ov.PREFIX) else key

    def text(value: CaseValue) -> str:
        return f"{value:g}" if isinstance(value, float) else str(value)

    raw = ",".join(f"{short(k)}={text(v)}" for k, v in params.items()) or "default"
    return re.sub(r"[^A-Za-z0-9._=+,-]+", "-", raw)[:limit].strip("-,") or "case"


def read_grid_file(path: str | Path) -> dict[str, Any]:
    document = read_yaml_file(path, SweepError, "grid file")
    return document if document is not None else {}


def expand(document: Any, path: str, suite: Suite, *, seed: int | None = None, quick: bool | None = None) -> Grid:
    """Every case of the grid, each checked against the suite's parameters and the hardware loader."""
    top = _mapping(document, path, "")
    for key in top:
        if key not in TOP_KEYS:
            raise _fail(path, f"field '{key}'", f"unknown key (allowed: {', '.join(sorted(TOP_KEYS))})")
    if "suite" in top and top["suite"] != suite.name:
        raise _fail(path, "field 'suite'", f"value {top['suite']!r} differs from the suite asked for ({suite.name!r})")
    grid_seed = top.get("seed", 0)
    if isinstance(grid_seed, bool) or not isinstance(grid_seed, int) or grid_seed < 0:
        raise _fail(path, "field 'seed'", f"value {grid_seed!r} must be a non-negative integer")
    grid_quick = top.get("quick", False)
    if not isinstance(grid_quick, bool):
        raise _fail(path, "field 'quick'", f"value {grid_quick!r} must be true or false")
    metric = top.get("metric")
    if metric is not None and (not isinstance(metric, str) or not metric):
        raise _fail(path, "field 'metric'", f"value {metric!r} must be a metric name")
    if metric is not None:
        check_metric(suite, metric, f"{path}: field 'metric'")
    sweep_seed = grid_seed if seed is None else seed
    sweep_quick = grid_quick if quick is None else quick

    points = _points(top, path)

    hardware_cache: dict[str, Hardware] = {}
    cases: list[Case] = []
    by_id: dict[str, str] = {}
    for point in points:
        try:
            case = _case(point, path, suite, sweep_seed, sweep_quick, hardware_cache)
        except (SuiteError, ov.OverrideError) as exc:  # already names the file and field; one error type out
            raise SweepError(str(exc)) from None
        where = next(iter(o for _, o in point.values()), "grid")
        if case.case_id in by_id:
            raise _fail(path, where, f"case {case.slug} appears twice (also from {by_id[case.case_id]})")
        by_id[case.case_id] = where
        cases.append(case)

    varying = []
    for key in _canonical_order(cases):
        if len({json.dumps(c.params.get(key)) for c in cases}) > 1:
            varying.append(key)
    hardware_name = str(top.get(HARDWARE_KEY, suite.default_hardware))
    return Grid(path=path, suite=suite.name, suite_target=suite_target(suite.name), cases=tuple(cases),
                axes=tuple(varying), quick=sweep_quick, seed=sweep_seed, metric=metric,
                hardware_name=hardware_name, default_hardware=suite.default_hardware, document=top)


Point = dict[str, tuple[CaseValue, str]]  # key -> (value, where in the file it came from)


def _points(top: Mapping[str, Any], path: str) -> list[Point]:
    """The grid's points: the product of the axes and zip groups, then the explicit cases, each over 'fixed'."""
    base: Point = {}
    if "hardware" in top:
        base[HARDWARE_KEY] = (case_value(top["hardware"], path, "field 'hardware'"), "field 'hardware'")
    for key, value in _mapping(top.get("fixed", {}), path, "field 'fixed'").items():
        base[key] = (case_value(value, path, f"fixed.{key}"), f"fixed.{key}")

    # each dimension is a list of points; a point is {key: (value, origin)}
    dimensions: list[list[Point]] = []
    for key, values in _mapping(top.get("axes", {}), path, "field 'axes'").items():
        dimensions.append([{key: v} for v in _values(values, path, f"axes.{key}")])
    zips = top.get("zip", [])
    if not isinstance(zips, list):
        raise _fail(path, "field 'zip'", f"expected a list of groups, got {zips!r}")
    for g, group in enumerate(zips):
        columns = {k: _values(v, path, f"zip[{g}].{k}") for k, v in _mapping(group, path, f"zip[{g}]").items()}
        lengths = {k: len(v) for k, v in columns.items()}
        if not columns or len(set(lengths.values())) != 1:
            raise _fail(path, f"zip[{g}]", f"zipped lists must be non-empty and of equal length, got {lengths}")
        dimensions.append([{k: columns[k][i] for k in columns} for i in range(next(iter(lengths.values())))])
    seen_keys: dict[str, str] = {}
    for dim in dimensions:
        for key in dim[0]:
            if key in seen_keys or key in base:
                raise _fail(path, dim[0][key][1].split("[")[0], f"key {key!r} is set twice "
                            f"(also in {seen_keys.get(key) or base[key][1]})")
            seen_keys[key] = dim[0][key][1].split("[")[0]

    points: list[Point] = []
    if dimensions or "cases" not in top:
        for combo in itertools.product(*dimensions):
            point: Point = {}
            for part in combo:
                point.update(part)
            points.append({**point, **base})  # varying keys first: they lead the case's slug
    explicit = top.get("cases", [])
    if not isinstance(explicit, list):
        raise _fail(path, "field 'cases'", f"expected a list of mappings, got {explicit!r}")
    for i, item in enumerate(explicit):
        point = {key: (case_value(value, path, f"cases[{i}].{key}"), f"cases[{i}].{key}")
                 for key, value in _mapping(item, path, f"cases[{i}]").items()}
        points.append({**point, **{k: v for k, v in base.items() if k not in point}})

    return points


def _canonical_order(cases: list[Case]) -> list[str]:
    order: list[str] = []
    for c in cases:
        order += [k for k in c.params if k not in order]
    return order


def _case(point: dict[str, tuple[CaseValue, str]], path: str, suite: Suite, sweep_seed: int, quick: bool,
          cache: dict[str, Hardware]) -> Case:
    hardware_name: str | None = None
    if HARDWARE_KEY in point:
        value, origin = point[HARDWARE_KEY]
        if not isinstance(value, str):
            raise _fail(path, origin, f"value {value!r} must be a hardware name or file")
        hardware_name = value
    name = hardware_name or suite.default_hardware
    overrides: list[ov.Override] = []
    suite_given: dict[str, CaseValue] = {}
    order: list[tuple[str, str]] = []  # (kind, key) in grid order, so slugs and figures follow the file
    for key, (value, origin) in point.items():
        if key == HARDWARE_KEY:
            order.append(("hardware", key))
        elif key.startswith(ov.PREFIX):
            if name not in cache:
                try:
                    cache[name] = load_hardware(name)
                except HwsimError as exc:
                    raise _fail(path, point.get(HARDWARE_KEY, (None, "hardware"))[1], str(exc)) from None
            override = ov.resolve(key[len(ov.PREFIX):], value, cache[name], f"{path}: {origin}")
            if any(o.path == override.path for o in overrides):
                raise _fail(path, origin, f"{key} sets the same hardware field as another key")
            overrides.append(override)
            order.append(("hw", override.key))
        else:
            # checked one at a time so the error names where the value came from
            resolve_params(suite, {key: value}, where=f"{path}: {origin}")
            suite_given[key] = value
            order.append(("suite", key))
    checked = resolve_params(suite, suite_given, where=path)
    if overrides:
        ov.apply(cache[name], overrides, path)  # checked now, on the client, before any case runs
    hw_values = {o.key: o.value for o in overrides}
    params: dict[str, CaseValue] = {}
    for kind, key in order:
        params[key] = name if kind == "hardware" else hw_values[key] if kind == "hw" else checked[key]
    if hardware_name is not None and not overrides and name not in cache:
        try:  # an unknown or broken hardware fails here, naming the grid, not when its case runs
            cache[name] = load_hardware(name)
        except HwsimError as exc:
            raise _fail(path, point[HARDWARE_KEY][1], str(exc)) from None
    # identity and seed come from the case with every default filled in: spelling out a default
    # (weights: [1]) is the same case, with the same seed and records, as leaving it out
    full: dict[str, CaseValue] = {**checked, HARDWARE_KEY: name, **{f"{ov.PREFIX}{k}": v for k, v in hw_values.items()}}
    case_id = stable_hash({"suite": suite.name, "seed": sweep_seed, "quick": quick, "params": full})[:12]
    return Case(params=params, suite_params={k: checked[k] for k in suite_given}, hardware=hardware_name,
                overrides=tuple(overrides), case_id=case_id, slug=slug(params),
                seed=case_seed(sweep_seed, suite.name, full))


__all__ = ["Case", "Grid", "SweepError", "case_seed", "case_value", "check_metric", "expand", "read_grid_file", "slug",
           "stable_hash", "suite_metrics"]
