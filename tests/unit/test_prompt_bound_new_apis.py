"""The worst-case prompt bound of Responses and Messages requests (issue 15): never below one
token per UTF-8 byte of every string and key an upstream could render from `input` items of
every type, `instructions`, `system`, content blocks (nested tool results included) and tools,
nor below what the simulator counts; media nested in a tool result counted as media."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from gateway.context import ModelRoute
from gateway.v1.estimate import FIELD_NAMES, PARAMETERS, bound_prompt
from testkit.simulator import api_shapes

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
UNBOUNDED = ModelRoute("m", "http://upstream/v1", "m")
BOUNDED = ModelRoute("m", "http://upstream/v1", "m", max_image_tokens=1_500, max_file_tokens=20_000)


def every_string(value: Any) -> int:
    """One token per UTF-8 byte of every string, number and key but the APIs' field names."""
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, list):
        return sum(every_string(v) for v in value)
    if isinstance(value, dict):
        return sum((0 if k in FIELD_NAMES else len(k.encode())) + every_string(v) for k, v in value.items())
    return len(orjson.dumps(value))


def readable(body: dict) -> int:
    return sum(every_string(v) for k, v in body.items() if k not in PARAMETERS)


text = st.text(max_size=12)
long_text = st.text(max_size=200) | st.builds(lambda p, n: p * n, st.text(min_size=1, max_size=3),
                                              st.integers(1, 2_000))
leaf = st.none() | st.booleans() | st.integers(-(2**63), 2**63) | long_text
json_value = st.recursive(leaf, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(text, inner, max_size=3), max_leaves=12)


def typed(kind: str, **fields: st.SearchStrategy) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries({"type": st.just(kind), **fields})


responses_parts = st.one_of(
    typed("input_text", text=long_text), typed("output_text", text=long_text),
    typed("input_image", image_url=long_text), typed("input_file", file_data=long_text),
    typed("refusal", refusal=long_text))
responses_items = st.one_of(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "developer", "assistant"]),
                           "content": long_text | st.lists(responses_parts, max_size=3)},
                          optional={"type": st.just("message")}),
    typed("function_call", call_id=text, name=text, arguments=long_text),
    typed("function_call_output", call_id=text, output=long_text | st.lists(responses_parts, max_size=2)),
    typed("reasoning", summary=st.lists(typed("summary_text", text=long_text), max_size=2),
          encrypted_content=long_text),
    typed("input_image", image_url=long_text),
    st.dictionaries(text, json_value, max_size=3))
tools = st.lists(st.fixed_dictionaries({"type": st.just("function"), "name": text},
                                       optional={"description": long_text, "parameters": json_value}),
                 max_size=2)
responses_bodies = st.fixed_dictionaries(
    {"model": text, "input": long_text | st.lists(responses_items, max_size=4)},
    optional={"instructions": long_text, "tools": tools, "max_output_tokens": st.integers(1, 10**6),
              "reasoning": json_value, "text": json_value, "metadata": json_value, "store": st.booleans()})

source = st.fixed_dictionaries({"type": st.sampled_from(["base64", "url"]), "data": long_text})
blocks = st.one_of(typed("text", text=long_text), typed("image", source=source),
                   typed("document", source=source), typed("thinking", thinking=long_text, signature=text),
                   typed("tool_use", id=text, name=text, input=json_value))
tool_result = typed("tool_result", tool_use_id=text,
                    content=long_text | st.lists(blocks, max_size=3))
messages = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]), "content":
                                           long_text | st.lists(blocks | tool_result, max_size=3)}),
                    max_size=4)
messages_bodies = st.fixed_dictionaries(
    {"model": text, "messages": messages, "max_tokens": st.integers(1, 10**6)},
    optional={"system": long_text | st.lists(typed("text", text=long_text), max_size=2),
              "tools": st.lists(st.fixed_dictionaries({"name": text, "input_schema": json_value}),
                                max_size=2),
              "stop_sequences": st.lists(text, max_size=2), "thinking": json_value, "metadata": json_value})


@PROPERTY
@given(body=responses_bodies)
def test_a_responses_reservation_bounds_every_string_of_input_items_instructions_and_tools(body):
    body = orjson.loads(orjson.dumps(body))
    bound = bound_prompt(body, "responses", UNBOUNDED).tokens
    note(f"bound {bound}, readable {readable(body)}")
    assert bound >= readable(body)
    assert bound >= api_shapes.responses_prompt_tokens(
        {**body, "input": [i for i in body["input"] if isinstance(i, dict)]}
        if isinstance(body["input"], list) else body)


@PROPERTY
@given(body=messages_bodies)
def test_a_messages_reservation_bounds_every_string_of_system_blocks_and_tools(body):
    body = orjson.loads(orjson.dumps(body))
    bound = bound_prompt(body, "messages", UNBOUNDED).tokens
    note(f"bound {bound}, readable {readable(body)}")
    assert bound >= readable(body)
    assert bound >= api_shapes.messages_prompt_tokens(body)


def test_an_image_inside_a_tool_result_is_counted_at_the_models_image_bound():
    image = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
    body = {"messages": [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t", "content": [image]}]}], "max_tokens": 1}
    assert bound_prompt(body, "messages", UNBOUNDED).unbounded == "image"
    bounded = bound_prompt(body, "messages", BOUNDED)
    assert bounded.unbounded is None and bounded.tokens >= 1_500


def test_an_image_given_as_a_bare_responses_input_item_is_counted_as_an_image():
    body = {"input": [{"type": "input_image", "image_url": "https://example.com/a.png"}]}
    assert bound_prompt(body, "responses", UNBOUNDED).unbounded == "image"
    assert bound_prompt(body, "responses", BOUNDED).tokens >= 1_500
