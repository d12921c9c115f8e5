"""Devices, memories, links and topologies as frozen data, loaded from checked YAML."""

from hwsim.hardware.loader import (
    dump_hardware,
    list_hardware,
    load_hardware,
    load_hardware_file,
    parse_hardware,
    user_hardware_dir,
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
    "list_hardware",
    "load_hardware",
    "load_hardware_file",
    "parse_hardware",
    "user_hardware_dir",
]
