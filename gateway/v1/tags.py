"""Request tags: what a client says a request is for, stored as the fact's `labels`.

Three sources, later ones winning on the same name: the OpenAI `user` field (as
`end_user`), the OpenAI `metadata` object, and the `x-meterline-tags` header
(`app=canopy,env=prod`). The `app` tag is the request's application, a grouping of its own
in analytics. Tags are checked here, before anything is counted against the key, so a
malformed one is a clear 400 and costs nothing.
"""

from __future__ import annotations

import re
import unicodedata
from types import MappingProxyType
from typing import Any

from gateway import errors

MAX_TAGS = 16
HEADER_NAME = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
MAX_HEADER_VALUE = 128
MAX_METADATA_KEY, MAX_METADATA_VALUE = 64, 512  # OpenAI's own limits for `metadata`
MAX_END_USER = 256
NO_TAGS: MappingProxyType[str, str] = MappingProxyType({})


def tags_of(header: str | None, payload: dict[str, Any]) -> MappingProxyType[str, str]:
    """The request's tags, or a 400 naming what is wrong with them."""
    metadata, user = payload.get("metadata"), payload.get("user")
    if header is None and metadata is None and user is None:
        return NO_TAGS  # the usual request: nothing to read
    tags: dict[str, str] = {}
    if user is not None:
        tags["end_user"] = _text(user, "user", MAX_END_USER)
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise _bad("'metadata' must be an object of strings, as in {\"app\": \"canopy\"}", "metadata")
        for name, value in metadata.items():
            _text(name, "metadata", MAX_METADATA_KEY, what=f"metadata key {name!r}")
            tags[name] = _text(value, "metadata", MAX_METADATA_VALUE, what=f"metadata[{name!r}]")
    if header is not None:
        tags.update(_header_tags(header))
    if len(tags) > MAX_TAGS:
        raise _bad(f"a request carries at most {MAX_TAGS} tags (x-meterline-tags, metadata and "
                   f"user together); this one has {len(tags)}", "metadata")
    return MappingProxyType(tags)


def _header_tags(header: str) -> dict[str, str]:
    tags = {}
    for item in filter(None, (part.strip() for part in header.split(","))):
        name, equals, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not equals or not HEADER_NAME.fullmatch(name):
            raise _bad(f"x-meterline-tags: {item[:80]!r} is not name=value with a name of 1-64 "
                       "lower-case letters, digits and '_.-' starting with a letter, as in "
                       "'app=canopy,env=prod'", "x-meterline-tags")
        tags[name] = _text(value, "x-meterline-tags", MAX_HEADER_VALUE, what=f"tag {name!r}")
    return tags


def _text(value: object, param: str, limit: int, what: str | None = None) -> str:
    what = what or f"'{param}'"
    if not isinstance(value, str) or not 1 <= len(value) <= limit:
        raise _bad(f"{what} must be a string of 1 to {limit} characters", param)
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs") for ch in value):
        raise _bad(f"{what} must not contain control, format or bidi characters", param)
    return value


def _bad(message: str, param: str) -> errors.GatewayError:
    return errors.bad_request(message, param, code="invalid_tags")
