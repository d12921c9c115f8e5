"""One hardware schema: every dataclass field reaches the loader, dumper, ``hw show``, overrides and JSON Schema.

The example hardware is built from the dataclasses' types alone, so a field added to
``hwsim/hardware/model.py`` is covered here without editing this file.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml

from hwsim.errors import HardwareError
from hwsim.hardware import Hardware, dump_hardware, hardware_json_schema, list_hardware, load_hardware, parse_hardware
from hwsim.hardware import schema as hw_schema
from hwsim.suites.cli import hardware_table, main
from hwsim.suites.sweep.overrides import apply, resolve

SCHEMA_FILE = Path(hw_schema.__file__).with_name("hardware.schema.json")


def _example(tp: Any) -> Any:
    """A valid value of type ``tp`` with every optional set and every mapping/tuple holding one entry."""
    inner = hw_schema._optional_of(tp)
    if inner is not None:
        return _example(inner)
    origin = typing.get_origin(tp)
    if origin is Literal:
        return typing.get_args(tp)[0]
    if origin in (Mapping, dict, typing.get_origin(Mapping[str, Any])):
        return {"e0": _example(typing.get_args(tp)[1])}
    if origin is tuple:
        return (_example(typing.get_args(tp)[0]),)
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        values = {}
        for f in dataclasses.fields(tp):
            spec = f.metadata[hw_schema.META_KEY]
            role = spec.role
            values[f.name] = "e0" if role == "name" else "<memory>" if role == "source" else _example(hints[f.name])
        return tp(**values)
    return {float: 1.0, int: 1, str: "e0"}[tp]  # "e0" everywhere: a name role equals its key


def _leaf_fields(obj: Any, path: str = "", fpath: tuple[str, ...] = ()) -> list[tuple[str, tuple[str, ...], Any]]:
    """(YAML path, dataclass path, value) of every leaf, walked with dataclasses.fields (not the schema walker)."""
    out = []
    for f in dataclasses.fields(obj):
        spec = f.metadata[hw_schema.META_KEY]
        if spec.role is not None:
            continue
        value = getattr(obj, f.name)
        here = path if spec.extra_keys else (f"{path}.{spec.key}" if path else spec.key)
        items: list[tuple[str, Any]]
        if dataclasses.is_dataclass(value):
            out += _leaf_fields(value, here, (*fpath, f.name))
            continue
        if isinstance(value, Mapping):
            items = [(str(k), v) for k, v in value.items()]
        elif isinstance(value, tuple):
            items = [(str(i), v) for i, v in enumerate(value)]
        else:
            out.append((here, (*fpath, f.name), value))
            continue
        assert items, f"{here}: the example should give every collection an entry"
        for key, v in items:
            where = f"{here}.{key}" if here else key
            if dataclasses.is_dataclass(v):
                out += _leaf_fields(v, where, (*fpath, f.name, key))
            else:
                out.append((where, (*fpath, f.name, key), v))
    return out


def _get(obj: Any, fpath: tuple[str, ...]) -> Any:
    for part in fpath:
        if isinstance(obj, tuple):
            obj = obj[int(part)]
        else:
            obj = obj[part] if isinstance(obj, Mapping) else getattr(obj, part)
    return obj


def _flatten(doc: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(doc, dict):
        return {k: v for key, sub in doc.items()
                for k, v in _flatten(sub, f"{prefix}.{key}" if prefix else str(key)).items()}
    if isinstance(doc, list):
        return {k: v for i, sub in enumerate(doc) for k, v in _flatten(sub, f"{prefix}.{i}").items()}
    return {prefix: doc}


FULL = _example(Hardware)
LEAVES = _leaf_fields(FULL)


def test_every_dataclass_field_carries_a_schema():
    def classes(tp: Any, seen: set[type]) -> None:
        for arg in typing.get_args(tp):
            classes(arg, seen)
        if dataclasses.is_dataclass(tp) and tp not in seen:
            seen.add(tp)  # type: ignore[arg-type]
            for f in dataclasses.fields(tp):
                assert isinstance(f.metadata.get(hw_schema.META_KEY), hw_schema.FieldSpec), f"{tp.__name__}.{f.name}"
                classes(typing.get_type_hints(tp)[f.name], seen)

    seen: set[type] = set()
    classes(Hardware, seen)
    assert {"Hardware", "Device", "Memory", "Efficiency", "Engine", "Topology", "Link"} <= {c.__name__ for c in seen}


def test_the_example_covers_every_leaf_and_is_valid():
    hw_schema.validate(FULL, "example")
    paths = {p for p, _, _ in LEAVES}
    assert {"device.sram_bandwidth", "topology.inter_link.bandwidth", "device.engines.e0.units",
            "device.engines.e0.e0", "device.peak.e0", "device.efficiency.memory_half"} <= paths


@pytest.mark.parametrize("path, fpath, value", LEAVES, ids=[p for p, _, _ in LEAVES])
def test_each_field_reaches_dumper_loader_show_and_overrides(path, fpath, value):
    # dumper: the field is in the document under its YAML key
    doc = yaml.safe_load(yaml.safe_dump(dump_hardware(FULL)))
    flat = _flatten(doc)
    assert path in flat, f"dump_hardware lacks {path}"
    # loader: reads it back, and a changed value in the file changes the loaded field
    assert parse_hardware(doc, "<memory>") == FULL
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        changed = 2 if isinstance(value, int) else 0.5
        node = doc
        *parents, leaf = path.split(".")
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        node[leaf] = changed
        assert _get(parse_hardware(doc, "<memory>"), fpath) == changed
        # overrides: the same dotted path sets the same field, checked by the schema
        out = apply(FULL, [resolve(path, changed, FULL, "t")], "t")
        assert _get(out, fpath) == changed
    # hw show: one row per leaf, under its YAML path
    assert path in [row[0] for row in hardware_table(FULL).rows]


def test_committed_json_schema_equals_the_generated_one():
    committed = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert committed == hardware_json_schema(), "regenerate: hwsim hw schema > hwsim/hardware/hardware.schema.json"


def test_json_schema_lists_every_yaml_key():
    schema = hardware_json_schema()
    device = schema["properties"]["device"]["properties"]
    assert device["sram_bandwidth"]["anyOf"][0]["exclusiveMinimum"] == 0
    assert device["memory"]["required"] == ["capacity", "bandwidth"]
    assert device["engines"]["additionalProperties"]["properties"]["units"]["minimum"] == 1
    assert schema["properties"]["topology"]["properties"]["kind"]["enum"] == ["single", "ring", "switch", "two-level"]


def test_presets_dump_and_load_identically():
    """Each preset's loaded object survives dump -> YAML -> load unchanged (the schema loses nothing)."""
    for name in list_hardware():
        hw = load_hardware(name)
        assert parse_hardware(yaml.safe_load(yaml.safe_dump(dump_hardware(hw))), hw.source) == hw


def test_hw_show_prints_sram_bandwidth_of_a_calibrated_file(tmp_path, capsys):
    hw = dataclasses.replace(load_hardware("xeon-e5-2640v4"), name="host")
    hw = dataclasses.replace(hw, device=dataclasses.replace(hw.device, sram_bandwidth_bytes_per_s=123.5e9))
    path = tmp_path / "host.yaml"
    path.write_text(yaml.safe_dump(dump_hardware(hw), sort_keys=False))
    assert main(["hw", "show", str(path), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)["tables"][0]["rows"]
    by_field = {row[0]: row for row in rows}
    assert by_field["device.sram_bandwidth"][2] == pytest.approx(123.5e9)
    numbers = [leaf for leaf in hw_schema.leaves(load_hardware(path)) if isinstance(leaf.value, (int, float))]
    assert all(by_field[leaf.path][2] == leaf.value for leaf in numbers)


def test_validate_applies_cross_field_rules():
    bad = dataclasses.replace(FULL, topology=dataclasses.replace(FULL.topology, kind="two-level", devices=3, nodes=2))
    with pytest.raises(HardwareError, match="field 'topology.nodes': value 2 does not divide devices=3"):
        hw_schema.validate(bad, "x")


def test_hw_show_lists_empty_collections_as_unset():
    rows = {row[0]: row for row in hardware_table(load_hardware("h100-sxm")).rows}
    assert rows["device.engines"][1] == "not set" and rows["device.sram_bandwidth"][1] == "not set"


@dataclasses.dataclass(frozen=True)
class _Step:
    """One step of a toy staircase."""

    working_set_bytes: float = hw_schema.spec("working_set", "size", unit="bytes", exclusive_minimum=0)
    read_bytes_per_s: float = hw_schema.spec("read", "read bandwidth", unit="bytes_per_s", exclusive_minimum=0)


@dataclasses.dataclass(frozen=True)
class _Toy:
    """A toy with a list of steps, as a memory staircase would be declared."""

    steps: tuple[_Step, ...] = hw_schema.spec("steps", "the staircase", default=())


def test_a_tuple_of_dataclasses_is_supported_end_to_end():
    doc = {"steps": [{"working_set": "32 KiB", "read": "1 TB/s"}, {"working_set": "1 GiB", "read": "100 GB/s"}]}
    toy = hw_schema.parse(_Toy, doc, "toy.yaml")
    assert toy.steps[1] == _Step(2.0**30, 100e9)
    assert hw_schema.parse(_Toy, yaml.safe_load(yaml.safe_dump(hw_schema.dump(toy))), "again") == toy
    target = hw_schema.resolve_path(toy, ["steps", "1", "read"])
    assert target.field_path == ("steps", "1", "read_bytes_per_s")
    changed = hw_schema.replace_at(toy, target.field_path, hw_schema.parse_leaf(target.type, target.spec, "50 GB/s"))
    assert changed.steps[1].read_bytes_per_s == 50e9 and changed.steps[0] == toy.steps[0]
    assert [leaf.path for leaf in hw_schema.leaves(toy)] == ["steps.0.working_set", "steps.0.read",
                                                            "steps.1.working_set", "steps.1.read"]
    assert hw_schema.json_schema(_Toy)["properties"]["steps"]["items"]["required"] == ["working_set", "read"]
    with pytest.raises(HardwareError, match="field 'steps.1.read': value '0 B/s' must be positive"):
        hw_schema.parse(_Toy, {"steps": [doc["steps"][0], {"working_set": "1 GiB", "read": "0 B/s"}]}, "bad.yaml")
    with pytest.raises(HardwareError, match="field 'steps.0.read': value 0.0 must be positive"):
        hw_schema.validate(hw_schema.replace_at(toy, ("steps", "0", "read_bytes_per_s"), 0.0), "override")
