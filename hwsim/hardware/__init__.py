"""Devices, memories, links and topologies as frozen data, loaded from checked YAML."""

from hwsim.hardware.loader import (
    dump_hardware,
    hardware_json_schema,
    list_hardware,
    load_hardware,
    load_hardware_file,
    parse_hardware,
    user_hardware_dir,
    validate_hardware,
)
from hwsim.hardware.model import Device, Efficiency, Engine, Hardware, Link, Memory, Topology

__all__ = [
    "Device",
    "Efficiency",
    "Engine",
    "Hardware",
    "Link",
    "Memory",
    "Topology",
    "dump_hardware",
    "hardware_json_schema",
    "list_hardware",
    "load_hardware",
    "load_hardware_file",
    "parse_hardware",
    "user_hardware_dir",
    "validate_hardware",
]
