"""The hardware schema, declared once as field metadata on the frozen dataclasses of :mod:`.model`.

Each field of a hardware dataclass carries a :class:`FieldSpec` (its YAML key, unit, range, help
text); its Python type says the rest (number, integer, text, a ``Literal`` of choices, a nested
dataclass, an optional, a mapping, a tuple). Everything that reads or writes hardware walks that
one declaration:

* :func:`parse` (the loader) turns a YAML document into dataclasses, naming file, field and value
  on any problem;
* :func:`dump` writes the document :func:`parse` reads back equal;
* :func:`validate` checks an already-built object (sweep overrides set a field, then validate);
* :func:`leaves` lists every number with its unit and help (``hwsim hw show``);
* :func:`resolve_path` / :func:`parse_leaf` read one dotted override;
* :func:`json_schema` describes the YAML for editors (``hwsim hw schema``).

Why metadata on the dataclasses rather than pydantic or msgspec: the dataclasses are already the
model every simulator reads, the project has no validation library as a dependency (hwsim.kernels
must run on a bare numpy+numba+cupy box), and unit-bearing quantities (``"3.35 TB/s"``) need the
project's own parser either way. A library would add a second model to keep in step with these.

This module imports no model class, so :mod:`.model` can import :func:`spec` from it.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields, is_dataclass
from typing import Any, Literal, Union

from hwsim.errors import HardwareError
from hwsim.hardware.units import DIMENSION_EXAMPLES, UNITS, UnitError, parse_quantity

META_KEY = "hwsim"


class _NoDefault:
    def __repr__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT: Any = _NoDefault()
"""``yaml_default`` when the YAML must give the key (or the dataclass default applies)."""
ANY_UNIT = "any"
"""A free-form number: a bare number in base units, or a quantity of any known dimension."""

BASE_UNITS: dict[str, str] = {"bytes": "B", "bytes_per_s": "B/s", "hz": "Hz", "s": "s", "flop_per_s": "FLOP/s",
                              "flop": "FLOP"}
"""The base unit written for each dimension of :data:`hwsim.hardware.units.UNITS`."""


@dataclass(frozen=True)
class FieldSpec:
    """What the schema knows about one dataclass field beyond its Python type.

    ``key``: the YAML key (None: not in YAML, see ``role``). ``unit``: a dimension of
    :data:`~hwsim.hardware.units.UNITS` (the value may be written with units) or :data:`ANY_UNIT`.
    ``minimum`` / ``exclusive_minimum`` / ``maximum``: the allowed range of a number (base units).
    ``yaml_default``: the value when the YAML omits a key whose dataclass field has no default.
    ``role``: ``"name"`` fills the field with the enclosing name (the hardware's name, or the key of
    the mapping entry), ``"source"`` with the file name. ``extra_keys``: this mapping's entries sit
    beside the other keys of its parent in YAML (an engine's free-form parameters).
    ``non_empty``: a mapping or tuple that must have at least one entry.
    """

    key: str | None
    help: str
    unit: str | None = None
    minimum: float | None = None
    exclusive_minimum: float | None = None
    maximum: float | None = None
    yaml_default: Any = NO_DEFAULT
    role: Literal["name", "source"] | None = None
    extra_keys: bool = False
    non_empty: bool = False


def spec(key: str | None, help: str, *, unit: str | None = None, minimum: float | None = None,
         exclusive_minimum: float | None = None, maximum: float | None = None, default: Any = MISSING,
         default_factory: Any = MISSING, yaml_default: Any = NO_DEFAULT, role: Literal["name", "source"] | None = None,
         extra_keys: bool = False, non_empty: bool = False) -> Any:
    """A dataclass field carrying its schema: ``clock_hz: float = spec("clock", "boost clock", unit="hz", ...)``."""
    if unit is not None and unit != ANY_UNIT and unit not in UNITS:
        raise KeyError(f"unknown unit dimension {unit!r}; known: {sorted(UNITS)}")
    meta = {META_KEY: FieldSpec(key, help, unit, minimum, exclusive_minimum, maximum, yaml_default, role,
                                extra_keys, non_empty)}
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class Field:
    """One field of one hardware dataclass: its name, its resolved type and its spec."""

    name: str
    type: Any
    spec: FieldSpec
    has_default: bool
    default: Any

    @property
    def required(self) -> bool:
        return not self.has_default and self.spec.yaml_default is NO_DEFAULT and self.spec.role is None


_FIELDS_CACHE: dict[type, tuple[Field, ...]] = {}


def schema_fields(cls: type) -> tuple[Field, ...]:
    """The schema of a hardware dataclass; every field must carry a :func:`spec`."""
    if cls not in _FIELDS_CACHE:
        hints = typing.get_type_hints(cls)
        out = []
        for f in fields(cls):
            meta = f.metadata.get(META_KEY)
            if not isinstance(meta, FieldSpec):
                raise TypeError(f"{cls.__name__}.{f.name} has no schema: declare it with "
                                "hwsim.hardware.schema.spec(...)")
            has_default = f.default is not MISSING or f.default_factory is not MISSING
            default = f.default if f.default is not MISSING else (
                f.default_factory() if f.default_factory is not MISSING else MISSING)
            out.append(Field(f.name, hints[f.name], meta, has_default, default))
        _FIELDS_CACHE[cls] = tuple(out)
    return _FIELDS_CACHE[cls]


# ---- types ---------------------------------------------------------------------------------------

def _optional_of(tp: Any) -> Any | None:
    """``X`` for ``X | None``, else None."""
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0]
    return None


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    inner = _optional_of(tp)
    return (inner, True) if inner is not None else (tp, False)


def _is_mapping(tp: Any) -> bool:
    return typing.get_origin(tp) in (Mapping, dict, typing.get_origin(Mapping[str, Any]))


def _is_tuple(tp: Any) -> bool:
    return typing.get_origin(tp) is tuple


def _item_type(tp: Any) -> Any:
    args = typing.get_args(tp)
    return args[-1] if _is_mapping(tp) else args[0]


def _choices(tp: Any) -> tuple[str, ...] | None:
    return tuple(typing.get_args(tp)) if typing.get_origin(tp) is Literal else None


def _is_group(tp: Any) -> bool:
    tp, _ = _strip_optional(tp)
    return is_dataclass(tp) or _is_mapping(tp) or _is_tuple(tp)


# ---- errors --------------------------------------------------------------------------------------

def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _show(node: Any) -> str:
    return f"{type(node).__name__} {node!r}" if not isinstance(node, (dict, list)) else type(node).__name__


def _fail(source: str, path: str, message: str) -> HardwareError:
    return HardwareError(f"{source}: field '{path or '<top>'}': {message}")


def range_text(s: FieldSpec, integer: bool = False) -> str | None:
    """The allowed range in words, as errors and help say it (None: any value)."""
    lo, xlo, hi = s.minimum, s.exclusive_minimum, s.maximum
    if hi is not None and (lo is not None or xlo is not None):
        left = f"({xlo:g}" if xlo is not None else f"[{lo:g}"
        return f"a number in {left}, {hi:g}]"
    if xlo == 0:
        return "positive"
    if lo == 0 and not integer:
        return "non-negative"
    if lo is not None:
        return f"at least {lo:g}"
    if xlo is not None:
        return f"greater than {xlo:g}"
    if hi is not None:
        return f"at most {hi:g}"
    return None


def _in_range(s: FieldSpec, value: float) -> bool:
    try:
        if not math.isfinite(value):
            return False
    except OverflowError:  # an integer with hundreds of digits: no field can mean it
        return False
    if s.minimum is not None and value < s.minimum:
        return False
    if s.exclusive_minimum is not None and value <= s.exclusive_minimum:
        return False
    return not (s.maximum is not None and value > s.maximum)


def _range_problem(s: FieldSpec, value: float, shown: Any, integer: bool = False) -> str | None:
    if _in_range(s, value):
        return None
    words = range_text(s, integer) or "finite"
    return f"value {shown!r} must be {words}"


# ---- one leaf ------------------------------------------------------------------------------------

def parse_leaf(tp: Any, s: FieldSpec, raw: Any) -> Any:
    """Read one YAML value of a leaf field into base units, raising UnitError/ValueError with the reason.

    The range is checked too, so a value is accepted here exactly when a hardware file would accept it.
    """
    tp, _ = _strip_optional(tp)
    choices = _choices(tp)
    if tp is str or choices is not None:
        if not isinstance(raw, str) or not raw:
            raise ValueError(f"value {raw!r} must be a non-empty string")
        if choices is not None and raw not in choices:
            raise ValueError(f"value {raw!r} is not one of {', '.join(choices)}")
        return raw
    if tp is int:
        if s.unit is not None and isinstance(raw, str):
            number = parse_quantity(raw, s.unit)
            if not number.is_integer():
                raise ValueError(f"value {raw!r} must be a whole number of {BASE_UNITS[s.unit]}")
            value: Any = int(number)
        elif isinstance(raw, bool) or not isinstance(raw, int):
            raise ValueError(f"value {raw!r} must be an integer")
        else:
            value = raw
        problem = _range_problem(s, value, raw, integer=True)
        if problem:
            raise ValueError(problem)
        return value
    if tp is float:
        if s.unit == ANY_UNIT:
            value = _any_quantity(raw)
        elif s.unit is not None:
            value = parse_quantity(raw, s.unit)
        elif isinstance(raw, bool) or not isinstance(raw, (int, float)):
            words = range_text(s)
            raise ValueError(f"value {raw!r} must be {words if words and words.startswith('a number') else 'a number'}")
        else:
            value = float(raw)
        problem = _range_problem(s, value, raw)
        if problem:
            raise ValueError(problem)
        return value
    raise TypeError(f"not a leaf type: {tp!r}")


def _any_quantity(raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise ValueError(f"value {raw!r} must be a number or a quantity")
    for dimension in UNITS:
        try:
            return parse_quantity(raw, dimension)
        except UnitError:
            continue
    raise ValueError(f"cannot read {raw!r} as a number or a quantity with a known unit")


def _check_leaf(tp: Any, s: FieldSpec, value: Any) -> str | None:
    """A problem with an already-built leaf value (base units), or None."""
    tp, optional = _strip_optional(tp)
    if value is None:
        return None if optional else "missing"
    try:
        if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return _range_problem(s, float(value), value)
        if tp is int and s.unit is not None and isinstance(value, int) and not isinstance(value, bool):
            return _range_problem(s, value, value, integer=True)
        parse_leaf(tp, s, value)
    except (UnitError, ValueError) as exc:
        return str(exc)
    return None


# ---- load ----------------------------------------------------------------------------------------

def _yaml_keys(cls: type) -> dict[str, Field]:
    return {f.spec.key: f for f in schema_fields(cls) if f.spec.key is not None}


def parse(cls: type, node: Any, source: str, path: str = "", name: str = "") -> Any:
    """Build ``cls`` from a parsed YAML node, checking every field against the schema."""
    if not isinstance(node, dict):
        raise _fail(source, path, f"expected a mapping, got {_show(node)}")
    keyed = _yaml_keys(cls)
    extra = next((f for f in schema_fields(cls) if f.spec.extra_keys), None)
    for key in node:
        if key not in keyed and extra is None:
            raise _fail(source, _join(path, str(key)), f"unknown key (allowed: {', '.join(sorted(keyed))})")
    for key, f in sorted(keyed.items()):
        if f.required and key not in node:
            raise _fail(source, _join(path, key), "missing")
    own_name = node["name"] if isinstance(node.get("name"), str) and "name" in keyed else name
    values: dict[str, Any] = {}
    for f in schema_fields(cls):
        s = f.spec
        if s.role == "name":
            values[f.name] = name
            continue
        if s.role == "source":
            values[f.name] = source
            continue
        if s.extra_keys:
            entries = {k: v for k, v in node.items() if k not in keyed}
            values[f.name] = _parse_value(f.type, s, entries, source, path, own_name, flat=True)
            continue
        assert s.key is not None
        if s.key not in node:
            if s.yaml_default is not NO_DEFAULT:
                values[f.name] = s.yaml_default
            continue  # the dataclass default
        values[f.name] = _parse_value(f.type, s, node[s.key], source, _join(path, s.key), own_name)
    obj = cls(**values)
    _hook(obj, source, path)
    return obj


def _parse_value(tp: Any, s: FieldSpec, raw: Any, source: str, path: str, name: str, flat: bool = False) -> Any:
    inner, optional = _strip_optional(tp)
    if raw is None and optional:
        return None
    if is_dataclass(inner):
        return parse(inner, raw, source, path, name)  # type: ignore[arg-type]
    if _is_mapping(inner):
        if not isinstance(raw, dict):
            raise _fail(source, path, f"expected a mapping, got {_show(raw)}")
        if s.non_empty and not raw:
            raise _fail(source, path, "expected a non-empty mapping")
        item = _item_type(inner)
        out = {}
        for key, value in raw.items():
            where = _join(path, str(key))
            if is_dataclass(item):
                if not isinstance(value, dict):
                    raise _fail(source, where, f"expected a mapping, got {_show(value)}")
                out[str(key)] = parse(item, value, source, where, str(key))  # type: ignore[arg-type]
            else:
                out[str(key)] = _leaf(item, s, value, source, where)
        return out
    if _is_tuple(inner):
        if not isinstance(raw, list):
            raise _fail(source, path, f"expected a list, got {_show(raw)}")
        if s.non_empty and not raw:
            raise _fail(source, path, "expected a non-empty list")
        item = _item_type(inner)
        return tuple(parse(item, v, source, _join(path, str(i))) if isinstance(item, type) and is_dataclass(item)
                     else _leaf(item, s, v, source, _join(path, str(i))) for i, v in enumerate(raw))
    return _leaf(inner, s, raw, source, path)


def _leaf(tp: Any, s: FieldSpec, raw: Any, source: str, path: str) -> Any:
    try:
        return parse_leaf(tp, s, raw)
    except (UnitError, ValueError) as exc:
        raise _fail(source, path, str(exc)) from None


def _hook(obj: Any, source: str, path: str) -> None:
    """Cross-field rules a class states in ``schema_problems()`` as (YAML key, message) pairs."""
    check = getattr(obj, "schema_problems", None)
    if check is not None:
        for key, message in check():
            raise _fail(source, _join(path, key), message)


# ---- check a built object ------------------------------------------------------------------------

def validate(obj: Any, source: str, path: str = "") -> None:
    """Check an already-built hardware object (e.g. after an override) as the loader checks a file."""
    for f in schema_fields(type(obj)):
        s = f.spec
        if s.role is not None:
            continue
        value = getattr(obj, f.name)
        where = path if s.extra_keys else _join(path, s.key or f.name)
        _validate_value(f.type, s, value, source, where)
    _hook(obj, source, path)


def _validate_value(tp: Any, s: FieldSpec, value: Any, source: str, path: str) -> None:
    inner, optional = _strip_optional(tp)
    if value is None:
        if not optional:
            raise _fail(source, path, "missing")
        return
    if is_dataclass(inner):
        validate(value, source, path)
    elif _is_mapping(inner) or _is_tuple(inner):
        items = list(value.items()) if _is_mapping(inner) else list(enumerate(value))
        if s.non_empty and not items:
            raise _fail(source, path, "must have at least one entry")
        for key, v in items:
            _validate_value(_item_type(inner), s, v, source, _join(path, str(key)))
    else:
        problem = _check_leaf(inner, s, value)
        if problem:
            raise _fail(source, path, problem)


# ---- dump ----------------------------------------------------------------------------------------

def dump(obj: Any) -> dict[str, Any]:
    """The YAML document (base units, units written out) that :func:`parse` reads back equal."""
    out: dict[str, Any] = {}
    for f in schema_fields(type(obj)):
        s = f.spec
        if s.role is not None:
            continue
        value = getattr(obj, f.name)
        if value is None or (s.yaml_default is not NO_DEFAULT and value == s.yaml_default):
            continue
        if s.extra_keys:
            out.update({k: _dump_value(_item_type(f.type), s, v) for k, v in value.items()})
        else:
            assert s.key is not None
            out[s.key] = _dump_value(f.type, s, value)
    return out


def _dump_value(tp: Any, s: FieldSpec, value: Any) -> Any:
    inner, _ = _strip_optional(tp)
    if is_dataclass(inner):
        return dump(value)
    if _is_mapping(inner):
        return {k: _dump_value(_item_type(inner), s, v) for k, v in value.items()}
    if _is_tuple(inner):
        return [_dump_value(_item_type(inner), s, v) for v in value]
    if s.unit is not None and s.unit != ANY_UNIT and inner in (int, float):
        return f"{value!r} {BASE_UNITS[s.unit]}"
    return value


# ---- every number, for people ----------------------------------------------------------------------

@dataclass(frozen=True)
class Leaf:
    """One value of a hardware description: its YAML path, its value in base units, unit and help."""

    path: str
    field_path: tuple[str, ...]
    value: Any
    unit: str
    help: str


def leaves(obj: Any, path: str = "", field_path: tuple[str, ...] = ()) -> list[Leaf]:
    """Every leaf of ``obj`` in declaration order, unset optionals included (value None)."""
    out: list[Leaf] = []
    for f in schema_fields(type(obj)):
        s = f.spec
        if s.role == "name":
            continue
        value = getattr(obj, f.name)
        if s.role == "source":
            out.append(Leaf("source", (f.name,), value, "", s.help))
            continue
        where = path if s.extra_keys else _join(path, s.key or f.name)
        out += _leaves_of(f.type, s, value, where, (*field_path, f.name))
    return out


def _leaves_of(tp: Any, s: FieldSpec, value: Any, path: str, field_path: tuple[str, ...]) -> list[Leaf]:
    inner, _ = _strip_optional(tp)
    if value is None or not _is_group(inner):
        unit = BASE_UNITS.get(s.unit or "", "") if inner in (int, float) else ""
        return [Leaf(path, field_path, value, unit, s.help)]
    if is_dataclass(inner):
        return leaves(value, path, field_path)
    items = list(value.items()) if _is_mapping(inner) else list(enumerate(value))
    if not items:  # an empty mapping or list still shows, as unset
        return [Leaf(path, field_path, None, "", s.help)]
    out: list[Leaf] = []
    for key, v in items:
        out += _leaves_of(_item_type(inner), s, v, _join(path, str(key)), (*field_path, str(key)))
    return out


# ---- one dotted path (sweep overrides) ---------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """Where a dotted path lands: the dataclass field path, the leaf's type and spec, and its current value."""

    field_path: tuple[str, ...]
    type: Any
    spec: FieldSpec
    current: Any


class PathError(Exception):
    """A dotted path names no leaf: ``reason`` is one of 'unknown', 'unset', 'group', 'leaf'; ``detail`` says more."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


def resolve_path(obj: Any, parts: list[str]) -> Target:
    """Follow YAML keys or dataclass field names (``memory.bandwidth`` or ``memory.bandwidth_bytes_per_s``)."""
    node, tp, s = obj, type(obj), FieldSpec(None, "")
    done: list[str] = []
    for i, part in enumerate(parts):
        inner, _ = _strip_optional(tp)
        where = ".".join(done) or "the hardware"
        if node is None:
            raise PathError("unset", ".".join(done))
        if is_dataclass(inner):
            by_key = {f.spec.key: f for f in schema_fields(inner) if f.spec.key is not None}  # type: ignore[arg-type]
            by_name = {f.name: f for f in schema_fields(inner) if f.spec.role is None}  # type: ignore[arg-type]
            f = by_key.get(part) or by_name.get(part)
            if f is None or f.spec.extra_keys:
                extra = next((x for x in schema_fields(inner) if x.spec.extra_keys), None)  # type: ignore[arg-type]
                if extra is None:
                    allowed = sorted(set(by_key) | {n for n, x in by_name.items() if not x.spec.extra_keys})
                    raise PathError("unknown", f"no field {part!r} under {where} (fields: {', '.join(allowed)})")
                done += [extra.name, part]
                tp, s, node = _item_type(extra.type), extra.spec, getattr(node, extra.name).get(part)
            else:
                done.append(f.name)
                tp, s, node = f.type, f.spec, getattr(node, f.name)
        elif _is_mapping(inner):
            if part not in node:
                have = ", ".join(sorted(node)) or "none"
                raise PathError("unknown", f"{where} has no entry {part!r} (it has: {have})")
            done.append(part)
            tp, node = _item_type(inner), node[part]
        elif _is_tuple(inner):
            if not part.isdigit() or int(part) >= len(node):
                raise PathError("unknown", f"{where} has no entry {part!r} (entries 0..{len(node) - 1})")
            done.append(part)
            tp, node = _item_type(inner), node[int(part)]
        else:
            raise PathError("leaf", f"{where} has no sub-fields")
        if i < len(parts) - 1 and node is None:
            raise PathError("unset", ".".join(done))
    if _is_group(tp):
        raise PathError("group", ".".join(done))
    return Target(tuple(done), tp, s, node)


def replace_at(obj: Any, field_path: tuple[str, ...], value: Any) -> Any:
    """``obj`` with the leaf at ``field_path`` set, rebuilding each frozen level on the way."""
    head, rest = field_path[0], field_path[1:]
    if is_dataclass(obj):
        new = value if not rest else replace_at(getattr(obj, head), rest, value)
        return dataclasses.replace(obj, **{head: new})  # type: ignore[type-var]
    if isinstance(obj, tuple):
        items = list(obj)
        items[int(head)] = value if not rest else replace_at(items[int(head)], rest, value)
        return tuple(items)
    updated = dict(obj)
    updated[head] = value if not rest else replace_at(obj[head], rest, value)
    return updated


# ---- JSON Schema -------------------------------------------------------------------------------------

def json_schema(cls: type, title: str = "hwsim hardware description") -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) of the YAML, for editors' completion and checks."""
    doc = {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": title, **_object_schema(cls)}
    return doc


def _object_schema(cls: type) -> dict[str, Any]:
    props: dict[str, Any] = {}
    extra: Any = False
    for f in schema_fields(cls):
        if f.spec.role is not None:
            continue
        if f.spec.extra_keys:
            extra = _value_schema(_item_type(f.type), f.spec)
            continue
        assert f.spec.key is not None
        props[f.spec.key] = _value_schema(f.type, f.spec, f)
    out: dict[str, Any] = {"type": "object", "description": (cls.__doc__ or "").strip().splitlines()[0],
                           "properties": props, "additionalProperties": extra}
    required = [f.spec.key for f in schema_fields(cls) if f.required and f.spec.key is not None]
    if required:
        out["required"] = required
    return out


def _value_schema(tp: Any, s: FieldSpec, f: Field | None = None) -> dict[str, Any]:
    inner, _ = _strip_optional(tp)
    if is_dataclass(inner):
        out = _object_schema(inner)  # type: ignore[arg-type]
    elif _is_mapping(inner):
        out = {"type": "object", "additionalProperties": _value_schema(_item_type(inner), s)}
        if s.non_empty:
            out["minProperties"] = 1
    elif _is_tuple(inner):
        out = {"type": "array", "items": _value_schema(_item_type(inner), s)}
        if s.non_empty:
            out["minItems"] = 1
    else:
        out = _leaf_schema(inner, s)
    if f is not None:
        out = {**out, "description": _describe(s, inner)}
        if f.has_default and f.default is not None and not _is_group(inner):
            out["default"] = _dump_value(inner, s, f.default)
        elif s.yaml_default is not NO_DEFAULT:
            out["default"] = s.yaml_default
    return out


def _leaf_schema(tp: Any, s: FieldSpec) -> dict[str, Any]:
    choices = _choices(tp)
    if choices is not None:
        return {"type": "string", "enum": list(choices)}
    if tp is str:
        return {"type": "string", "minLength": 1}
    number: dict[str, Any] = {"type": "integer" if tp is int else "number"}
    for key in ("minimum", "exclusive_minimum", "maximum"):
        bound = getattr(s, key)
        if bound is not None:
            number["exclusiveMinimum" if key == "exclusive_minimum" else key] = bound
    if s.unit is None:
        return number
    pattern = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*[A-Za-zµ/]*\s*$"
    return {"anyOf": [number, {"type": "string", "pattern": pattern}]}


def _describe(s: FieldSpec, tp: Any) -> str:
    text = s.help
    if s.unit == ANY_UNIT:
        text += " (a number in base units, or a quantity with a unit)"
    elif s.unit is not None:
        text += f" (a quantity such as {DIMENSION_EXAMPLES[s.unit]}; a bare number is in {BASE_UNITS[s.unit]})"
    words = range_text(s, tp is int)
    if words:
        text += f"; {words}"
    return text


def help_text(s: FieldSpec, tp: Any) -> str:
    """The one-line description ``hwsim hw show`` and the JSON Schema print for a field."""
    return _describe(s, _strip_optional(tp)[0])
