"""The worst-case prompt size a reservation holds: never below what a byte-counting upstream counts.

The reference upstreams below are deliberately simple models of the most an upstream could
count for a request. A chat template writes the text fields of messages and parts as they
are, and writes anything else (tool schemas, tool calls, fields it does not know) as JSON.
The upstreams read every string, number and key (but the API's field names, which a template
picks values by) at one token per UTF-8 byte, the most any byte-level tokenizer emits; or
whatever is written as JSON with ", " and ": " (as Jinja's `tojson` writes it) at four bytes a
token. Images, audio, video and files count the model's configured bound in place of their data.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from gateway.context import ModelRoute
from gateway.v1.estimate import MEDIA_LIMIT_FIELD, PARAMETERS, bound_prompt, prompt_upper_bound
from testkit.simulator import openai_shapes as oa

CONTROLS = PARAMETERS  # sampling and output parameters: no upstream reads them as prompt text
PROMPT_FIELD = {"chat": "messages", "completions": "prompt", "embeddings": "input"}
MESSAGE_OVERHEAD = 3  # the simulator's per-message allowance
API_FIELDS = frozenset({"role", "content", "name", "tool_calls", "tool_call_id", "refusal", "type",
                        "text", "image_url", "input_audio", "file", "url", "data", "file_data"})
BOUNDED = ModelRoute("m", "http://upstream/v1", "m", max_image_tokens=1_500, max_audio_tokens=700,
                     max_video_tokens=9_000, max_file_tokens=20_000)
UNBOUNDED = ModelRoute("m", "http://upstream/v1", "m")
KIND_OF = {"image_url": "image", "input_image": "image", "image": "image", "input_audio": "audio",
           "audio_url": "audio", "video_url": "video", "file": "file", "input_file": "file"}
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ----- the reference upstreams --------------------------------------------------------------


def tokens(text: str, bytes_per_token: int) -> int:
    return math.ceil(len(text.encode()) / bytes_per_token)


def every_string(value: Any) -> int:
    """One token per UTF-8 byte of every key, string and number in a JSON value."""
    if isinstance(value, str):
        return tokens(value, 1)
    if isinstance(value, list):
        return sum(every_string(v) for v in value)
    if isinstance(value, dict):
        return sum(tokens(k, 1) + every_string(v) for k, v in value.items())
    return tokens(orjson.dumps(value).decode(), 1)  # numbers, true, false, null as written


def as_json_text(value: Any) -> int:
    """A template that writes the value out as JSON text, at four bytes a token."""
    return tokens(json.dumps(value, ensure_ascii=False), 4)


def media_payload(part: dict) -> list[tuple[Any, Any]]:
    """(container, key) of the strings that carry a media part's data, not text to read."""
    found = []
    kind = part.get("type")
    inner = part.get(kind)
    if isinstance(inner, str):
        found.append((part, kind))
    for holder in (inner, part.get("source")):
        if isinstance(holder, dict):
            found += [(holder, k) for k in ("url", "data", "file_data") if isinstance(holder.get(k), str)]
    found += [(part, k) for k in ("image_url", "file_data", "file_url") if isinstance(part.get(k), str)]
    return found


def without_media(message: Any, route: ModelRoute) -> tuple[Any, int]:
    """The message with bounded media data blanked, and the tokens the bounds add."""
    if not isinstance(message, dict):
        return message, 0
    content = message.get("content")
    parts = content if isinstance(content, list) else [content]
    message = json.loads(json.dumps(message))  # a deep copy to blank the data in
    copies = message["content"] if isinstance(content, list) else [message.get("content")]
    added = 0
    for original, copy in zip(parts, copies, strict=True):
        if not isinstance(original, dict) or original.get("type") not in KIND_OF:
            continue
        bound = getattr(route, MEDIA_LIMIT_FIELD[KIND_OF[original["type"]]])
        if bound is None:
            continue  # no bound: the upstream is taken to read the data as text
        added += bound
        for holder, key in media_payload(copy):
            holder[key] = ""
    return message, added


def fields(value: dict, reader, bytes_per_token: int) -> int:
    """A message or part: its text fields as they are, anything else through `reader`."""
    total = 0
    for key, item in value.items():
        if key not in API_FIELDS:
            total += tokens(key, bytes_per_token)
        if isinstance(item, str):
            total += tokens(item, bytes_per_token)
        elif key == "content" and isinstance(item, list | dict):
            for part in item if isinstance(item, list) else [item]:
                total += (fields(part, reader, bytes_per_token) if isinstance(part, dict)
                          else prompt_count(part, reader, bytes_per_token))
        else:
            total += reader(item)
    return total


def upstream_count(body: dict, endpoint: str, route: ModelRoute, reader, bytes_per_token: int) -> int:
    total = 0
    for field, value in body.items():
        if field in CONTROLS:
            continue
        if field == "messages" and isinstance(value, list):
            for message in value:
                blanked, added = without_media(message, route)
                read = (fields(blanked, reader, bytes_per_token) if isinstance(blanked, dict)
                        else reader(blanked))
                total += MESSAGE_OVERHEAD + read + added
        elif field == PROMPT_FIELD[endpoint]:
            total += prompt_count(value, reader, bytes_per_token)
        else:
            total += reader(value)
    return total


def prompt_count(value: Any, reader, bytes_per_token: int) -> int:
    """A completions prompt or embeddings input: its text as it is, token ids one token each."""
    if isinstance(value, str):
        return tokens(value, bytes_per_token)
    if isinstance(value, int) and not isinstance(value, bool):
        return 1
    if isinstance(value, list):
        return sum(prompt_count(v, reader, bytes_per_token) for v in value)
    return reader(value)


def assert_bounded(body: dict, endpoint: str, route: ModelRoute) -> int:
    body = orjson.loads(orjson.dumps(body))  # what the gateway parses
    bound = prompt_upper_bound(body, endpoint, route)
    for reader, bytes_per_token in ((every_string, 1), (as_json_text, 4)):
        count = upstream_count(body, endpoint, route, reader, bytes_per_token)
        note(f"{reader.__name__}: {count}, bound: {bound}")
        assert bound >= count
    return bound


# ----- random request bodies ----------------------------------------------------------------

text = st.text(max_size=12)
# up to 9 000 characters, so a flat allowance in place of counting (2 000 for an image) shows
long_text = st.text(max_size=300) | st.builds(lambda piece, times: piece * times,
                                              st.text(min_size=1, max_size=3), st.integers(1, 3_000))
leaf = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
        | st.floats(allow_nan=False, allow_infinity=False) | long_text)
json_value = st.recursive(leaf, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(text, inner, max_size=4), max_leaves=16)
extra_fields = st.dictionaries(text, json_value, max_size=2)


def with_extras(shape: st.SearchStrategy[dict]) -> st.SearchStrategy[dict]:
    """The shape with random extra fields (which never replace the shape's own)."""
    return st.builds(lambda extra, own: {**extra, **own}, extra_fields, shape)


def part_of(kind: str, **fields: st.SearchStrategy) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries({"type": st.just(kind), **fields})


parts = st.one_of(
    part_of("text", text=long_text),
    part_of("input_text", text=long_text),
    part_of("image", text=long_text),  # issue 9: a typed part whose text the upstream counted
    part_of("image_url", image_url=st.fixed_dictionaries(
        {"url": long_text}, optional={"detail": st.sampled_from(["low", "high", "auto"])})),
    part_of("image_url", image_url=long_text),  # a bare URL, as some clients send it
    part_of("input_image", image_url=long_text),
    part_of("input_audio", input_audio=st.fixed_dictionaries({"data": long_text, "format": text})),
    part_of("audio_url", audio_url=st.fixed_dictionaries({"url": long_text})),
    part_of("video_url", video_url=st.fixed_dictionaries({"url": long_text})),
    part_of("file", file=st.fixed_dictionaries({"file_data": long_text, "filename": text})),
    part_of("input_file", file_data=long_text, filename=text),
    part_of("refusal", refusal=long_text),
    json_value,  # any other shape a client may send
).flatmap(lambda p: with_extras(st.just(p)) if isinstance(p, dict) else st.just(p))

tool_calls = st.lists(st.fixed_dictionaries({"id": text, "type": st.just("function"), "function":
                                             st.fixed_dictionaries({"name": text, "arguments": long_text})}),
                      max_size=2)
messages = with_extras(st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "developer", "user", "assistant", "tool"]),
     "content": st.none() | long_text | st.lists(parts, max_size=4)},
    optional={"name": text, "tool_calls": tool_calls, "tool_call_id": text, "refusal": long_text}))
scalar_schema = st.fixed_dictionaries({"type": st.sampled_from(["string", "integer"])},
                                     optional={"description": long_text, "enum": st.lists(text)})
schema = st.recursive(scalar_schema, lambda inner: st.fixed_dictionaries(
    {"type": st.just("object"), "properties": st.dictionaries(text, inner, max_size=3)}), max_leaves=6)
tools = st.lists(st.fixed_dictionaries({"type": st.just("function"), "function": st.fixed_dictionaries(
    {"name": text}, optional={"description": long_text, "parameters": schema, "strict": st.booleans()})}),
    max_size=3)
controls = st.fixed_dictionaries({}, optional={
    "model": long_text, "max_tokens": st.integers(1, 10_000), "stream": st.booleans(),
    "temperature": st.floats(0, 2), "stop": st.lists(long_text, max_size=2), "user": long_text,
    "seed": st.integers(0, 2**32)})
token_ids = st.lists(st.integers(0, 2**31 - 1), max_size=50)
prompts = st.one_of(long_text, st.lists(long_text, max_size=4), token_ids,
                    st.lists(token_ids, max_size=4), json_value)


def request(endpoint: str, prompt: st.SearchStrategy, **optional: st.SearchStrategy):
    own = st.fixed_dictionaries({PROMPT_FIELD[endpoint]: prompt}, optional=optional)
    return st.builds(lambda extra, c, o: {**extra, **c, **o}, extra_fields, controls, own)


chat_bodies = request("chat", st.lists(messages, max_size=5), tools=tools, functions=tools,
                      tool_choice=json_value, metadata=json_value, response_format=st.fixed_dictionaries(
                          {"type": st.just("json_schema"), "json_schema": st.fixed_dictionaries(
                              {"name": text, "schema": schema})}))
completion_bodies = request("completions", prompts, suffix=long_text, messages=st.lists(messages, max_size=2))
embedding_bodies = request("embeddings", prompts, dimensions=st.integers(1, 4096))
routes = st.sampled_from([BOUNDED, UNBOUNDED])


# ----- properties ---------------------------------------------------------------------------


@PROPERTY
@given(body=chat_bodies, route=routes)
def test_a_chat_reservation_bounds_whatever_a_byte_counting_upstream_can_count(body, route):
    assert_bounded(body, "chat", route)


@PROPERTY
@given(body=completion_bodies, route=routes)
def test_a_completions_reservation_bounds_prompts_of_strings_token_ids_and_any_other_shape(body, route):
    assert_bounded(body, "completions", route)


@PROPERTY
@given(body=embedding_bodies, route=routes)
def test_an_embeddings_reservation_bounds_every_input_shape(body, route):
    assert_bounded(body, "embeddings", route)


@PROPERTY
@given(body=chat_bodies)
def test_the_bound_is_above_what_the_simulator_counts(body):
    body = orjson.loads(orjson.dumps(body))
    plain = [m for m in body["messages"] if all(
        isinstance(p, dict) and isinstance(p.get("text", ""), str) for p in m.get("content") or []
        if isinstance(m.get("content"), list))]
    assert prompt_upper_bound(body, "chat", BOUNDED) >= oa.chat_prompt_tokens(plain)


@PROPERTY
@given(body=chat_bodies, other=controls)
def test_request_parameters_that_are_not_prompt_text_do_not_change_the_bound(body, other):
    stripped = {k: v for k, v in body.items() if k not in CONTROLS}
    assert prompt_upper_bound({**stripped, **other}, "chat") == prompt_upper_bound(stripped, "chat")


@PROPERTY
@given(body=chat_bodies)
def test_a_media_part_without_a_configured_bound_is_reported_by_its_kind(body):
    body = orjson.loads(orjson.dumps(body))
    kinds = {KIND_OF[p["type"]] for m in body["messages"] if isinstance(m.get("content"), list)
             for p in m["content"] if isinstance(p, dict) and p.get("type") in KIND_OF}
    found = bound_prompt(body, "chat", UNBOUNDED).unbounded
    assert (found in kinds) if kinds else found is None
    assert bound_prompt(body, "chat", BOUNDED).unbounded is None


@PROPERTY
@given(part_type=st.sampled_from([*KIND_OF, "text", "input_text", "thinking"]), route=routes,
       piece=st.text(min_size=1, max_size=2), times=st.integers(0, 50_000), field=st.sampled_from(
           ["text", "caption", "transcript"]))
def test_large_text_beside_a_part_of_any_type_is_counted(part_type, route, piece, times, field):
    assert_bounded({"messages": [{"role": "user", "content": [{"type": part_type, field: piece * times}]}]},
                   "chat", route)
