"""JSON nesting is bounded when the body is parsed: a clear 400, never a 500 further on."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import errors
from gateway.v1.body import MAX_DEPTH, parse_json


def nested(depth: int, leaf: object = "x", container: str = "list") -> object:
    value = leaf
    for _ in range(depth):
        value = [value] if container == "list" else {"k": value}
    return value


def refused(body: bytes) -> errors.GatewayError:
    with pytest.raises(errors.GatewayError) as caught:
        parse_json(body)
    error = caught.value
    assert (error.status, error.code) == (400, "invalid_json")
    return error


def test_a_body_nested_exactly_to_the_limit_is_accepted():
    # the object itself is level 1
    body = orjson.dumps({"metadata": nested(MAX_DEPTH - 1, container="dict")})
    assert parse_json(body)["metadata"] == nested(MAX_DEPTH - 1, container="dict")


@pytest.mark.parametrize("field", ["metadata", "messages", "prompt", "tools"])
@pytest.mark.parametrize("depth", [MAX_DEPTH, 252, 300])
def test_a_body_nested_past_the_limit_is_refused_with_a_400_that_names_the_limit(field, depth):
    error = refused(json.dumps({"model": "m", field: nested(depth)}).encode())  # orjson stops at 255
    assert f"{MAX_DEPTH} levels" in error.message
    assert "flatten" in error.message


def test_nesting_past_what_the_json_parser_itself_allows_gets_the_same_message():
    error = refused(b'{"metadata":' + b"[" * 5000 + b"]" * 5000 + b"}")
    assert f"{MAX_DEPTH} levels" in error.message


def test_brackets_inside_strings_are_not_nesting():
    text = '[{"\\"[' * 500 + "\\\\" + "]}" * 300
    body = orjson.dumps({"messages": [{"role": "user", "content": text}]})
    assert parse_json(body)["messages"][0]["content"] == text


def depth_of(value: object) -> int:
    """The reference: levels of lists and objects, the outermost counting one."""
    if isinstance(value, list):
        return 1 + max(map(depth_of, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(depth_of, value.values()), default=0)
    return 0


tricky = st.text(alphabet='[]{}"\\x\n', max_size=6)
scalars = st.none() | st.integers(-(2**63), 2**63 - 1) | tricky
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(tricky, inner, max_size=3), max_leaves=4)
spine = st.lists(st.tuples(st.booleans(), st.lists(json_values, max_size=2)),
                 min_size=MAX_DEPTH - 6, max_size=MAX_DEPTH + 2)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(core=json_values, wrappers=spine)
def test_a_body_is_refused_exactly_when_it_nests_deeper_than_the_limit(core, wrappers):
    # a deep spine of lists and objects with siblings of their own, strings full of brackets
    value = core
    for as_list, siblings in wrappers:
        named = {f"s{i}": sibling for i, sibling in enumerate(siblings)}
        value = [*siblings, value] if as_list else {**named, "v": value}
    body = {"v": value}
    raw = json.dumps(body).encode()
    if depth_of(body) <= MAX_DEPTH:
        assert parse_json(raw) == body
    else:
        refused(raw)


def test_a_body_that_is_not_json_is_still_refused_as_invalid_json():
    assert "not valid JSON" in refused(b"{nope").message
