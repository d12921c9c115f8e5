"""Hardware presets load with their published numbers; bad files fail naming file, field and value."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hwsim.errors import HardwareError
from hwsim.hardware import Link, Topology, dump_hardware, list_hardware, load_hardware, parse_hardware
from hwsim.hardware.units import UnitError, parse_quantity

REQUIRED_PRESETS = {"h100-sxm", "a100-sxm", "t3-gpu", "titan-xp", "xeon-e5-2640v4", "spatten", "spatten-1/8"}


def test_every_required_preset_is_listed_and_loads():
    names = set(list_hardware())
    assert REQUIRED_PRESETS <= names
    for name in names:
        hw = load_hardware(name)
        assert hw.name == name
        assert hw.device.memory.bandwidth_bytes_per_s > 0


def test_t3_preset_matches_the_paper_setup():
    hw = load_hardware("t3-gpu")
    assert hw.device.compute_units == 80
    assert hw.device.clock_hz == pytest.approx(1.4e9)
    assert hw.device.sram_bytes == pytest.approx(16e6)
    assert hw.device.memory.bandwidth_bytes_per_s == pytest.approx(1e12)
    assert hw.topology.kind == "ring"
    assert hw.topology.link == Link(bandwidth_bytes_per_s=150e9, latency_s=500e-9)


def test_spatten_eighth_is_an_eighth():
    full, eighth = load_hardware("spatten"), load_hardware("spatten-1/8")
    assert eighth.device.memory.bandwidth_bytes_per_s * 8 == pytest.approx(full.device.memory.bandwidth_bytes_per_s)
    assert eighth.device.engine("qk_array").units * 8 == full.device.engine("qk_array").units
    assert load_hardware("spatten-1_8") == eighth  # the file stem is accepted too


@pytest.mark.parametrize("name", sorted(REQUIRED_PRESETS))
def test_dump_then_parse_round_trips(name):
    hw = load_hardware(name)
    again = parse_hardware(yaml.safe_load(yaml.safe_dump(dump_hardware(hw))), hw.source)
    assert again == hw


@pytest.mark.parametrize(
    "text, dimension, expected",
    [("3.35 TB/s", "bytes_per_s", 3.35e12), ("80 GiB", "bytes", 80 * 2**30), ("500 ns", "s", 5e-7),
     ("1.4 GHz", "hz", 1.4e9), ("400 Gbit/s", "bytes_per_s", 50e9), ("1979 TOPS", "flop_per_s", 1.979e15),
     (12, "bytes", 12.0), ("1e3 B", "bytes", 1000.0)],
)
def test_units_parse(text, dimension, expected):
    assert parse_quantity(text, dimension) == pytest.approx(expected)


def test_wrong_unit_says_what_it_is():
    with pytest.raises(UnitError, match=r"'GB'.*unit of bytes"):
        parse_quantity("80 GB", "bytes_per_s")


GOOD = {
    "name": "toy",
    "device": {"kind": "gpu", "compute_units": 4, "clock": "1 GHz", "peak": {"fp32": "1 TFLOP/s"},
               "memory": {"capacity": "1 GB", "bandwidth": "100 GB/s"}, "sram": "1 MB", "launch_overhead": "0 s"},
}


def _write(tmp_path: Path, document: object) -> Path:
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(document) if not isinstance(document, str) else document)
    return path


def _broken(**changes: object) -> dict:
    doc = yaml.safe_load(yaml.safe_dump(GOOD))
    for dotted, value in changes.items():
        node = doc
        *parents, leaf = dotted.split("__")
        for p in parents:
            node = node[p]
        if value is _DELETE:
            del node[leaf]
        else:
            node[leaf] = value
    return doc


_DELETE = object()


def test_good_file_loads(tmp_path):
    hw = load_hardware(_write(tmp_path, GOOD))
    assert hw.device.peak("fp32") == 1e12
    assert hw.topology.kind == "single"


@pytest.mark.parametrize(
    "changes, field, value_fragment",
    [
        ({"device__colour": "red"}, "device.colour", "unknown key"),
        ({"device__memory__bandwidth": _DELETE}, "device.memory.bandwidth", "missing"),
        ({"device__memory__bandwidth": "-5 GB/s"}, "device.memory.bandwidth", "-5 GB/s"),
        ({"device__peak": {"fp32": "0 TFLOP/s"}}, "device.peak.fp32", "0 TFLOP/s"),
        ({"device__memory__bandwidth": "80 GB"}, "device.memory.bandwidth", "80 GB"),
        ({"device__compute_units": 2.5}, "device.compute_units", "2.5"),
        ({"device__kind": "fpga"}, "device.kind", "fpga"),
        ({"topology": {"kind": "ring", "devices": 4}}, "topology.link", "missing"),
        ({"topology": {"kind": "two-level", "devices": 6, "nodes": 4, "link": {"bandwidth": "1 GB/s"},
                       "inter_link": {"bandwidth": "1 GB/s"}}}, "topology.nodes", "does not divide"),
    ],
)
def test_bad_file_names_file_field_and_value(tmp_path, changes, field, value_fragment):
    path = _write(tmp_path, _broken(**changes))
    with pytest.raises(HardwareError) as info:
        load_hardware(path)
    message = str(info.value)
    assert str(path) in message
    assert f"'{field}'" in message
    assert value_fragment in message
    assert "\n" not in message


def test_malformed_yaml_names_the_line(tmp_path):
    path = _write(tmp_path, "name: toy\ndevice: {kind: gpu\n  compute_units: [\n")
    with pytest.raises(HardwareError, match=r"toy.yaml: malformed YAML at line \d+"):
        load_hardware(path)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(HardwareError, match=r"unknown hardware 'nope'.*h100-sxm"):
        load_hardware("nope")


def test_unknown_dtype_is_an_error_not_a_default():
    with pytest.raises(HardwareError, match="no peak rate for dtype 'fp8'.*fp32"):
        load_hardware("xeon-e5-2640v4").device.peak("fp8")


def test_ring_routes_take_the_short_way():
    ring = Topology(kind="ring", devices=8, link=Link(1e9))
    assert ring.route(0, 1) == (("ring", 0, 1),)
    assert ring.route(0, 7) == (("ring", 0, 7),)
    assert len(ring.route(0, 4)) == 4
    assert len(ring.link_ids()) == 16


def test_two_level_crosses_the_network_only_between_nodes():
    topo = Topology(kind="two-level", devices=8, nodes=2, link=Link(400e9), inter_link=Link(50e9, 5e-6))
    assert [k for k, *_ in topo.route(0, 3)] == ["up", "down"]
    assert [k for k, *_ in topo.route(0, 4)] == ["nic-out", "nic-in"]
    assert topo.link_for(("nic-out", 0, -1)).bandwidth_bytes_per_s == 50e9
    with pytest.raises(HardwareError, match="out of range"):
        topo.route(0, 8)
