"""Token counts without a tokenizer: an upper bound for reservations, an estimate for billing.

The bound: byte-level BPE and SentencePiece-with-byte-fallback tokenizers never emit more
tokens than the UTF-8 bytes of the text, so bytes + a per-message template allowance bounds
the prompt from above. Images are counted at a flat allowance; a prompt given as token ids
counts BYTES_PER_TOKEN per id, so the bound holds it and the estimate is one token per id.
"""

from __future__ import annotations

from typing import Any

MESSAGE_OVERHEAD = 8      # role markers and separators a chat template adds per message
REQUEST_OVERHEAD = 16     # start/end markers of the whole prompt
IMAGE_ALLOWANCE = 2_000   # tokens reserved per image part
BYTES_PER_TOKEN = 4       # the usual ratio for English text, used only for estimates
IMAGE_TYPES = ("image_url", "input_image", "image")


def _text_bytes(value: Any) -> int:
    """UTF-8 bytes of every text in a JSON value (images and token ids at their allowances).

    Dispatches on the exact type, in loops rather than generators: this runs for every request.
    Decoded JSON holds only str, int, float, bool, None, list and dict; bool and float count 0.
    """
    kind = type(value)
    if kind is str:
        return len(value) if value.isascii() else len(value.encode())
    if kind is list:
        total = 0
        for item in value:
            total += _text_bytes(item)
        return total
    if kind is dict:
        if value.get("type") in IMAGE_TYPES:
            return IMAGE_ALLOWANCE
        total = 0
        for key, item in value.items():
            if key != "type":
                total += _text_bytes(item)
        return total
    if kind is int:
        return BYTES_PER_TOKEN  # a token id (prompts may be token ids): one token, at most
    return 0


def prompt_upper_bound(payload: dict[str, Any], endpoint: str) -> int:
    """Most prompt tokens a request can use: never less than what the model will count."""
    if endpoint == "chat":
        messages = payload.get("messages") or []
        tools = payload.get("tools") or []
        return (REQUEST_OVERHEAD + MESSAGE_OVERHEAD * len(messages)
                + _text_bytes(messages) + _text_bytes(tools))
    field = "input" if endpoint == "embeddings" else "prompt"
    return REQUEST_OVERHEAD + _text_bytes(payload.get(field))


def estimate_tokens(text_bytes: int) -> int:
    """A billing estimate for text the upstream did not count (marked usage_source=estimated)."""
    return -(-text_bytes // BYTES_PER_TOKEN)


def estimate_prompt_tokens(payload: dict[str, Any], endpoint: str) -> int:
    if endpoint == "chat":
        messages = payload.get("messages") or []
        return estimate_tokens(_text_bytes(messages)) + 3 * len(messages)
    field = "input" if endpoint == "embeddings" else "prompt"
    return estimate_tokens(_text_bytes(payload.get(field)))
