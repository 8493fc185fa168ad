"""The strict YAML schema on its own, with a dataclass that is not the toolkit's config."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import pytest

from maskrcnn_toolkit.core.errors import UserError
from maskrcnn_toolkit.modeling.schema import apply_overrides, build_dataclass


@dataclass
class Inner:
    ratio: float = 0.5
    tags: list[str] = field(default_factory=list)


@dataclass
class Outer:
    name: str
    count: Optional[int] = None
    inner: Inner = field(default_factory=Inner)


def test_defaults_nesting_and_int_accepted_as_float():
    got = build_dataclass(Outer, {"name": "a", "inner": {"ratio": 2, "tags": ["x"]}}, "f.yaml")
    assert got == Outer("a", None, Inner(2.0, ["x"]))
    assert isinstance(got.inner.ratio, float)


@pytest.mark.parametrize("data, words", [
    ({"name": "a", "inner": {"ratoi": 1.0}},
     ["f.yaml", "unknown key 'inner.ratoi'", "did you mean 'ratio'", "valid keys in inner"]),
    ({"count": 1}, ["f.yaml", "missing required key 'name'"]),
    ({"name": "a", "count": True}, ["f.yaml: count must be an integer, got True"]),
    ({"name": "a", "inner": {"tags": "x"}}, ["inner.tags must be a list of a string"]),
    ({"name": "a", "inner": 3}, ["inner must be a mapping of keys"]),
])
def test_refusals_name_the_file_and_the_dotted_key(data, words):
    with pytest.raises(UserError) as e:
        build_dataclass(Outer, data, "f.yaml")
    for w in words:
        assert w in str(e.value)


def test_overrides_dotted_or_nested_and_the_input_is_not_modified():
    raw = {"name": "a", "inner": {"ratio": 1.0}}
    got = apply_overrides(raw, {"inner.tags": ["t"], "count": 3, "inner": {"ratio": 0.25}})
    assert got == {"name": "a", "count": 3, "inner": {"ratio": 0.25, "tags": ["t"]}}
    assert raw == {"name": "a", "inner": {"ratio": 1.0}}
