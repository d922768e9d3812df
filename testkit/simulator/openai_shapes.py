"""OpenAI-shaped bodies with deterministic token counts, for the upstream simulator.

Counting rules (tests rely on them being exact):
- a text costs ceil(utf8_bytes / 4) tokens (`count_tokens`);
- chat prompt_tokens = sum over messages of (tokens of its text content + 3);
- completions / embeddings prompt_tokens = sum of the tokens of each input string
  (an input given as token ids counts its length);
- completion_tokens = min(max_tokens, N); the text is N filler words, one token each.
"""

from __future__ import annotations

import orjson

FILLER = ("Lorem", " ipsum", " dolor", " sit", " amet", ",", " consectetur", " adipiscing",
          " elit", ".", " Sed", " do", " eiusmod", " tempor", " incididunt", " ut")


def count_tokens(text: str) -> int:
    """The simulator's tokenizer: ceil(utf8 bytes / 4)."""
    return (len(text.encode()) + 3) // 4


def _text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: only text parts cost tokens here
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def chat_prompt_tokens(messages: list) -> int:
    """Prompt tokens of a chat request: text tokens + 3 per message."""
    return sum(count_tokens(_text_of(m.get("content"))) + 3 for m in messages)


def input_tokens(value: object) -> int:
    """Prompt tokens of a completions prompt or an embeddings input."""
    if isinstance(value, str):
        return count_tokens(value)
    if isinstance(value, list):
        if value and all(isinstance(v, int) for v in value):
            return len(value)
        return sum(input_tokens(v) for v in value)
    return 0


def filler(n: int) -> list[str]:
    """N deterministic one-token pieces."""
    return [FILLER[i % len(FILLER)] for i in range(n)]


def usage(prompt: int, completion: int) -> dict:
    """The OpenAI usage object."""
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def chat_body(rid: str, model: str, created: int, pieces: list[str], finish: str,
              use: dict | None) -> bytes:
    """A non-stream chat.completion."""
    body = {"id": rid, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "finish_reason": finish, "logprobs": None,
                         "message": {"role": "assistant", "content": "".join(pieces)}}]}
    if use is not None:
        body["usage"] = use
    return orjson.dumps(body)


def chat_events(rid: str, model: str, created: int, pieces: list[str], finish: str,
                use: dict | None) -> list[bytes]:
    """SSE events of a chat stream: role, one per piece, finish, [usage], [DONE]."""
    head = _head(rid, "chat.completion.chunk", model, created)

    def chunk(delta: dict, reason: str | None = None) -> bytes:
        return b'%s,"choices":[{"index":0,"delta":%s,"finish_reason":%s,"logprobs":null}]}\n\n' % (
            head, orjson.dumps(delta), orjson.dumps(reason))

    events = [chunk({"role": "assistant", "content": ""})]
    events.extend(chunk({"content": p}) for p in pieces)
    events.append(chunk({}, finish))
    if use is not None:
        events.append(b'%s,"choices":[],"usage":%s}\n\n' % (head, orjson.dumps(use)))
    events.append(b"data: [DONE]\n\n")
    return events


def completion_body(rid: str, model: str, created: int, pieces: list[str], finish: str,
                    use: dict | None) -> bytes:
    """A non-stream text_completion."""
    body = {"id": rid, "object": "text_completion", "created": created, "model": model,
            "choices": [{"index": 0, "text": "".join(pieces), "finish_reason": finish,
                         "logprobs": None}]}
    if use is not None:
        body["usage"] = use
    return orjson.dumps(body)


def completion_events(rid: str, model: str, created: int, pieces: list[str], finish: str,
                      use: dict | None) -> list[bytes]:
    """SSE events of a completions stream: one per piece (last carries finish), [usage]."""
    head = _head(rid, "text_completion", model, created)
    items = pieces or [""]
    last = len(items) - 1
    events = [
        b'%s,"choices":[{"index":0,"text":%s,"logprobs":null,"finish_reason":%s}]}\n\n' % (
            head, orjson.dumps(p), orjson.dumps(finish if i == last else None))
        for i, p in enumerate(items)
    ]
    if use is not None:
        events.append(b'%s,"choices":[],"usage":%s}\n\n' % (head, orjson.dumps(use)))
    events.append(b"data: [DONE]\n\n")
    return events


def embeddings_body(model: str, inputs: list, dims: int, use: dict | None) -> bytes:
    """Deterministic unit-free vectors, one per input."""
    data = [{"object": "embedding", "index": i,
             "embedding": [((i * 31 + j * 7) % 97) / 97.0 for j in range(dims)]}
            for i in range(len(inputs))]
    body: dict = {"object": "list", "model": model, "data": data}
    if use is not None:
        body["usage"] = {"prompt_tokens": use["prompt_tokens"],
                         "total_tokens": use["prompt_tokens"]}
    return orjson.dumps(body)


def error_body(message: str, kind: str, code: str | None = None) -> bytes:
    """The OpenAI error shape."""
    return orjson.dumps({"error": {"message": message, "type": kind, "param": None,
                                   "code": code}})


def _head(rid: str, kind: str, model: str, created: int) -> bytes:
    # "data: {...common fields" without the closing brace: each event only appends its
    # own fields, so a 20-event stream costs one dumps per event, not a dict copy each.
    common = {"id": rid, "object": kind, "created": created, "model": model}
    return b"data: " + orjson.dumps(common)[:-1]
