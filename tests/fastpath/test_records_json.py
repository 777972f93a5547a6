"""records.to_json stores what json.dumps stored: the same value reads back, including what orjson cannot write."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import pytest
from hypothesis import given, strategies as st

from csms.storage.records import to_json

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def same(a, b) -> bool:
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@given(json_values)
def test_reads_back_as_json_dumps_does(value) -> None:
    assert same(json.loads(to_json(value)), json.loads(json.dumps(value)))


def test_non_finite_and_wide_integers_and_int_keys() -> None:
    value = {"a": math.inf, "b": 2**70, "c": None, 1: "x"}
    assert to_json(value) == json.dumps(value)


def test_what_json_refuses_is_still_refused() -> None:
    @dataclass
    class D:
        x: int

    with pytest.raises(TypeError):
        to_json({"d": D(1)})
