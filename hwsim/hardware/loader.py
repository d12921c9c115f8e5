"""Read hardware YAML into :mod:`hwsim.hardware.model`, checking every field (via :mod:`hwsim.hardware.schema`).

A researcher's first contact with a simulator is often a typo in a config file, so every
problem is reported as one line naming the file, the dotted field and the offending value.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from hwsim.errors import HardwareError
from hwsim.fileio import read_text_file, read_yaml_file
from hwsim.hardware import schema
from hwsim.hardware.model import Hardware

PRESET_DIR = Path(__file__).with_name("presets")


def user_hardware_dir() -> Path:
    """Where ``hwsim hw calibrate`` writes and where user hardware files are found by name."""
    home = os.environ.get("HWSIM_HOME")
    return (Path(home) if home else Path.home() / ".hwsim") / "hardware"


def parse_hardware(document: Any, source: str) -> Hardware:
    """Build a :class:`Hardware` from an already-parsed YAML document, checked field by field by the schema."""
    hw: Hardware = schema.parse(Hardware, document, source)
    return hw


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
    return schema.dump(hw)


def validate_hardware(hw: Hardware, source: str) -> Hardware:
    """Check a built (e.g. overridden) :class:`Hardware` exactly as a hardware file is checked; return it."""
    schema.validate(hw, source)
    return hw


def hardware_json_schema() -> dict[str, Any]:
    """The JSON Schema of a hardware YAML file (``hwsim hw schema``; committed as ``hardware.schema.json``)."""
    return schema.json_schema(Hardware)
