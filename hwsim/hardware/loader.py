"""Read hardware YAML into :mod:`hwsim.hardware.model`, checking every field.

A researcher's first contact with a simulator is often a typo in a config file, so every
problem is reported as one line naming the file, the dotted field and the offending value.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from hwsim.errors import HardwareError
from hwsim.fileio import read_text_file, read_yaml_file
from hwsim.hardware.model import Device, Efficiency, Engine, Hardware, Link, Memory, Topology
from hwsim.hardware.units import UNITS, UnitError, parse_quantity, whole_bytes

MAX_COUNT = 2**53  # counts (units, channels, devices) beyond this are a typo, and lose precision as floats
PRESET_DIR = Path(__file__).with_name("presets")


def user_hardware_dir() -> Path:
    """Where ``hwsim hw calibrate`` writes and where user hardware files are found by name."""
    home = os.environ.get("HWSIM_HOME")
    return (Path(home) if home else Path.home() / ".hwsim") / "hardware"


class _Reader:
    """Walks one parsed YAML document, keeping the file name for every error."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, field: str, message: str) -> HardwareError:
        return HardwareError(f"{self.source}: field '{field}': {message}")

    def mapping(self, node: Any, field: str, allowed: set[str], required: set[str]) -> Mapping[str, Any]:
        if not isinstance(node, dict):
            raise self.fail(field or "<top>", f"expected a mapping, got {_show(node)}")
        for key in node:
            if key not in allowed:
                raise self.fail(_join(field, str(key)), f"unknown key (allowed: {', '.join(sorted(allowed))})")
        for key in sorted(required):
            if key not in node:
                raise self.fail(_join(field, key), "missing")
        return node

    def quantity(self, node: Mapping[str, Any], key: str, field: str, dimension: str, *, allow_zero: bool = False) -> float:
        name = _join(field, key)
        try:
            value = parse_quantity(node[key], dimension)
        except UnitError as exc:
            raise self.fail(name, str(exc)) from None
        if value < 0 or (value == 0 and not allow_zero):
            raise self.fail(name, f"value {node[key]!r} must be {'non-negative' if allow_zero else 'positive'}")
        return value

    def whole_bytes(self, node: Mapping[str, Any], key: str, field: str) -> int:
        try:
            value = whole_bytes(node[key])
        except UnitError as exc:
            raise self.fail(_join(field, key), str(exc)) from None
        if value < 1:
            raise self.fail(_join(field, key), f"value {node[key]!r} must be positive")
        return value

    def integer(self, node: Mapping[str, Any], key: str, field: str, *, minimum: int = 1) -> int:
        value = node[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(_join(field, key), f"value {value!r} must be an integer")
        if value < minimum:
            raise self.fail(_join(field, key), f"value {value!r} must be at least {minimum}")
        if value > MAX_COUNT:
            raise self.fail(_join(field, key), f"value {value!r} is too large (at most {MAX_COUNT})")
        return value

    def fraction(self, node: Mapping[str, Any], key: str, field: str) -> float:
        value = node[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
            raise self.fail(_join(field, key), f"value {value!r} must be a number in (0, 1]")
        return float(value)

    def text(self, node: Mapping[str, Any], key: str, field: str, choices: tuple[str, ...] | None = None) -> str:
        value = node[key]
        if not isinstance(value, str) or not value:
            raise self.fail(_join(field, key), f"value {value!r} must be a non-empty string")
        if choices is not None and value not in choices:
            raise self.fail(_join(field, key), f"value {value!r} is not one of {', '.join(choices)}")
        return value


def _join(field: str, key: str) -> str:
    return f"{field}.{key}" if field else key


def _show(node: Any) -> str:
    return f"{type(node).__name__} {node!r}" if not isinstance(node, (dict, list)) else type(node).__name__


def _optional(node: Mapping[str, Any], key: str, read: Callable[[], Any], default: Any) -> Any:
    return read() if key in node else default


def _any_quantity(reader: _Reader, value: Any, field: str) -> float:
    """Engine parameters are free-form: a bare number, or a quantity of any known dimension."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise reader.fail(field, f"value {value!r} must be a number or a quantity")
    for dimension in UNITS:
        try:
            number = parse_quantity(value, dimension)
        except UnitError:
            continue
        if number < 0:
            raise reader.fail(field, f"value {value!r} must be non-negative")
        return number
    raise reader.fail(field, f"cannot read {value!r} as a number or a quantity with a known unit")


def _device(r: _Reader, node: Any, name: str) -> Device:
    f = "device"
    d = r.mapping(
        node,
        f,
        allowed={"kind", "compute_units", "clock", "peak", "memory", "sram", "sram_bandwidth", "launch_overhead",
                 "efficiency", "engines"},
        required={"kind", "compute_units", "clock", "peak", "memory", "sram", "launch_overhead"},
    )
    peak_node = d["peak"]
    if not isinstance(peak_node, dict) or not peak_node:
        raise r.fail(f"{f}.peak", "expected a non-empty mapping of dtype to rate, e.g. fp32: '67 TFLOP/s'")
    peak = {str(k): r.quantity(peak_node, k, f"{f}.peak", "flop_per_s") for k in peak_node}

    m = r.mapping(d["memory"], f"{f}.memory", {"capacity", "bandwidth", "channels", "transaction"}, {"capacity", "bandwidth"})
    memory = Memory(
        capacity_bytes=r.quantity(m, "capacity", f"{f}.memory", "bytes"),
        bandwidth_bytes_per_s=r.quantity(m, "bandwidth", f"{f}.memory", "bytes_per_s"),
        channels=_optional(m, "channels", lambda: r.integer(m, "channels", f"{f}.memory"), 1),
        transaction_bytes=_optional(m, "transaction", lambda: r.whole_bytes(m, "transaction", f"{f}.memory"), 64),
    )

    efficiency = Efficiency()
    if "efficiency" in d:
        e = r.mapping(d["efficiency"], f"{f}.efficiency", {"compute_max", "compute_half", "memory_max", "memory_half"}, set())
        ef = f"{f}.efficiency"
        efficiency = Efficiency(
            compute_max=_optional(e, "compute_max", lambda: r.fraction(e, "compute_max", ef), 1.0),
            compute_half_flops=_optional(e, "compute_half", lambda: r.quantity(e, "compute_half", ef, "flop", allow_zero=True), 0.0),
            memory_max=_optional(e, "memory_max", lambda: r.fraction(e, "memory_max", ef), 1.0),
            memory_half_bytes=_optional(e, "memory_half", lambda: r.quantity(e, "memory_half", ef, "bytes", allow_zero=True), 0.0),
        )

    engines: dict[str, Engine] = {}
    engines_node = d.get("engines") or {}
    if not isinstance(engines_node, dict):
        raise r.fail(f"{f}.engines", f"expected a mapping of engine names to parameters, got {_show(engines_node)}")
    for engine_name, engine_node in engines_node.items():
        ef = f"{f}.engines.{engine_name}"
        if not isinstance(engine_node, dict):
            raise r.fail(ef, f"expected a mapping of parameters, got {_show(engine_node)}")
        units = r.integer(engine_node, "units", ef) if "units" in engine_node else 1
        params = {str(k): _any_quantity(r, v, f"{ef}.{k}") for k, v in engine_node.items() if k != "units"}
        engines[str(engine_name)] = Engine(name=str(engine_name), units=units, params=params)

    return Device(
        name=name,
        kind=r.text(d, "kind", f, ("gpu", "cpu", "accelerator")),  # type: ignore[arg-type]
        compute_units=r.integer(d, "compute_units", f),
        clock_hz=r.quantity(d, "clock", f, "hz"),
        peak_flops_per_s=peak,
        memory=memory,
        sram_bytes=r.quantity(d, "sram", f, "bytes", allow_zero=True),
        launch_overhead_s=r.quantity(d, "launch_overhead", f, "s", allow_zero=True),
        efficiency=efficiency,
        engines=engines,
        sram_bandwidth_bytes_per_s=r.quantity(d, "sram_bandwidth", f, "bytes_per_s") if "sram_bandwidth" in d else None,
    )


def _link(r: _Reader, node: Any, field: str) -> Link:
    n = r.mapping(node, field, {"bandwidth", "latency"}, {"bandwidth"})
    latency = r.quantity(n, "latency", field, "s", allow_zero=True) if "latency" in n else 0.0
    return Link(bandwidth_bytes_per_s=r.quantity(n, "bandwidth", field, "bytes_per_s"), latency_s=latency)


def _topology(r: _Reader, node: Any) -> Topology:
    f = "topology"
    t = r.mapping(node, f, {"kind", "devices", "link", "nodes", "inter_link"}, {"kind"})
    kind = r.text(t, "kind", f, ("single", "ring", "switch", "two-level"))
    devices = r.integer(t, "devices", f) if "devices" in t else 1
    nodes = r.integer(t, "nodes", f) if "nodes" in t else 1
    link = _link(r, t["link"], f"{f}.link") if "link" in t else None
    inter = _link(r, t["inter_link"], f"{f}.inter_link") if "inter_link" in t else None
    if kind != "single" and link is None:
        raise r.fail(f"{f}.link", f"missing (a {kind} topology needs its link bandwidth)")
    if kind == "two-level":
        if inter is None:
            raise r.fail(f"{f}.inter_link", "missing (a two-level topology needs its inter-node link)")
        if devices % nodes:
            raise r.fail(f"{f}.nodes", f"value {nodes} does not divide devices={devices}")
    return Topology(kind=kind, devices=devices, link=link, nodes=nodes, inter_link=inter)  # type: ignore[arg-type]


def parse_hardware(document: Any, source: str) -> Hardware:
    """Build a :class:`Hardware` from an already-parsed YAML document."""
    r = _Reader(source)
    top = r.mapping(document, "", {"name", "description", "device", "topology"}, {"name", "device"})
    name = r.text(top, "name", "")
    description = r.text(top, "description", "") if "description" in top else ""
    device = _device(r, top["device"], name)
    topology = _topology(r, top["topology"]) if "topology" in top else Topology()
    return Hardware(name=name, description=description, device=device, topology=topology, source=source)


def load_hardware_file(path: str | os.PathLike[str]) -> Hardware:
    document = read_yaml_file(path, HardwareError, "hardware file")
    return parse_hardware(document, str(path))


def _named_files() -> dict[str, Path]:
    """Hardware files found by name: shipped presets first, then the user's directory."""
    found: dict[str, Path] = {}
    for directory in (PRESET_DIR, user_hardware_dir()):
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.yaml")):
            found.setdefault(path.stem, path)
            try:  # an unreadable file is listed under its stem; loading it by name gives its error
                declared = (yaml.safe_load(read_text_file(path, HardwareError, "hardware file")) or {}).get("name")
            except (yaml.YAMLError, HardwareError, AttributeError):
                declared = None
            if isinstance(declared, str):
                found.setdefault(declared, path)
    return found


def list_hardware() -> dict[str, Path]:
    """Each hardware file once, under the name it declares (file stems are accepted too)."""
    by_file: dict[Path, str] = {}
    for name, path in _named_files().items():
        if name != path.stem or path not in by_file:
            by_file[path] = name
    return dict(sorted((name, path) for path, name in by_file.items()))


def load_hardware(name_or_path: str | os.PathLike[str]) -> Hardware:
    """Load a preset or user file by name, or any YAML file by path."""
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or os.sep in text and Path(text).exists():
        return load_hardware_file(text)
    files = _named_files()
    if text in files:
        return load_hardware_file(files[text])
    known = sorted(list_hardware())
    hint = " (run 'hwsim hw calibrate' to describe this machine)" if text == "host" else ""
    raise HardwareError(f"unknown hardware {text!r}{hint}; known: {', '.join(known)}")


def dump_hardware(hw: Hardware) -> dict[str, Any]:
    """A YAML-ready document of ``hw`` in base units, which :func:`parse_hardware` reads back equal."""
    d = hw.device
    device: dict[str, Any] = {
        "kind": d.kind,
        "compute_units": d.compute_units,
        "clock": f"{d.clock_hz!r} Hz",
        "peak": {k: f"{v!r} FLOP/s" for k, v in d.peak_flops_per_s.items()},
        "memory": {
            "capacity": f"{d.memory.capacity_bytes!r} B",
            "bandwidth": f"{d.memory.bandwidth_bytes_per_s!r} B/s",
            "channels": d.memory.channels,
            "transaction": f"{d.memory.transaction_bytes} B",
        },
        "sram": f"{d.sram_bytes!r} B",
        "launch_overhead": f"{d.launch_overhead_s!r} s",
        "efficiency": {
            "compute_max": d.efficiency.compute_max,
            "compute_half": f"{d.efficiency.compute_half_flops!r} FLOP",
            "memory_max": d.efficiency.memory_max,
            "memory_half": f"{d.efficiency.memory_half_bytes!r} B",
        },
    }
    if d.sram_bandwidth_bytes_per_s is not None:
        device["sram_bandwidth"] = f"{d.sram_bandwidth_bytes_per_s!r} B/s"
    if d.engines:
        device["engines"] = {n: {"units": e.units, **dict(e.params)} for n, e in d.engines.items()}
    doc: dict[str, Any] = {"name": hw.name, "description": hw.description, "device": device}
    t = hw.topology
    if t.kind != "single":
        topo: dict[str, Any] = {"kind": t.kind, "devices": t.devices, "nodes": t.nodes}
        for key, link in (("link", t.link), ("inter_link", t.inter_link)):
            if link is not None:
                topo[key] = {"bandwidth": f"{link.bandwidth_bytes_per_s!r} B/s", "latency": f"{link.latency_s!r} s"}
        doc["topology"] = topo
    return doc
