"""Devices, memories, links and topologies as frozen data, loaded from checked YAML.

Imports are lazy (PEP 562): ``import hwsim.hardware.schema`` (which :mod:`hwsim.costs.families`
needs to declare ``device.operators``) must not pull in the loader (PyYAML), which a bare GPU
machine may lack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
_WHERE = {name: "hwsim.hardware.model" if name[0].isupper() else "hwsim.hardware.loader" for name in __all__}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'hwsim.hardware' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
