"""The unit client's calls to the API (`gateway.messaging.unit_client.ApiReporter`) fail as
`ReportFailed`, whatever way the API's answer breaks: the client then tries again later, and
its loop of taking notices goes on (an exception of another kind would have ended it).

Real HTTP on loopback: a server that answers too little (a body cut short, an answer that is no
HTTP, a connection closed before the answer), and one that answers what is not JSON.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from gateway.messaging.unit_client import ApiReporter, ReportFailed

MESSAGE = "3f1c2a9e-5b7d-4c11-9d2e-8a6b4f0e1c77"


@contextmanager
def answering(answer: bytes) -> Iterator[str]:
    """A loopback server that reads one request per connection, sends `answer`, closes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    request += chunk
                conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()


BROKEN: dict[str, bytes] = {
    "a body cut short": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"id\"",
    "no HTTP at all": b"SSH-2.0-OpenSSH_9.2\r\n",
    "closed before answering": b"",
    "a status line without a code": b"HTTP/1.1 OK\r\n\r\n",
}


@pytest.mark.parametrize("answer", BROKEN.values(), ids=BROKEN.keys())
@pytest.mark.parametrize(
    "call",
    [lambda r: r.receipt(MESSAGE), lambda r: r.inbox()],
    ids=["receipt", "inbox"],
)
def test_a_broken_answer_is_a_report_failure(
    answer: bytes, call: Callable[[ApiReporter], object]
) -> None:
    with answering(answer) as url, pytest.raises(ReportFailed, match="not reachable"):
        call(ApiReporter(url, "token", timeout=5))


def test_an_inbox_that_is_not_json_is_a_report_failure() -> None:
    body = b"<html>gateway</html>"
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    with answering(answer) as url, pytest.raises(ReportFailed, match="not reachable"):
        ApiReporter(url, "token", timeout=5).inbox()
