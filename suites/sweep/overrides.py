"""Hardware overrides: ``hw.device.memory.bandwidth: "2 TB/s"`` applied to a loaded Hardware.

A sweep varies hardware numbers without writing a YAML file per point. An override path is the
hardware YAML's own dotted field (``device.memory.bandwidth``, ``topology.link.latency``,
``device.peak.fp16``, ``device.engines.topk.comparators``) or the dataclass field it lands in
(``device.memory.bandwidth_bytes_per_s``); values are numbers in base units or quantities with
units, read with the loader's unit parser. The override is applied with ``dataclasses.replace``
and the result is checked by the loader itself (dump, then parse), so a zero bandwidth or a
topology whose nodes do not divide its devices is refused exactly as in a hardware file.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields, is_dataclass, replace
from typing import Any, Mapping

from hwsim.errors import ConfigError, HardwareError
from hwsim.hardware import Hardware, dump_hardware, parse_hardware
from hwsim.hardware.model import Device, Efficiency, Engine, Link, Memory, Topology
from hwsim.hardware.units import UNITS, UnitError, parse_quantity

PREFIX = "hw."

# YAML spelling -> dataclass field, per dataclass (the loader's names, so a grid reads like a hardware file)
_ALIASES: dict[type, dict[str, str]] = {
    Device: {"clock": "clock_hz", "peak": "peak_flops_per_s", "sram": "sram_bytes",
             "sram_bandwidth": "sram_bandwidth_bytes_per_s", "launch_overhead": "launch_overhead_s"},
    Memory: {"capacity": "capacity_bytes", "bandwidth": "bandwidth_bytes_per_s", "transaction": "transaction_bytes"},
    Efficiency: {"compute_half": "compute_half_flops", "memory_half": "memory_half_bytes"},
    Link: {"bandwidth": "bandwidth_bytes_per_s", "latency": "latency_s"},
    Topology: {}, Engine: {}, Hardware: {},
}
# unit dimension of a field, from the suffix of its name (the project's naming convention)
_SUFFIX_DIMENSIONS = (("_bytes_per_s", "bytes_per_s"), ("_flops_per_s", "flop_per_s"), ("_flops", "flop"),
                      ("_bytes", "bytes"), ("_hz", "hz"), ("_s", "s"))
_INTEGER_FIELDS = {"compute_units", "channels", "transaction_bytes", "devices", "nodes", "units"}
_TEXT_FIELDS = {"kind", "description"}
_FRACTION_FIELDS = {"compute_max", "memory_max"}


class OverrideError(ConfigError):
    """A hardware override names no field, or gives a value the field cannot take."""


@dataclass(frozen=True)
class Override:
    """One resolved override: the dataclass path it sets and the value in base units."""

    path: tuple[str, ...]   # dataclass field names; a mapping key (peak dtype, engine, engine param) as is
    value: Any

    @property
    def key(self) -> str:
        """The canonical case key, with the unit in the name: ``hw.device.memory.bandwidth_bytes_per_s``."""
        return PREFIX + ".".join(self.path)


def _dimension(field_name: str) -> str | None:
    for suffix, dimension in _SUFFIX_DIMENSIONS:
        if field_name.endswith(suffix):
            return dimension
    return None


def _number(value: Any, dimension: str | None, where: str) -> float:
    """A number in base units: a bare number, or a quantity of the field's dimension (any known one if free-form)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise OverrideError(f"{where}: value {value!r} must be a number or a quantity such as '2 TB/s'")
    for dim in [dimension] if dimension else list(UNITS):
        try:
            return parse_quantity(value, dim)
        except UnitError as exc:
            last = exc
    raise OverrideError(f"{where}: value {value!r}: {last}")


def resolve(path_text: str, value: Any, hw: Hardware, where: str) -> Override:
    """Map a dotted override (without the ``hw.`` prefix) onto ``hw``'s dataclass tree and read its value."""
    parts = [p for p in path_text.split(".")]
    if not path_text or any(not p for p in parts):
        raise OverrideError(f"{where}: hardware override '{PREFIX}{path_text}' is not a dotted field path")
    node: Any = hw
    path: list[str] = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if is_dataclass(node):
            names = {f.name for f in fields(node)}
            name = _ALIASES.get(type(node), {}).get(part, part)
            if isinstance(node, Engine) and name not in names:  # engine params sit beside 'units', as in YAML
                path += ["params", part]
                node = node.params.get(part)
                if not last:
                    raise OverrideError(f"{where}: engine parameter {part!r} has no sub-fields")
                return Override(tuple(path), _number(value, None, where))
            if name not in names or name in ("name", "source"):
                allowed = sorted((set(_ALIASES.get(type(node), {})) | names) - {"name", "source"})
                raise OverrideError(f"{where}: hardware override '{PREFIX}{path_text}': no field {part!r} "
                                    f"under {'.'.join(path) or 'the hardware'} (fields: {', '.join(allowed)})")
            path.append(name)
            child = getattr(node, name)
            if last:
                if is_dataclass(child) or isinstance(child, Mapping) or name in ("link", "inter_link"):
                    raise OverrideError(f"{where}: hardware override '{PREFIX}{path_text}' is a group of fields; "
                                        f"name one of them (e.g. {PREFIX}{path_text}.<field>)")
                return Override(tuple(path), _field_value(name, value, where))
            if child is None:
                raise OverrideError(f"{where}: hardware override '{PREFIX}{path_text}': {'.'.join(path)} is not set "
                                    f"on {hw.name} (a {hw.topology.kind} topology), so it cannot be changed")
            node = child
        elif isinstance(node, Mapping):
            if part not in node:
                raise OverrideError(f"{where}: hardware override '{PREFIX}{path_text}': {'.'.join(path)} of {hw.name} "
                                    f"has no entry {part!r} (it has: {', '.join(sorted(node)) or 'none'})")
            path.append(part)
            if last:
                return Override(tuple(path), _number(value, _dimension(path[-2]), where))
            node = node[part]
        else:
            raise OverrideError(f"{where}: hardware override '{PREFIX}{path_text}': {'.'.join(path)} has no sub-fields")
    raise AssertionError("unreachable")


def _field_value(name: str, value: Any, where: str) -> Any:
    if name in _TEXT_FIELDS:
        if not isinstance(value, str) or not value:
            raise OverrideError(f"{where}: value {value!r} for {name!r} must be a non-empty string")
        return value
    if name in _INTEGER_FIELDS:
        if name == "transaction_bytes" and isinstance(value, str):
            number = _number(value, "bytes", where)
            if number.is_integer():
                return int(number)
        if isinstance(value, bool) or not isinstance(value, int):
            raise OverrideError(f"{where}: value {value!r} for {name!r} must be an integer")
        return value
    if name in _FRACTION_FIELDS:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise OverrideError(f"{where}: value {value!r} for {name!r} must be a number in (0, 1]")
        return float(value)
    dimension = _dimension(name)
    if dimension is None:
        raise OverrideError(f"{where}: field {name!r} cannot be overridden (it is a group of fields; name one of them)")
    return _number(value, dimension, where)


def _set(node: Any, path: tuple[str, ...], value: Any) -> Any:
    head, rest = path[0], path[1:]
    if is_dataclass(node):
        current = getattr(node, head)
        return replace(node, **{head: value if not rest else _set(current, rest, value)})  # type: ignore[type-var]
    updated = dict(node)
    updated[head] = value if not rest else _set(node[head], rest, value)
    return updated


def apply(hw: Hardware, overrides: list[Override], where: str) -> Hardware:
    """``hw`` with every override set, renamed to say so, and checked by the hardware loader."""
    if not overrides:
        return hw
    out = hw
    for o in overrides:
        out = _set(out, o.path, o.value)
    label = ",".join(f"{'.'.join(o.path)}={o.value:g}" if isinstance(o.value, float) else f"{'.'.join(o.path)}={o.value}"
                     for o in overrides)
    out = replace(out, name=f"{hw.name}[{label}]", description=f"{hw.description} (sweep overrides: {label})")
    try:
        checked = parse_hardware(dump_hardware(out), f"{where} (overrides on {hw.name})")
    except HardwareError as exc:
        raise OverrideError(str(exc)) from None
    return dataclasses.replace(checked, source=hw.source)


__all__ = ["Override", "OverrideError", "PREFIX", "apply", "resolve"]
