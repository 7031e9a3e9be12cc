"""Limits of a real `casetrail serve` (httptools and uvloop, `gateway.http.limits`), over sockets:
a 1 MB header, 10,000 headers, a body over the limit, a client that never finishes its headers,
a connection that sends nothing. Each is refused or closed; none holds the server.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.http import limits

CASETRAIL = str(Path(sys.executable).with_name("casetrail"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    home = tmp_path_factory.mktemp("limits")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CASETRAIL_")}
    environ["CASETRAIL_HOME"] = str(home)
    keys = subprocess.run(
        [CASETRAIL, "keys", "init"], env=environ, capture_output=True, text=True, check=False
    )
    assert keys.returncode == 0, keys.stderr
    port = _free_port()
    process = subprocess.Popen(
        [CASETRAIL, "serve", "--port", str(port), "--no-messaging"],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail(f"server did not start: {process.communicate()[1]}")
            time.sleep(0.2)
        yield port
    finally:
        process.terminate()
        process.communicate(timeout=30)


def _exchange(port: int, request: bytes, *, wait: float = 5.0) -> bytes:
    """Send `request` (as much of it as the server takes), then read until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        # Refused before all of it was sent: the answer, if any, is read below.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        return _read_all(sock)


def _read_all(sock: socket.socket) -> bytes:
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        received += b"<still open>"
    return received


def _status(answer: bytes) -> int | None:
    if not answer.startswith(b"HTTP/1.1 "):
        return None
    return int(answer[9:12])


def _refused(answer: bytes, status: int) -> None:
    """The server answered `status` and closed, or reset the connection; never a 2xx."""
    assert not answer.endswith(b"<still open>"), "the connection was kept open"
    assert _status(answer) in (status, None), answer[:200]
    if answer:
        head = answer.split(b"\r\n\r\n", 1)[0].lower()
        assert b"application/problem+json" in head
        assert b"connection: close" in head
        assert b"cache-control: no-store" in head
        assert b"x-frame-options: deny" in head


def _alive(port: int) -> None:
    assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200


def test_a_one_megabyte_header_is_refused(server: int) -> None:
    for size in (1024 * 1024, 64 * 1024, limits.MAX_HEAD_BYTES + 1):
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * size + b"\r\n\r\n"
        _refused(_exchange(server, request), 431)
    # A large request line is a large head too.
    _refused(_exchange(server, b"GET /healthz?q=" + b"b" * (64 * 1024) + b" HTTP/1.1\r\n"), 431)
    _alive(server)


def test_ten_thousand_headers_are_refused(server: int) -> None:
    for count in (10_000, 1_000, limits.MAX_HEADERS + 1):
        headers = b"".join(b"X-H%d: 1\r\n" % i for i in range(count))
        answer = _exchange(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
        _refused(answer, 431)
    few = b"".join(b"X-H%d: 1\r\n" % i for i in range(20))
    answer = _exchange(
        server, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + few + b"\r\n"
    )
    assert _status(answer) == 200, answer[:200]


def test_a_body_over_the_limit_is_refused(server: int) -> None:
    for size in (limits.MAX_BODY_BYTES + 1, 4 * 1024 * 1024):
        announced = httpx.post(
            f"http://127.0.0.1:{server}/v1/cases",
            content=b"{" + b" " * (size - 2) + b"}",
            headers={"Content-Type": "application/json"},
            timeout=10,
        )
        assert announced.status_code == 413
        assert announced.json()["type"] == "urn:casetrail:problem:body-too-large"
    # Chunked: no length announced, counted while read.
    head = (
        b"POST /v1/cases HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"%x\r\n" % 65536 + b" " * 65536 + b"\r\n"
    count = limits.MAX_BODY_BYTES // 65536 + 2
    _refused(_exchange(server, head + chunk * count + b"0\r\n\r\n"), 413)
    _alive(server)


def test_slow_and_silent_clients_are_closed(server: int) -> None:
    """One sends half a header and waits; one sends nothing. Both are closed after the
    head's timeout, while the server goes on answering others."""
    wait = limits.HEAD_TIMEOUT_SECONDS + 5
    started = time.monotonic()
    with (
        socket.create_connection(("127.0.0.1", server), timeout=wait) as slow,
        socket.create_connection(("127.0.0.1", server), timeout=wait) as silent,
        socket.create_connection(("127.0.0.1", server), timeout=wait) as trickle,
    ):
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Unfinished: abc")
        trickle.sendall(b"GET /healthz HTTP/1.1\r\n")
        _alive(server)
        # A byte every second keeps no connection open past the head's timeout.
        for _ in range(int(limits.HEAD_TIMEOUT_SECONDS) + 2):
            try:
                trickle.sendall(b"X")
            except OSError:
                break
            time.sleep(1)
        for sock in (slow, silent, trickle):
            answer = _read_all(sock)
            assert not answer.endswith(b"<still open>"), "a connection was kept open"
            assert _status(answer) in (408, None), answer[:200]
    elapsed = time.monotonic() - started
    assert elapsed < limits.HEAD_TIMEOUT_SECONDS + 5
    _alive(server)


def test_answers_over_real_http_carry_the_headers(server: int) -> None:
    answer = httpx.get(f"http://127.0.0.1:{server}/v1/taxonomy", timeout=5)
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["x-frame-options"] == "DENY"
    assert "server" not in answer.headers  # no software named
    assert httpx.get(f"http://127.0.0.1:{server}/healthz", timeout=5).json() == {"status": "ok"}
