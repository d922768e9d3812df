"""Limits a public server needs, tried over raw sockets: bodies refused before they are read,
half-sent requests and silent connections timed out, a cap on connections (issue 9: 3 and 6)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest

from testkit.simulator.server import Simulator
from tests.support.gateway import ADMIN_TOKEN, RunningGateway, running_gateway, sim_config

ROLES = frozenset({"gateway", "ledger"})
CAP = 64 * 1024
TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    with Simulator(port=0) as sim, running_gateway(
            tmp_path_factory.mktemp("gw-limits"), sim_config(sim.base_url), roles=ROLES,
            max_body_bytes=CAP, request_timeout_s=TIMEOUT_S, keepalive_timeout_s=1.5,
            max_connections=8) as gateway:
        gateway.setup_user("alice")
        yield gateway


def connect(gw: RunningGateway) -> socket.socket:
    host, port = gw.url.removeprefix("http://").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def head(path: str, token: str | None, **headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: gateway", "Content-Type: application/json"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def answer(sock: socket.socket) -> tuple[int, dict[str, str], dict]:
    """One whole response: status, headers (lower-case names) and the JSON body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    raw_head, body = data.split(b"\r\n\r\n", 1)
    status_line, *header_lines = raw_head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in header_lines)}
    while len(body) < int(headers["content-length"]):
        body += sock.recv(65536)
    return int(status_line.split()[1]), headers, json.loads(body)


def closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
        return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_an_unauthenticated_api_post_is_refused_before_a_byte_of_its_body_is_sent(gw) -> None:
    with connect(gw) as sock:
        sock.sendall(head("/api/keys", None, content_length=str(300 * 1024 * 1024)))
        status, headers, body = answer(sock)
    assert (status, body["error"]["code"]) == (401, "missing_token")
    assert headers["connection"] == "close"


def test_a_wrong_token_is_refused_before_the_body_too(gw) -> None:
    with connect(gw) as sock:
        sock.sendall(head("/api/admin/users", "not-a-token", content_length="50000"))
        status, _, body = answer(sock)
    assert (status, body["error"]["code"]) == (401, "invalid_token")


def test_a_declared_length_over_the_cap_is_refused_with_413_before_the_body(gw) -> None:
    with connect(gw) as sock:
        sock.sendall(head("/api/admin/users", ADMIN_TOKEN, content_length=str(CAP + 1)))
        status, headers, body = answer(sock)
    assert (status, body["error"]["code"]) == (413, "request_too_large")
    assert str(CAP) in body["error"]["message"] and headers["connection"] == "close"


def test_a_chunked_body_is_refused_the_moment_it_passes_the_cap(gw) -> None:
    chunk = b"x" * 16384
    with connect(gw) as sock:
        sock.sendall(head("/api/admin/users", ADMIN_TOKEN, transfer_encoding="chunked"))
        for _ in range(CAP // len(chunk) + 1):
            sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        status, _, body = answer(sock)
    assert (status, body["error"]["code"]) == (413, "request_too_large")


def test_a_malformed_content_length_is_a_clear_400(gw) -> None:
    with connect(gw) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: g\r\nContent-Length: 12abc\r\n\r\n")
        data = sock.recv(65536)
    assert data.startswith(b"HTTP/1.1 400")


def test_an_authenticated_api_post_under_the_cap_is_served(gw) -> None:
    body = json.dumps({"user_id": "bob", "role": "user"}).encode()
    with connect(gw) as sock:
        sock.sendall(head("/api/admin/users", ADMIN_TOKEN, content_length=str(len(body))) + body)
        status, _, answered = answer(sock)
    assert status == 201 and answered["user_id"] == "bob"


def test_headers_without_their_closing_blank_line_are_timed_out_with_408(gw) -> None:
    with connect(gw) as sock:
        sock.sendall(b"POST /api/keys HTTP/1.1\r\nHost: gateway\r\nContent-Length: 10\r\n")
        started = time.monotonic()
        status, headers, body = answer(sock)
        assert closed_within(sock, 5)
    assert (status, body["error"]["code"]) == (408, "request_timeout")
    assert TIMEOUT_S <= time.monotonic() - started < TIMEOUT_S + 3
    assert headers["connection"] == "close"


@pytest.mark.parametrize("path", ["/api/admin/users", "/v1/chat/completions"])
def test_a_body_shorter_than_its_content_length_is_timed_out(gw, path: str) -> None:
    token = ADMIN_TOKEN if path.startswith("/api") else gw.issue_key("alice")["key"]
    with connect(gw) as sock:
        sock.sendall(head(path, token, content_length="100") + b'{"user_id":')
        assert closed_within(sock, TIMEOUT_S + 4)


def test_a_connection_that_never_sends_a_request_is_closed(gw) -> None:
    with connect(gw) as sock:
        assert closed_within(sock, TIMEOUT_S + 4)


def test_an_idle_keep_alive_connection_is_closed_after_its_timeout(gw) -> None:
    with connect(gw) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
        assert answer(sock)[0] == 200
        assert closed_within(sock, 5)


def test_a_connection_over_the_cap_is_refused_with_a_clear_503(gw) -> None:
    held = []
    try:
        for _ in range(8):
            held.append(connect(gw))
            held[-1].sendall(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
            assert answer(held[-1])[0] == 200
        with connect(gw) as extra:
            status, headers, body = answer(extra)
        assert (status, body["error"]["code"]) == (503, "too_many_connections")
        assert headers["connection"] == "close"
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.2)  # the server sees the closes
    with connect(gw) as again:
        again.sendall(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
        assert answer(again)[0] == 200


def test_a_stream_that_lasts_longer_than_the_request_timeout_is_not_cut(tmp_path) -> None:
    with Simulator(port=0, chunk_delay_ms=250) as sim, running_gateway(
            tmp_path, sim_config(sim.base_url), roles=ROLES, request_timeout_s=TIMEOUT_S) as gw:
        gw.setup_user("carol")
        key = gw.issue_key("carol")["key"]
        with gw.client(key) as client, client.stream(
                "POST", "/v1/chat/completions", json={"model": "sim", "stream": True, "max_tokens": 10,
                                                      "messages": [{"role": "user", "content": "hi"}]}
        ) as response:
            lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert response.status_code == 200 and lines[-1] == "data: [DONE]"
    assert len(lines) >= 11
