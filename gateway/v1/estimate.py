"""Token counts without a tokenizer: an upper bound for reservations, an estimate for billing.

The bound holds whatever shape a request takes. Byte-level BPE and SentencePiece-with-byte-
fallback tokenizers never emit more tokens than the UTF-8 bytes they read, so it counts one
token per byte of everything the model server could read:
- in messages and their content parts, every string value and every key but the API's field
  names (a template picks values by those, it does not write them out); any other value
  (tool_calls, a field unknown here) at its compact JSON size, as templates write it;
- every other field that is not a sampling or output parameter (tools, functions,
  response_format, metadata, fields this code has never heard of) at its compact JSON size:
  each key, string and number with its quotes and separators, because chat templates write
  tool schemas out as JSON text (the strings alone would miss `{"a":1,"b":2}`);
- the endpoint's own prompt (completions `prompt`, embeddings `input`) at its text's bytes, a
  token id at one token, each prompt of a batch with PROMPT_OVERHEAD for its special tokens;
- a chat template's markers: MESSAGE_OVERHEAD a message, REQUEST_OVERHEAD a request.
The model counts an image, audio clip, video or file by its own rule, which the part's bytes do
not bound (a 60-byte URL can name a 4k image), so the part's data counts the model's configured
max_*_tokens instead; without one it counts its bytes and `unbounded` names the kind, for
admission to refuse where a hard or grace budget must hold. Every other field of such a part
(a `text` beside the image) is read like any other text.

The estimate bills text the upstream did not count: bytes / BYTES_PER_TOKEN.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from gateway.context import ModelRoute

MESSAGE_OVERHEAD = 8       # role markers and separators a chat template adds per message
REQUEST_OVERHEAD = 16      # start/end markers of the whole prompt
PROMPT_OVERHEAD = 2        # BOS/EOS (or CLS/SEP) around each prompt of a batch
MEDIA_ESTIMATE_BYTES = 2_000  # an image, clip or file in an estimate: 500 tokens
BYTES_PER_TOKEN = 4        # the usual ratio for English text, used only for estimates
# More tokens than any model reads or writes in one request: an upstream's usage past it is
# malformed (a cost from 10**18 tokens overflows the analytics store's 64-bit columns).
MAX_REPORTED_TOKENS = 2**31 - 1
PROMPT_FIELD = {"chat": "messages", "completions": "prompt", "embeddings": "input",
                "responses": "input", "messages": "messages"}

# Content part types the model counts by its own rule (OpenAI chat and Responses, vLLM, Anthropic).
MEDIA_KINDS = {"image_url": "image", "input_image": "image", "image": "image", "image_pil": "image",
               "image_embeds": "image", "input_audio": "audio", "audio_url": "audio", "audio": "audio",
               "video_url": "video", "video": "video", "file": "file", "input_file": "file",
               "document": "file"}
MEDIA_LIMIT_FIELD = {"image": "max_image_tokens", "audio": "max_audio_tokens",
                     "video": "max_video_tokens", "file": "max_file_tokens"}
# Where a media part carries its data: under its type's name ({"type": "image_url", "image_url":
# {"url": …}}), in an Anthropic-style "source", or Responses-style at the part's top level.
_DATA_FIELDS = ("url", "data", "file_data")
_TOP_DATA_FIELDS = ("image_url", "file_data", "file_url")

# Field names of messages and content parts: a template picks values by them, it does not
# write them out, so they are not counted (every other key is).
FIELD_NAMES = frozenset({
    "role", "content", "name", "tool_calls", "tool_call_id", "function_call", "refusal", "audio",
    "reasoning_content", "type", "text", "image_url", "input_audio", "file", "video_url",
    "audio_url", "url", "detail", "data", "format", "file_data", "file_id", "file_url", "filename"})
# Request parameters no model server reads as prompt text; every other field counts.
PARAMETERS = frozenset({
    "model", "max_tokens", "max_completion_tokens", "n", "best_of", "stream", "stream_options",
    "temperature", "top_p", "top_k", "min_p", "seed", "user", "stop", "logit_bias", "logprobs",
    "top_logprobs", "presence_penalty", "frequency_penalty", "repetition_penalty", "echo",
    "encoding_format", "dimensions", "parallel_tool_calls", "store", "service_tier", "modalities",
    "reasoning_effort", "verbosity", "min_tokens", "ignore_eos", "skip_special_tokens",
    # Responses and Messages: output limits and switches, nothing a template writes out
    "max_output_tokens", "truncation", "background", "stop_sequences", "prompt_cache_key",
    "safety_identifier", "max_tool_calls"})
# Keys whose list value holds content parts again: an Anthropic tool_result's content, a
# Responses function_call_output's output. Their images are counted as images, not as bytes.
NESTED_PARTS = frozenset({"content", "output"})


class PromptBound(NamedTuple):
    tokens: int
    unbounded: str | None = None  # a media kind counted by its bytes for want of a per-model bound


def bound_prompt(payload: dict[str, Any], endpoint: str, route: ModelRoute | None = None) -> PromptBound:
    """Most prompt tokens a request can use: never less than what the model will count."""
    total = REQUEST_OVERHEAD
    unbounded = None
    prompt_field = PROMPT_FIELD[endpoint]
    for field, value in payload.items():
        if field in PARAMETERS:
            continue
        if (field == "messages" or field == prompt_field == "input" and endpoint == "responses") \
                and type(value) is list:
            tokens, kind = _messages(value, route)  # Responses input items read like messages
            total += tokens
            unbounded = unbounded or kind
        elif field == prompt_field:
            total += _prompt(value)
        else:
            total += len(orjson.dumps(value))
    return PromptBound(total, unbounded)


def prompt_upper_bound(payload: dict[str, Any], endpoint: str, route: ModelRoute | None = None) -> int:
    """The tokens of `bound_prompt`."""
    return bound_prompt(payload, endpoint, route).tokens


def _messages(messages: list[Any], route: ModelRoute | None) -> tuple[int, str | None]:
    tokens = MESSAGE_OVERHEAD * len(messages)
    unbounded = None
    for message in messages:
        if type(message) is not dict:
            tokens += len(orjson.dumps(message))
            continue
        item_type = message.get("type")  # a Responses input item may be a bare part
        if type(item_type) is str and item_type in MEDIA_KINDS:  # (a list or dict is no type name)
            size, media = _part(message, route)
            tokens += size
            unbounded = unbounded or media
            continue
        for key, value in message.items():
            if key not in FIELD_NAMES:
                tokens += _utf8(key)
            kind = type(value)
            if kind is str:
                tokens += _utf8(value)
            elif key == "content" and (kind is list or kind is dict):
                for part in value if kind is list else (value,):
                    size, media = _part(part, route)
                    tokens += size
                    unbounded = unbounded or media
            else:
                tokens += len(orjson.dumps(value))  # tool_calls and the like: templates write JSON
    return tokens, unbounded


def _part(part: Any, route: ModelRoute | None) -> tuple[int, str | None]:
    """One content part's size, and its media kind if that has no bound for this model."""
    if type(part) is str:
        return _utf8(part), None
    if type(part) is not dict:
        return len(orjson.dumps(part)), None
    size = 0
    unbounded = None
    for key, value in part.items():
        if key not in FIELD_NAMES:
            size += _utf8(key)
        if type(value) is str:
            size += _utf8(value)
        elif key in NESTED_PARTS and type(value) is list:
            for inner in value:  # nesting is bounded: bodies deeper than 64 levels are refused
                inner_size, media = _part(inner, route)
                size += inner_size
                unbounded = unbounded or media
        else:
            size += len(orjson.dumps(value))
    type_name = part.get("type")
    if type(type_name) is not str or type_name not in MEDIA_KINDS:
        return size, unbounded
    kind = MEDIA_KINDS[type_name]
    limit = getattr(route, MEDIA_LIMIT_FIELD[kind]) if route is not None else None
    if limit is None:
        return size, unbounded or kind  # its data stays counted by its bytes
    return size + limit - _data_bytes(part, type_name), unbounded


def _data_bytes(part: dict[str, Any], kind_key: str) -> int:
    """UTF-8 bytes of a media part's data strings (each also counted by `_text_bytes`)."""
    total = 0
    inner = part.get(kind_key)
    if type(inner) is str:
        total += _utf8(inner)
    for holder in (inner, part.get("source")):
        if type(holder) is dict:
            for field in _DATA_FIELDS:
                value = holder.get(field)
                if type(value) is str:
                    total += _utf8(value)
    for field in _TOP_DATA_FIELDS:
        value = part.get(field)
        if field != kind_key and type(value) is str:
            total += _utf8(value)
    return total


def _prompt(value: Any) -> int:
    """A completions prompt or an embeddings input: text, token ids, or a batch of either."""
    kind = type(value)
    if kind is str:
        return _utf8(value)
    if kind is list:
        if set(map(type, value)) <= {int}:
            return len(value)  # token ids, one token each
        total = 0
        for item in value:
            total += PROMPT_OVERHEAD + _prompt(item)
        return total
    return len(orjson.dumps(value))


def _utf8(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


def _text_bytes(value: Any) -> int:
    """UTF-8 bytes of every text in a JSON value, media data at MEDIA_ESTIMATE_BYTES, ids at one token.

    Dispatches on the exact type, in loops rather than generators: this runs for every request
    the upstream sent no usage for. Decoded JSON holds only str, int, float, bool, None, list and
    dict; bool and float count 0.
    """
    kind = type(value)
    if kind is str:
        return _utf8(value)
    if kind is list:
        total = 0
        for item in value:
            total += _text_bytes(item)
        return total
    if kind is dict:
        total = 0
        for key, item in value.items():
            if key != "type":
                total += _text_bytes(item)
        kind_key = value.get("type")
        if type(kind_key) is str and kind_key in MEDIA_KINDS:
            total += MEDIA_ESTIMATE_BYTES - _data_bytes(value, kind_key)
        return total
    if kind is int:
        return BYTES_PER_TOKEN  # a token id (prompts may be token ids): one token, at most
    return 0


def reported_count(value: Any) -> bool:
    """Whether an upstream's token count is one: an int (not a bool) from 0 to MAX_REPORTED_TOKENS."""
    return type(value) is int and 0 <= value <= MAX_REPORTED_TOKENS


def estimate_tokens(text_bytes: int) -> int:
    """A billing estimate for text the upstream did not count (marked usage_source=estimated)."""
    return -(-text_bytes // BYTES_PER_TOKEN)


def estimate_prompt_tokens(payload: dict[str, Any], endpoint: str) -> int:
    if endpoint in ("chat", "messages"):
        messages = payload.get("messages") or []
        return estimate_tokens(_text_bytes(messages) + _text_bytes(payload.get("system"))) \
            + 3 * len(messages)
    if endpoint == "responses":
        items = payload.get("input")
        count = len(items) if isinstance(items, list) else 1
        return estimate_tokens(_text_bytes(items) + _text_bytes(payload.get("instructions"))) + 3 * count
    field = "input" if endpoint == "embeddings" else "prompt"
    return estimate_tokens(_text_bytes(payload.get(field)))
