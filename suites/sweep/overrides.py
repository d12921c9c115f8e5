"""Hardware overrides: ``hw.device.memory.bandwidth: "2 TB/s"`` applied to a loaded Hardware.

A sweep varies hardware numbers without writing a YAML file per point. An override path is the
hardware YAML's own dotted field (``device.memory.bandwidth``, ``topology.link.latency``,
``device.peak.fp16``, ``device.engines.topk.comparators``) or the dataclass field it lands in
(``device.memory.bandwidth_bytes_per_s``). Everything comes from the hardware schema
(:mod:`hwsim.hardware.schema`): the path is followed through it, the value is read by the same leaf
reader as a hardware file, and the overridden hardware is checked by the same validator, so a zero
bandwidth or a topology whose nodes do not divide its devices is refused exactly as in a file.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from hwsim.errors import ConfigError, HardwareError
from hwsim.hardware import Hardware, validate_hardware
from hwsim.hardware import schema as hw_schema
from hwsim.hardware.units import UnitError

PREFIX = "hw."


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


def resolve(path_text: str, value: Any, hw: Hardware, where: str) -> Override:
    """Map a dotted override (without the ``hw.`` prefix) onto ``hw``'s schema and read its value."""
    parts = path_text.split(".")
    if not path_text or any(not p for p in parts):
        raise OverrideError(f"{where}: hardware override '{PREFIX}{path_text}' is not a dotted field path")
    try:
        target = hw_schema.resolve_path(hw, parts)
    except hw_schema.PathError as exc:
        if exc.reason == "group":
            raise OverrideError(f"{where}: hardware override '{PREFIX}{path_text}' is a group of fields; "
                                f"name one of them (e.g. {PREFIX}{path_text}.<field>)") from None
        if exc.reason == "unset":
            raise OverrideError(f"{where}: hardware override '{PREFIX}{path_text}': {exc} is not set "
                                f"on {hw.name} (a {hw.topology.kind} topology), so it cannot be changed") from None
        raise OverrideError(f"{where}: hardware override '{PREFIX}{path_text}': {exc}") from None
    if target.spec.role is not None:
        raise OverrideError(f"{where}: hardware override '{PREFIX}{path_text}': this field is not set by a file")
    try:
        parsed = hw_schema.parse_leaf(target.type, target.spec, value)
    except (UnitError, ValueError) as exc:
        raise OverrideError(f"{where}: hardware override '{PREFIX}{path_text}': {exc}") from None
    return Override(target.field_path, parsed)


def apply(hw: Hardware, overrides: list[Override], where: str) -> Hardware:
    """``hw`` with every override set, renamed to say so, and checked by the hardware schema."""
    if not overrides:
        return hw
    out = hw
    for o in overrides:
        out = hw_schema.replace_at(out, o.path, o.value)
    label = ",".join(f"{'.'.join(o.path)}={o.value:g}" if isinstance(o.value, float)
                     else f"{'.'.join(o.path)}={o.value}" for o in overrides)
    out = replace(out, name=f"{hw.name}[{label}]", description=f"{hw.description} (sweep overrides: {label})")
    try:
        return validate_hardware(out, f"{where} (overrides on {hw.name})")
    except HardwareError as exc:
        raise OverrideError(str(exc)) from None


__all__ = ["Override", "OverrideError", "PREFIX", "apply", "resolve"]
