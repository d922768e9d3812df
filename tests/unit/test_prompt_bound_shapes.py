"""The reserved prompt bound for each input shape of issue 9, one by one.

The properties over random bodies are in test_prompt_bound.py; these pin the reported cases.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.context import ModelRoute
from gateway.v1.estimate import MEDIA_LIMIT_FIELD, bound_prompt, estimate_prompt_tokens, prompt_upper_bound

BOUNDED = ModelRoute("m", "http://upstream/v1", "m", max_image_tokens=1_500, max_audio_tokens=700,
                     max_video_tokens=9_000, max_file_tokens=20_000)
UNBOUNDED = ModelRoute("m", "http://upstream/v1", "m")
NINE_HUNDRED_KB = "x" * 900_000


def chat_with(content: Any, **fields: Any) -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": content}], **fields}


@pytest.mark.parametrize("route", [BOUNDED, UNBOUNDED], ids=["image bound set", "no image bound"])
def test_the_text_of_a_part_typed_image_is_counted_not_replaced_by_an_image_allowance(route):
    body = chat_with([{"type": "image", "text": NINE_HUNDRED_KB}])
    assert prompt_upper_bound(body, "chat", route) >= 900_000


def test_an_image_with_a_configured_bound_counts_that_bound_not_its_data_url():
    url = "data:image/png;base64," + "A" * 500_000
    body = chat_with([{"type": "image_url", "image_url": {"url": url, "detail": "high"}},
                      {"type": "text", "text": "what is this?"}])
    bound = prompt_upper_bound(body, "chat", BOUNDED)
    assert BOUNDED.max_image_tokens <= bound < BOUNDED.max_image_tokens + 200


def test_without_a_configured_bound_an_image_is_counted_by_its_serialized_size():
    url = "data:image/png;base64," + "A" * 500_000
    result = bound_prompt(chat_with([{"type": "image_url", "image_url": {"url": url}}]), "chat", UNBOUNDED)
    assert result.unbounded == "image"
    assert result.tokens >= 500_000


@pytest.mark.parametrize(("part", "kind"), [
    ({"type": "input_audio", "input_audio": {"data": "UklGR", "format": "wav"}}, "audio"),
    ({"type": "file", "file": {"file_id": "file-abc"}}, "file"),
    ({"type": "input_file", "file_url": "https://example.com/a.pdf"}, "file"),
    ({"type": "video_url", "video_url": {"url": "https://example.com/a.mp4"}}, "video"),
    ({"type": "input_image", "image_url": "https://example.com/a.png"}, "image")])
def test_audio_video_files_and_images_by_reference_count_their_configured_bound(part, kind):
    assert bound_prompt(chat_with([part]), "chat", UNBOUNDED).unbounded == kind
    bound = prompt_upper_bound(chat_with([part]), "chat", BOUNDED)
    assert bound >= getattr(BOUNDED, MEDIA_LIMIT_FIELD[kind])


@pytest.mark.parametrize("field", ["name", "tool_call_id", "refusal", "reasoning_content", "x-custom"])
def test_every_message_level_field_is_counted(field):
    body = {"model": "m", "messages": [{"role": "user", "content": "hi", field: NINE_HUNDRED_KB}]}
    assert prompt_upper_bound(body, "chat") >= 900_000


@pytest.mark.parametrize("field", ["tools", "functions", "response_format", "tool_choice", "metadata",
                                   "documents", "chat_template_kwargs"])
def test_schemas_and_any_other_top_level_field_are_counted_by_their_serialized_size(field):
    value = [{"type": "function", "function": {"name": "f", "description": NINE_HUNDRED_KB}}]
    assert prompt_upper_bound(chat_with("hi", **{field: value}), "chat") >= len(orjson.dumps(value))


@pytest.mark.parametrize(("endpoint", "field", "value", "at_least"), [
    ("completions", "prompt", [NINE_HUNDRED_KB, "y"], 900_001),
    ("completions", "prompt", [[5] * 1000, [7] * 1000], 2000),
    ("completions", "suffix", NINE_HUNDRED_KB, 900_000),
    ("embeddings", "input", [[3] * 1000], 1000),
    ("embeddings", "input", [{"text": NINE_HUNDRED_KB}], 900_000)],
    ids=["batch of strings", "batch of token ids", "suffix", "token ids", "unknown shape"])
def test_prompt_arrays_and_embedding_inputs_count_every_string_and_token_id(endpoint, field, value,
                                                                             at_least):
    body = {"model": "m", "prompt" if endpoint == "completions" else "input": "", field: value}
    assert prompt_upper_bound(body, endpoint) >= at_least


def test_a_token_id_costs_one_token_not_its_digits():
    assert prompt_upper_bound({"prompt": [123_456] * 1000}, "completions") < 1100


def test_the_billing_estimate_reads_the_text_of_a_media_part_but_not_its_data():
    with_text = chat_with([{"type": "image", "text": "x" * 40_000}])
    with_data = chat_with([{"type": "image_url", "image_url": {"url": "A" * 40_000}}])
    assert estimate_prompt_tokens(with_text, "chat") >= 10_000
    assert estimate_prompt_tokens(with_data, "chat") < 1_000
