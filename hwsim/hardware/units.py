"""Quantities with units in hardware files: ``"3.35 TB/s"``, ``"80 GiB"``, ``"500 ns"``.

Hardware numbers come from datasheets that mix units freely; letting a YAML file say
``1.4 GHz`` keeps it checkable against its source, and a unit of the wrong kind (a size
where a bandwidth belongs) is caught instead of silently mis-scaled.
"""

from __future__ import annotations

import math
import re
from typing import Final

# Each dimension maps a unit spelling to its factor into the base unit of that dimension.
_DECIMAL: Final = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}
_BINARY: Final = {"Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40}


def _scaled(suffixes: list[str], prefixes: dict[str, float]) -> dict[str, float]:
    return {p + s: f for p, f in prefixes.items() for s in suffixes}


UNITS: Final[dict[str, dict[str, float]]] = {
    "bytes": {**_scaled(["B"], _DECIMAL), **_scaled(["B"], _BINARY)},
    "bytes_per_s": {
        **_scaled(["B/s"], _DECIMAL),
        **_scaled(["B/s"], _BINARY),
        # network links are quoted in bits per second
        **{k: v / 8 for k, v in _scaled(["bit/s", "b/s", "bps"], _DECIMAL).items()},
    },
    "hz": _scaled(["Hz"], _DECIMAL),
    "s": {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9, "ps": 1e-12},
    "flop_per_s": {
        **_scaled(["FLOP/s", "FLOPS", "flop/s", "OP/s", "OPS", "op/s"], _DECIMAL),
    },
    "flop": _scaled(["FLOP", "flop", "OP", "op"], _DECIMAL),
}

DIMENSION_EXAMPLES: Final = {
    "bytes": "'80 GB' or '16 MiB'",
    "bytes_per_s": "'3.35 TB/s' or '400 Gbit/s'",
    "hz": "'1.4 GHz'",
    "s": "'500 ns'",
    "flop_per_s": "'989 TFLOP/s' or '1979 TOPS'",
    "flop": "'1 GFLOP'",
}

_QUANTITY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-zµ/]*)\s*$")


class UnitError(ValueError):
    """A quantity string could not be read as the expected dimension."""


def parse_quantity(value: object, dimension: str) -> float:
    """Return ``value`` in the base unit of ``dimension`` (bytes, bytes/s, Hz, s, FLOP/s, FLOP).

    A bare number is taken as already in the base unit. NaN, infinity and numbers that overflow
    a float (``1e400 B/s``) are refused here, so no loader has to remember to check them.
    """
    if dimension not in UNITS:
        raise KeyError(dimension)
    if isinstance(value, bool):
        raise UnitError(f"expected a quantity like {DIMENSION_EXAMPLES[dimension]}, got a boolean")
    if isinstance(value, (int, float)):
        return finite(value, value)
    if not isinstance(value, str):
        raise UnitError(f"expected a quantity like {DIMENSION_EXAMPLES[dimension]}, got {type(value).__name__}")
    match = _QUANTITY.match(value)
    if match is None:
        raise UnitError(f"cannot read {value!r} as a quantity like {DIMENSION_EXAMPLES[dimension]}")
    number, unit = finite(float(match.group(1)), value), match.group(2)
    if unit == "":
        return number
    factor = UNITS[dimension].get(unit)
    if factor is None:
        other = [dim for dim, table in UNITS.items() if unit in table]
        found = f" (that is a unit of {other[0].replace('_per_', ' per ')})" if other else ""
        raise UnitError(
            f"unit {unit!r} in {value!r} is wrong here{found}; expected e.g. {DIMENSION_EXAMPLES[dimension]}")
    # divide by sub-unit divisors so that '500 ns' is exactly 5e-07, not 5.000000000000001e-07
    return finite(number * factor if factor >= 1 else number / round(1 / factor), value)


def finite(number: float, shown: object) -> float:
    """``number`` as a float, or a UnitError naming ``shown`` when it is NaN, infinite or too large for a float."""
    try:
        result = float(number)
    except OverflowError:  # an int with hundreds of digits
        raise UnitError(f"value {shown!r} is too large") from None
    if math.isnan(result):
        raise UnitError(f"value {shown!r} is not a number (NaN)")
    if math.isinf(result):
        raise UnitError(f"value {shown!r} is infinite or too large for a float")
    return result


def whole_bytes(value: object) -> int:
    """A byte count that must be whole (a transaction or line size): ``'64 B'`` -> 64; ``'0.5 B'`` is refused.

    Self-contained so the hardware schema can call it for any field that counts whole bytes.
    """
    number = parse_quantity(value, "bytes")
    if not number.is_integer():
        raise UnitError(f"value {value!r} is {number:g} bytes; a size here must be a whole number of bytes")
    return int(number)
