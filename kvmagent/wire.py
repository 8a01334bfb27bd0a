"""Checking and encoding protocol messages: shared by the real agent and the simulator.

validate() checks a decoded JSON body against a command dataclass of kvmagent.protocol: required
fields present, JSON types right (an int is not a string, a list is a list), nested VolumeTO /
NicTO too; unknown fields are ignored, as protocol.from_wire ignores them.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

from kvmagent import protocol as p


class WireError(Exception):
    """A command body that does not fit its dataclass; the message names the field."""


_BASIC: dict[str, tuple[type, ...]] = {
    "str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "list": (list,), "dict": (dict,),
}


class _FieldSpec(NamedTuple):
    name: str
    required: bool
    nullable: bool
    types: tuple[type, ...] | None  # None: not checked
    nested: type | None  # a transfer-object class, for the value or each list item


_SPECS: dict[type, tuple[_FieldSpec, ...]] = {}


def _spec(cls: type) -> tuple[_FieldSpec, ...]:
    spec = _SPECS.get(cls)
    if spec is not None:
        return spec
    out = []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        parts = [x.strip() for x in str(f.type).split("|")]
        nullable = "None" in parts
        base = parts[0]
        head = base.split("[", 1)[0]
        nested = p.NESTED.get((cls.__name__, f.name))
        types = (dict,) if nested is not None and head != "list" else _BASIC.get(head)
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        out.append(_FieldSpec(f.name, required, nullable, types, nested))
    spec = _SPECS[cls] = tuple(out)
    return spec


def validate(cls: type, data: Any, where: str) -> None:
    """Raise WireError naming the first field of `data` that does not fit dataclass `cls`."""
    if not isinstance(data, dict):
        raise WireError(f"{where}: expected a JSON object, got {type(data).__name__}")
    for fs in _spec(cls):
        if fs.name not in data:
            if fs.required:
                raise WireError(f"{where}: missing required field {fs.name}")
            continue
        v = data[fs.name]
        if v is None:
            if not fs.nullable:
                raise WireError(f"{where}: field {fs.name} must not be null")
            continue
        if fs.types is not None and (not isinstance(v, fs.types) or (isinstance(v, bool) and bool not in fs.types)):
            raise WireError(f"{where}: field {fs.name} must be {fs.types[0].__name__}, not {type(v).__name__}")
        if fs.nested is not None:
            items = v if isinstance(v, list) else [v]
            for i, item in enumerate(items):
                validate(fs.nested, item, f"{where}.{fs.name}" + (f"[{i}]" if isinstance(v, list) else ""))


_REPLY_FIELDS: dict[type, tuple[str, ...]] = {}


def encode_reply(reply: p.Reply) -> dict[str, Any]:
    """A reply dataclass as a wire dict (replies are flat, so no deep copy is needed)."""
    cls = type(reply)
    names = _REPLY_FIELDS.get(cls)
    if names is None:
        names = _REPLY_FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return {n: getattr(reply, n) for n in names}


def failure(message: str) -> dict[str, Any]:
    return {"success": False, "error": message}
