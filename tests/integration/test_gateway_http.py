"""The /v1 answers at the HTTP level: keep-alive, pipelining, Connection: close, and bytes.

The fast path writes its JSON answers straight to uvicorn's connection
(gateway/v1/direct_write.py). These tests speak raw HTTP/1.1 to a running gateway and hold
those answers to what uvicorn's own ASGI `send` writes for the same response.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator

import pytest

import gateway.v1.direct_write as direct_write
import gateway.v1.fast_path as fast_path
from testkit.simulator.server import Simulator
from tests.support.gateway import RunningGateway, running_gateway, sim_config

ROLES = frozenset({"gateway", "ledger"})


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    with Simulator(port=0) as sim, running_gateway(tmp_path_factory.mktemp("gw-http"),
                                                   sim_config(sim.base_url), roles=ROLES) as gateway:
        gateway.setup_user("alice")
        yield gateway


@pytest.fixture(scope="module")
def secret(gw: RunningGateway) -> str:
    return gw.issue_key("alice")["key"]


@pytest.fixture
def direct_writes(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """What every direct-write attempt returned (True: the answer bypassed ASGI's send)."""
    seen: list[bool] = []
    real = fast_path.write_json

    def counting(send, response) -> bool:
        seen.append(real(send, response))
        return seen[-1]

    monkeypatch.setattr(fast_path, "write_json", counting)
    return seen


def request_head(gw: RunningGateway, secret: str | None, length: int, close: bool = False,
                 expect_continue: bool = False) -> bytes:
    """The head of a POST /v1/chat/completions declaring a body of `length` bytes."""
    port = gw.url.rsplit(":", 1)[1]
    lines = ["POST /v1/chat/completions HTTP/1.1", f"Host: 127.0.0.1:{port}",
             "Content-Type: application/json", f"Content-Length: {length}"]
    if secret is not None:
        lines.append(f"Authorization: Bearer {secret}")
    if close:
        lines.append("Connection: close")
    if expect_continue:
        lines.append("Expect: 100-continue")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def request(gw: RunningGateway, secret: str | None, body: dict, close: bool = False) -> bytes:
    payload = json.dumps(body).encode()
    return request_head(gw, secret, len(payload), close) + payload


def read_response(sock: socket.socket, buffer: bytearray) -> tuple[int, dict[str, str], bytes]:
    """One response from the socket (Content-Length framing); leftover bytes stay in `buffer`."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        assert chunk, "the connection closed before a whole response arrived"
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        assert name.lower() not in headers, f"header {name} sent twice"
        headers[name.lower()] = value.strip()
    length = int(headers["content-length"])
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "the connection closed inside a body"
        rest += chunk
    buffer[:] = rest[length:]
    return int(status_line.split()[1]), headers, rest[:length]


def connect(gw: RunningGateway) -> socket.socket:
    host, port = gw.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


CHAT = {"model": "sim", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def test_answers_on_one_kept_alive_connection_are_framed_and_written_directly(gw, secret, direct_writes):
    with connect(gw) as sock:
        buffer = bytearray()
        for _ in range(3):
            sock.sendall(request(gw, secret, CHAT))
            status, headers, body = read_response(sock, buffer)
            assert status == 200
            assert headers["content-type"] == "application/json"
            assert "connection" not in headers
            assert json.loads(body)["model"] == "sim"
            assert {"date", "server"} <= set(headers)  # uvicorn's default headers, as on every route
        assert buffer == b""
    assert direct_writes == [True, True, True]


def test_pipelined_requests_are_answered_in_order(gw, secret, direct_writes):
    with connect(gw) as sock:
        sock.sendall(request(gw, None, CHAT) + request(gw, secret, CHAT) + request(gw, "sk-ml-nope", CHAT))
        buffer = bytearray()
        statuses = [read_response(sock, buffer)[0] for _ in range(3)]
    assert statuses == [401, 200, 401]
    assert direct_writes == [True, True, True]


def test_connection_close_is_honoured_after_the_answer(gw, secret, direct_writes):
    with connect(gw) as sock:
        sock.sendall(request(gw, secret, CHAT, close=True))
        buffer = bytearray()
        status, headers, _ = read_response(sock, buffer)
        assert status == 200
        assert headers["connection"] == "close"
        assert sock.recv(1024) == b""  # the server closed its side
    assert direct_writes == [True]


def test_a_direct_answer_has_the_bytes_uvicorns_send_would_have_written(gw, monkeypatch):
    def exchange() -> bytes:
        with connect(gw) as sock:
            sock.sendall(request(gw, "sk-ml-never-issued", CHAT, close=True))
            raw = b""
            while chunk := sock.recv(65536):
                raw += chunk
        # the Date header and the refusal's request id are the only parts that may differ
        raw = re.sub(rb"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", b"ID", raw)
        return b"\r\n".join(line for line in raw.split(b"\r\n") if not line.startswith(b"date:"))

    direct = exchange()
    monkeypatch.setattr(fast_path, "write_json", lambda send, response: False)
    through_asgi = exchange()
    assert direct == through_asgi
    assert direct.startswith(b"HTTP/1.1 401 ")


def dechunk(raw: bytes) -> tuple[bytes, list[bytes]]:
    """The head and the chunks of a chunked answer, holding each chunk to its declared size."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    chunks = []
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            assert rest == b"\r\n", "bytes after the last chunk"
            return head, chunks
        assert rest[size:size + 2] == b"\r\n", "a chunk longer or shorter than its size line"
        chunks.append(rest[:size])
        rest = rest[size + 2:]


def test_a_streamed_answer_written_directly_has_the_framing_uvicorns_send_writes(gw, secret, monkeypatch):
    def exchange() -> tuple[bytes, list[bytes]]:
        with connect(gw) as sock:
            sock.sendall(request(gw, secret, {**CHAT, "stream": True}, close=True))
            raw = b""
            while chunk := sock.recv(65536):
                raw += chunk
        head, chunks = dechunk(raw)
        head = b"\r\n".join(line for line in head.split(b"\r\n")
                             if not line.startswith((b"date:", b"x-request-id:")))
        return head, [re.sub(rb"[0-9a-f-]{8,}|\d+", b"N", chunk) for chunk in chunks]

    used: list[bool] = []
    real = direct_write.body_writer
    monkeypatch.setattr(direct_write, "body_writer", lambda send: used.append(True) or real(send))
    direct = exchange()
    monkeypatch.setattr(direct_write, "body_writer", lambda send: None)
    through_asgi = exchange()
    assert used == [True]
    assert direct == through_asgi
    assert direct[0].startswith(b"HTTP/1.1 200 ") and b"transfer-encoding: chunked" in direct[0]
    # what ends the answer (the finish_reason chunk, [DONE]) goes out in one chunk, once metered
    assert direct[1][-1].endswith(b"data: [DONE]\n\n") and b'"finish_reason":"' in direct[1][-1]


@pytest.mark.parametrize(("secret", "declared", "status"), [
    ("sk-ml-never-issued", None, 401),        # a refused key: the body is never asked for
    ("VALID", 10 * 1024 * 1024, 413),         # a declared length past the limit: same
])
def test_a_refused_request_is_answered_without_inviting_its_body(gw, secret, declared, status):
    key = gw.issue_key("alice")["key"] if secret == "VALID" else secret
    length = declared or len(json.dumps(CHAT).encode())
    with connect(gw) as sock:
        # the head only: a client that honours Expect waits for 100 Continue before its body
        sock.sendall(request_head(gw, key, length, expect_continue=True))
        answer = sock.recv(65536)
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer[:80]
    assert b"100 Continue" not in answer


def test_a_request_that_waits_for_100_continue_gets_it_and_is_served(gw, secret):
    payload = json.dumps(CHAT).encode()
    with connect(gw) as sock:
        sock.sendall(request_head(gw, secret, len(payload), expect_continue=True))
        assert sock.recv(65536).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(payload)
        status, _, body = read_response(sock, bytearray())
    assert status == 200 and json.loads(body)["model"] == "sim"
