"""A JSON response whose body is already encoded: the hot path's answer.

Starlette's Response builds its headers through a generic path (media type, charset,
a header scan) that costs more than the rest of writing the answer; this one sets the
two headers a JSON body needs and any extra ones, and is otherwise a Starlette Response.
"""

from __future__ import annotations

from starlette.responses import Response

_JSON = (b"content-type", b"application/json")


class JsonBytesResponse(Response):
    media_type = "application/json"

    def __init__(self, body: bytes, status_code: int = 200, headers: dict[str, str] | None = None
                 ) -> None:
        self.status_code = status_code
        self.body = body
        self.background = None
        self.raw_headers = [_JSON, (b"content-length", str(len(body)).encode())]
        if headers:
            self.raw_headers += [(name.lower().encode("latin-1"), value.encode("latin-1"))
                                 for name, value in headers.items()]
