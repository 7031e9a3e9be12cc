"""What a client may send, and for how long: bounded headers, body and time, at two layers.

- `GuardedHttpToolsProtocol`, the HTTP protocol `casetrail serve` runs (`gateway.serving`):
  uvicorn's httptools protocol has no limit on the size of a request's head and no timeout for a
  client that never finishes sending it, so a 1 MB header, or a connection kept open with half a
  header, would be held for ever. This one answers 431 once the request line and headers pass
  `MAX_HEAD_BYTES`, and closes a connection whose head is not complete `HEAD_TIMEOUT_SECONDS`
  after it opened (or after its previous request ended) with 408.
- `RequestLimits`, an ASGI middleware of the app itself (so the limits hold under any server, and
  in the ASGI tests): more than `MAX_HEADERS` headers or `MAX_HEADER_BYTES` of them answers 431;
  a body above `MAX_BODY_BYTES` (announced, or counted while it is read) answers 413; a body not
  received within `BODY_TIMEOUT_SECONDS` answers 408. The body is read here, under those limits,
  before any endpoint runs. On a web page's path the refusal is the pages' error page (HTML,
  in Chinese, their Content-Security-Policy), as every problem of a page is.

A reverse proxy in front (ops/README.md) should enforce the same or tighter limits; these hold
without one. Proven by `tests/integration/test_http_limits.py` (a real `casetrail serve` over
sockets), `tests/integration/test_http_answers.py` (the ASGI app) and
`tests/web/test_web_review.py` (the pages' refusals).
"""

from __future__ import annotations

import asyncio
import json
from http import HTTPStatus
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.http.problems import MEDIA_TYPE, is_page_path
from gateway.logs import get_logger

# The headers every answer carries, the app's (gateway.http.app.SecurityHeaders) and the
# protocol's own refusals below alike.
API_CSP: Final = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
ALWAYS_HEADERS: Final = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-resource-policy", b"same-origin"),
)
NO_STORE: Final = (b"cache-control", b"no-store")

MAX_HEADERS: Final = 100
MAX_HEADER_BYTES: Final = 16 * 1024  # names and values of all headers together
MAX_HEAD_BYTES: Final = 32 * 1024  # request line and headers as sent, at the protocol
MAX_BODY_BYTES: Final = 256 * 1024  # the largest command is far below: ~20 KB
HEAD_TIMEOUT_SECONDS: Final = 10.0
BODY_TIMEOUT_SECONDS: Final = 30.0

log = get_logger("casetrail.limits")

_REFUSALS: Final = {
    408: ("request-timeout", "The request was not received in time"),
    413: ("body-too-large", "The request body is too large"),
    431: ("headers-too-large", "The request headers are too large"),
}
_DETAILS: Final = {
    "head-timeout": f"the request's headers did not arrive within {HEAD_TIMEOUT_SECONDS:g} s",
    "body-timeout": f"the request's body did not arrive within {BODY_TIMEOUT_SECONDS:g} s",
    "body-size": f"a request body may hold at most {MAX_BODY_BYTES} bytes",
    "head-size": f"the request line and headers may hold at most {MAX_HEAD_BYTES} bytes",
    "header-count": f"a request may carry at most {MAX_HEADERS} headers",
    "header-size": f"a request's headers may hold at most {MAX_HEADER_BYTES} bytes",
}


def refusal_body(status: int, reason: str, request_id: str | None = None) -> bytes:
    """The problem+json body of a refusal; names the limit, never what was sent."""
    code, title = _REFUSALS[status]
    body: dict[str, Any] = {
        "type": f"urn:casetrail:problem:{code}",
        "title": title,
        "status": status,
        "detail": f"{_DETAILS[reason]}; send less, or send it faster",
    }
    if request_id is not None:
        body["request_id"] = request_id
    return json.dumps(body).encode()


# --- the ASGI layer ------------------------------------------------------------------------------


# The same headers as raw lines, for answers written by the protocol itself.
_SECURITY_HEAD: Final = (
    b"".join(name + b": " + value + b"\r\n" for name, value in (*ALWAYS_HEADERS, NO_STORE))
    + b"content-security-policy: "
    + API_CSP.encode()
    + b"\r\n\r\n"
)


class _BodyTooLarge(Exception):
    pass


class RequestLimits:
    """Header count and size, body size and time, before the app sees the request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        if len(headers) > MAX_HEADERS:
            await self._refuse(scope, send, 431, "header-count")
            return
        size = 0
        length: int | None = None
        chunked = False
        for name, value in headers:
            size += len(name) + len(value)
            if name == b"content-length":
                length = int(value) if value.isdigit() else None
            elif name == b"transfer-encoding":
                chunked = True
        if size > MAX_HEADER_BYTES:
            await self._refuse(scope, send, 431, "header-size")
            return
        if length is not None and length > MAX_BODY_BYTES:
            await self._refuse(scope, send, 413, "body-size")
            return
        if not chunked and not length:
            await self.app(scope, receive, send)  # no body: nothing to bound
            return
        try:
            # A deadline on this task, not a task of its own (as `wait_for` would make).
            async with asyncio.timeout(BODY_TIMEOUT_SECONDS):
                body = await _read_body(receive)
        except _BodyTooLarge:
            await self._refuse(scope, send, 413, "body-size")
            return
        except TimeoutError:
            await self._refuse(scope, send, 408, "body-timeout")
            return
        if body is None:  # the client went away
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(scope: Scope, send: Send, status: int, reason: str) -> None:
        request_id = scope.get("state", {}).get("request_id")
        log.info("request_refused", status=status, limit=reason)
        page = _page_refusal(scope, status, reason)
        if page is not None:
            # A page's path is answered a page, as every other problem of a page (issue 18).
            page.headers["connection"] = "close"
            await page(scope, _nothing_more, send)
            return
        body = refusal_body(status, reason, request_id)
        response_headers = [
            (b"content-type", MEDIA_TYPE.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": body})


def _page_refusal(scope: Scope, status: int, reason: str) -> Response | None:
    """The web pages' error page for a refusal on a page's path (`gateway.web.errors`, when
    the pages are installed); None for the API's paths."""
    app = scope.get("app")
    page_problem = getattr(getattr(app, "state", None), "page_problem", None)
    if page_problem is None or not is_page_path(str(scope.get("path", ""))):
        return None
    found: Response = page_problem(Request(scope), status=status, code=reason)
    return found


async def _nothing_more() -> Message:
    return {"type": "http.disconnect"}


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


# --- the protocol layer --------------------------------------------------------------------------


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bound on the request head's size and time."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # until the current request's headers are complete
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # The chunk just fed may hold the end of the head and a body: a head still incomplete
        # past the limit is refused before the next chunk is buffered. (A chunk that begins the
        # next request on a kept-alive connection is not counted: the bound is loose by one
        # read, and the ASGI layer's tighter `MAX_HEADER_BYTES` still applies.)
        if self._in_head and self._head_bytes > MAX_HEAD_BYTES:
            self._refuse(431, "head-size")

    def on_message_begin(self) -> None:
        # Called while the chunk holding the request's first byte is parsed: that chunk is
        # already counted (not reset here). Between requests uvicorn's keep-alive timeout
        # applies; a request's head is timed from its first byte, or from the connection's start.
        super().on_message_begin()
        self._in_head = True
        if self._head_timer is None:
            self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._disarm_head_timer()
        super().on_headers_complete()

    def _arm_head_timer(self) -> None:
        self._disarm_head_timer()
        self._head_timer = self.loop.call_later(HEAD_TIMEOUT_SECONDS, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self._refuse(408, "head-timeout")

    def _refuse(self, status: int, reason: str) -> None:
        log.info("request_refused", status=status, limit=reason)
        body = refusal_body(status, reason)
        head = (
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
            f"content-type: {MEDIA_TYPE}\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n"
        ).encode() + _SECURITY_HEAD
        self._disarm_head_timer()
        self.transport.write(head + body)
        self.transport.close()  # `data_received` parses nothing more of a closing connection
