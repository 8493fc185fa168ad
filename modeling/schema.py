"""A strict YAML schema: a dataclass *is* the schema (field names = keys, type hints = types).

:func:`build_dataclass` turns a mapping read from YAML into an instance of the dataclass,
or raises :class:`UserError` naming the file and the dotted key: an unknown key (with the
closest valid key), a missing required key, or a value of the wrong type. Nested dataclass
fields are nested mappings; a missing key takes the field's default.

Supported hints: ``int``, ``float`` (an integer is accepted and converted), ``str``,
``bool``, ``list[X]``, ``Optional[X]`` (null allowed) and nested dataclasses. YAML
``true``/``false`` are refused where a number is expected (Python counts bools as ints).
This module knows nothing about what the keys mean; value checks belong to the caller.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import typing
from typing import Any

from maskrcnn_toolkit.core.errors import UserError


def did_you_mean(key: str, valid: list[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``valid`` to ``key``, or ``""``."""
    m = difflib.get_close_matches(key, valid, n=1, cutoff=0.4)
    return f"; did you mean {m[0]!r}?" if m else ""


def _type_name(hint) -> str:
    origin = typing.get_origin(hint)
    if origin is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return f"{_type_name(args[0])} or null"
    if origin is list:
        return f"a list of {_type_name(typing.get_args(hint)[0])}"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false"}.get(
        hint, str(hint))


def _check_value(value, hint, where: str, path: str):
    origin = typing.get_origin(hint)
    if origin is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return None if value is None else _check_value(value, args[0], where, path)
    bad = UserError(f"{path}: {where} must be {_type_name(hint)}, got {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise bad
        return [_check_value(v, typing.get_args(hint)[0], where, path) for v in value]
    if hint is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if hint is int:
        # YAML true/false are bools, which Python also counts as ints: refuse them.
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise bad
        return value
    raise TypeError(hint)


def build_dataclass(cls, data: Any, path: str, prefix: str = ""):
    """Build dataclass ``cls`` from a YAML mapping, refusing unknown keys and wrong types.

    ``path`` (the YAML file) heads every message; ``prefix`` is the dotted key of ``data``
    inside it (``"train."``), empty at the top. ``None`` counts as an empty mapping.
    """
    where = prefix.rstrip(".") or "the config"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: {where} must be a mapping of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            full = f"{prefix}{key}"
            raise UserError(f"{path}: unknown key {full!r}{did_you_mean(str(key), list(fields))} "
                            f"(valid keys in {where}: {', '.join(fields)})")
    kwargs = {}
    for name, f in fields.items():
        hint = hints[name]
        required = (f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
        if name not in data:
            if required:
                raise UserError(f"{path}: missing required key {prefix}{name!r}")
            continue
        if dataclasses.is_dataclass(hint):
            kwargs[name] = build_dataclass(hint, data[name], path, f"{prefix}{name}.")
        else:
            kwargs[name] = _check_value(data[name], hint, f"{prefix}{name}", path)
    return cls(**kwargs)


def apply_overrides(raw: dict, overrides: dict | None) -> dict:
    """Overrides as dotted keys ({"train.steps": 4}) or nested dicts, applied before checks.

    Returns a new mapping; ``raw`` is not modified.
    """
    raw = copy.deepcopy(raw)
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and "." not in key:
            raw[key] = apply_overrides(raw.get(key) or {}, value)
            continue
        node = raw
        parts = key.split(".")
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                node[p] = {}
            node = node[p]
        node[parts[-1]] = value
    return raw
