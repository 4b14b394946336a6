"""A zero-latency local SES endpoint for benchmarks and failure tests.

Answers the SES v1 Query API (``SendRawEmail``, ``SendEmail``, ``GetSendQuota``) and the v2
JSON API (``POST /v2/email/outbound-emails``, ``GET /v2/email/account``) with fresh message ids,
over HTTP/1.1 keep-alive so boto3's pooled connections are reused as they would be against AWS.

``fail`` queues deliberate failures: each entry is answered to one send call, in order, before
normal service resumes, e.g. ``stub.fail("throttling", 3)``. Kinds: ``throttling``,
``server_error`` (HTTP 500), ``rejected`` (MessageRejected), ``daily_quota``, ``paused``
(AccountSendingPausedException). ``record=True`` keeps every accepted message (time, recipients,
raw MIME) for tests; the benchmark turns it off so that the stub costs as little CPU as possible.
"""

from __future__ import annotations

import base64
import collections
import itertools
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

# (HTTP status, v1 code, message)
FAILURES = {
    "throttling": (400, "Throttling", "Maximum sending rate exceeded."),
    "server_error": (500, "InternalFailure", "The request processing has failed because of an unknown error."),
    "rejected": (400, "MessageRejected", "Email address is not verified."),
    "daily_quota": (400, "Throttling", "Daily message quota exceeded."),
    "paused": (400, "AccountSendingPausedException", "Sending is paused for this account."),
}
# API v2 names and statuses for the same failures.
V2_CODES = {
    "Throttling": ("TooManyRequestsException", 429),
    "AccountSendingPausedException": ("SendingPausedException", 400),
}
V2_DAILY_QUOTA = ("LimitExceededException", 400)

_V1_OK = (
    '<SendRawEmailResponse xmlns="http://ses.amazonaws.com/doc/2010-12-01/">'
    "<SendRawEmailResult><MessageId>{id}</MessageId></SendRawEmailResult>"
    "<ResponseMetadata><RequestId>{request}</RequestId></ResponseMetadata></SendRawEmailResponse>"
)
_V1_QUOTA = (
    '<GetSendQuotaResponse xmlns="http://ses.amazonaws.com/doc/2010-12-01/"><GetSendQuotaResult>'
    "<Max24HourSend>{daily}</Max24HourSend><MaxSendRate>{rate}</MaxSendRate><SentLast24Hours>{sent}</SentLast24Hours>"
    "</GetSendQuotaResult><ResponseMetadata><RequestId>{request}</RequestId></ResponseMetadata></GetSendQuotaResponse>"
)
_V1_ERROR = (
    '<ErrorResponse xmlns="http://ses.amazonaws.com/doc/2010-12-01/"><Error><Type>Sender</Type>'
    "<Code>{code}</Code><Message>{message}</Message></Error><RequestId>{request}</RequestId></ErrorResponse>"
)


@dataclass
class Received:
    at: float
    destinations: list[str]
    raw: bytes
    message_id: str


@dataclass
class StubState:
    record: bool = True
    max_send_rate: float = 1000.0
    calls: int = 0
    accepted: int = 0
    received: list[Received] = field(default_factory=list)
    failures: collections.deque = field(default_factory=collections.deque)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like AWS
    # Headers and body leave in one segment; with Nagle on, the client's delayed ACK adds 40 ms.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format, *args):
        return

    def do_GET(self):  # v2 GetAccount
        state = self.server.state
        body = {"SendQuota": {"Max24HourSend": 1e9, "MaxSendRate": state.max_send_rate, "SentLast24Hours": 0}}
        self._reply(200, json.dumps(body).encode(), "application/json", request_id=str(uuid.uuid4()))

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        v2 = self.path.startswith("/v2/")
        if not v2 and b"Action=GetSendQuota" in body:
            quota = _V1_QUOTA.format(daily=1e9, rate=self.server.state.max_send_rate, sent=0, request=uuid.uuid4())
            self._reply(200, quota.encode(), "text/xml")
            return
        state = self.server.state
        with state.lock:
            state.calls += 1
            failure = state.failures.popleft() if state.failures else None
            if failure is None:
                state.accepted += 1
                number = state.accepted
        if failure:
            self._fail(failure, v2)
            return
        message_id = f"{next(self.server.ids):016x}-{number:08x}-stub"
        if state.record:
            destinations, raw = _v2_parse(body) if v2 else _v1_parse(body)
            with state.lock:
                state.received.append(Received(time.time(), destinations, raw, message_id))
        if v2:
            payload = b'{"MessageId":"' + message_id.encode() + b'"}'
            self._reply(200, payload, "application/json", request_id=str(number))
        else:
            self._reply(200, _V1_OK.format(id=message_id, request=number).encode(), "text/xml")

    def _fail(self, kind: str, v2: bool) -> None:
        status, code, message = FAILURES[kind]
        if v2:
            code, status = V2_DAILY_QUOTA if kind == "daily_quota" else V2_CODES.get(code, (code, status))
            self.send_response(status)
            self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
            self.send_header("x-amzn-ErrorType", code)
            payload = json.dumps({"message": message}).encode()
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        self._reply(status, _V1_ERROR.format(code=code, message=message, request=uuid.uuid4()).encode(), "text/xml")

    def _reply(self, status: int, payload: bytes, content_type: str, request_id: str = "") -> None:
        self.send_response(status)
        if request_id:
            self.send_header("x-amzn-RequestId", request_id)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def _v1_parse(body: bytes) -> tuple[list[str], bytes]:
    form = parse_qs(body.decode())
    destinations = [values[0] for key, values in sorted(form.items()) if key.startswith("Destinations.member.")]
    raw = base64.b64decode(form.get("RawMessage.Data", [""])[0])
    return destinations, raw


def _v2_parse(body: bytes) -> tuple[list[str], bytes]:
    request = json.loads(body)
    destinations = request.get("Destination", {}).get("ToAddresses", [])
    raw = base64.b64decode(request.get("Content", {}).get("Raw", {}).get("Data", ""))
    return destinations, raw


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address, state: StubState):
        super().__init__(address, _Handler)
        self.state = state
        self.ids = itertools.count(int(time.time() * 1000) << 20)


class StubSES:
    """Run the stub in a background thread of this process: ``with StubSES() as stub: stub.url``."""

    def __init__(self, *, port: int = 0, record: bool = True, max_send_rate: float = 1000.0) -> None:
        self.state = StubState(record=record, max_send_rate=max_send_rate)
        self.server = _Server(("127.0.0.1", port), self.state)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    def start(self) -> StubSES:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> StubSES:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def fail(self, kind: str, times: int = 1) -> None:
        if kind not in FAILURES:
            raise ValueError(f"unknown failure {kind!r}; choose from {', '.join(FAILURES)}")
        with self.state.lock:
            self.state.failures.extend([kind] * times)

    def reset(self) -> None:
        with self.state.lock:
            self.state.calls = self.state.accepted = 0
            self.state.received.clear()
            self.state.failures.clear()

    @property
    def calls(self) -> int:
        return self.state.calls

    @property
    def received(self) -> list[Received]:
        with self.state.lock:
            return list(self.state.received)

    def per_address(self) -> collections.Counter:
        return collections.Counter(address for message in self.received for address in message.destinations)


class _FastProtocol:
    """The benchmark's stub: asyncio, canned replies, no header parsing beyond Content-Length.

    The threaded server above costs about 0.15 ms of CPU per request; on a 2-core machine that
    CPU is taken from the senders being measured, so the benchmark uses this one instead.
    """

    def __init__(self, counter) -> None:
        self.counter = counter
        self.buffer = b""
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            length = _content_length(head)
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            self.transport.write(self._answer(head, body))

    def _answer(self, head: bytes, body: bytes) -> bytes:
        number = next(self.counter)
        if head.startswith(b"post /v2/"):
            payload = b'{"MessageId":"%016x-stub"}' % number
            content_type = b"application/json"
        elif head.startswith(b"get "):
            payload = b'{"SendQuota":{"Max24HourSend":1e9,"MaxSendRate":1000,"SentLast24Hours":0}}'
            content_type = b"application/json"
        elif b"Action=GetSendQuota" in body:
            payload = _V1_QUOTA.format(daily=1e9, rate=1000, sent=0, request=number).encode()
            content_type = b"text/xml"
        else:
            payload = _V1_OK.format(id=f"{number:016x}-stub", request=number).encode()
            content_type = b"text/xml"
        return b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\nx-amzn-RequestId: %d\r\n\r\n%s" % (
            content_type,
            len(payload),
            number,
            payload,
        )

    def connection_lost(self, exc) -> None:
        self.transport = None

    def eof_received(self):
        return False


def _content_length(head: bytes) -> int:
    start = head.find(b"content-length:")
    if start < 0:
        return 0
    line_end = head.find(b"\r\n", start)
    return int(head[start + 15 : line_end if line_end >= 0 else None])


def serve_forever(port: int, ready=None) -> None:
    """Entry point for a separate stub process (the benchmark keeps the stub off its own GIL).

    Answers every send with a fresh id: no failures, nothing recorded.
    """
    import asyncio
    import socket

    async def main() -> None:
        counter = itertools.count(int(time.time() * 1000) << 20)
        server = await asyncio.get_running_loop().create_server(
            lambda: _FastProtocol(counter), "127.0.0.1", port, backlog=256
        )
        for sock in server.sockets:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ready is not None:
            ready.set()
        await server.serve_forever()

    asyncio.run(main())


if __name__ == "__main__":
    import sys

    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8025
    print(f"SES stub on http://127.0.0.1:{port}", flush=True)
    serve_forever(port)
