"""A zero-latency local SES endpoint for benchmarks and failure tests.

Answers the SES v1 Query API (``SendRawEmail``, ``SendEmail``, ``GetSendQuota``) and the v2
JSON API (``POST /v2/email/outbound-emails``, ``GET /v2/email/account``) with fresh message ids,
over HTTP/1.1 keep-alive so boto3's pooled connections are reused as they would be against AWS.

``fail`` queues deliberate failures: each entry is answered to one send call, in order, before
normal service resumes, e.g. ``stub.fail("throttling", 3)``. Kinds: ``throttling``,
``server_error`` (HTTP 500), ``rejected`` (MessageRejected), ``daily_quota``, ``paused``
(AccountSendingPausedException). ``record=True`` keeps every accepted message (time, recipients,
raw MIME) for tests; the benchmark turns it off so that the stub costs as little CPU as possible.

``Timing`` makes the stub answer like a real, sometimes slow SES (both stubs take it):
``latency`` seconds for every send (SES answers SendEmail in roughly 30-150 ms), a fraction of
*slow* sends answered after ``slow_seconds`` (accepted), and a fraction of *hanging* sends that
answer after ``hang_seconds``, by when the client has usually given up: SES accepted the message
anyway, so a client that retries sends it twice. Which calls are slow or hang is deterministic
(evenly spread over the call numbers), so runs repeat. Every accepted message is logged
(``received``; ``log_path`` for the separate-process stub) with its arrival and acceptance times,
so duplicates can be counted.
"""

from __future__ import annotations

import asyncio
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
    at: float  # when the call arrived (what the rate limiter governs)
    destinations: list[str]
    raw: bytes
    message_id: str
    accepted_at: float = 0.0  # when SES "accepted" it: later than ``at`` for slow and hanging calls


@dataclass(frozen=True)
class Timing:
    """How long the stub takes to answer a send (see the module docstring)."""

    latency: float = 0.0
    slow_fraction: float = 0.0
    slow_seconds: float = 0.0
    hang_fraction: float = 0.0
    hang_seconds: float = 0.0

    def delay(self, number: int) -> tuple[float, str]:
        """(seconds before answering, "hang" | "slow" | "") for the ``number``-th send call (from 1)."""
        # Half a period in (the first at call 1 / (2 × fraction)), slow and hanging calls a quarter
        # of a period apart so that they do not fall on the same numbers.
        if _every(number, self.hang_fraction, offset=0.5):
            return self.hang_seconds, "hang"
        if _every(number, self.slow_fraction, offset=0.25):
            return self.slow_seconds, "slow"
        return self.latency, ""


def _every(number: int, fraction: float, offset: float = 0.0) -> bool:
    """True for an evenly spread ``fraction`` of call numbers (e.g. 0.1: every tenth call)."""
    if fraction <= 0:
        return False
    return int(number * fraction + offset) != int((number - 1) * fraction + offset)


@dataclass
class StubState:
    record: bool = True
    max_send_rate: float = 1000.0
    calls: int = 0
    accepted: int = 0
    received: list[Received] = field(default_factory=list)
    failures: collections.deque = field(default_factory=collections.deque)
    lock: threading.Lock = field(default_factory=threading.Lock)
    timing: Timing = field(default_factory=Timing)
    # Destinations of the calls the stub made slow or hang, as each call arrived.
    slow: list[list[str]] = field(default_factory=list)
    hung: list[list[str]] = field(default_factory=list)
    # Called with the call number as each send arrives (tests use it to inject a fault mid-send).
    on_call: object = None


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
        arrived = time.time()
        with state.lock:
            state.calls += 1
            call = state.calls
            failure = state.failures.popleft() if state.failures else None
            delay, kind = state.timing.delay(call)
        if callable(state.on_call):
            state.on_call(call)
        if failure:
            self._fail(failure, v2)
            return
        destinations, raw = _v2_parse(body) if v2 and (state.record or kind) else (None, b"")
        if not v2 and (state.record or kind):
            destinations, raw = _v1_parse(body)
        if kind:
            with state.lock:
                (state.hung if kind == "hang" else state.slow).append(destinations)
        if delay:
            time.sleep(delay)
        with state.lock:
            state.accepted += 1
            number = state.accepted
        message_id = f"{next(self.server.ids):016x}-{number:08x}-stub"
        if state.record:
            with state.lock:
                state.received.append(Received(arrived, destinations, raw, message_id, time.time()))
        try:
            if v2:
                payload = b'{"MessageId":"' + message_id.encode() + b'"}'
                self._reply(200, payload, "application/json", request_id=str(number))
            else:
                self._reply(200, _V1_OK.format(id=message_id, request=number).encode(), "text/xml")
        except OSError:  # the client gave up on a hanging call: SES accepted the message all the same
            self.close_connection = True

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

    def __init__(
        self, *, port: int = 0, record: bool = True, max_send_rate: float = 1000.0, timing: Timing | None = None
    ) -> None:
        self.state = StubState(record=record, max_send_rate=max_send_rate, timing=timing or Timing())
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

    def set_timing(self, **timing: float) -> None:
        """E.g. ``stub.set_timing(latency=0.05, hang_fraction=0.02, hang_seconds=20)``."""
        with self.state.lock:
            self.state.timing = Timing(**timing)

    def reset(self) -> None:
        with self.state.lock:
            self.state.calls = self.state.accepted = 0
            self.state.received.clear()
            self.state.failures.clear()
            self.state.slow.clear()
            self.state.hung.clear()

    @property
    def hung(self) -> list[list[str]]:
        """Destinations of the calls answered only after ``hang_seconds`` (abandoned by the client)."""
        with self.state.lock:
            return list(self.state.hung)

    @property
    def slow(self) -> list[list[str]]:
        with self.state.lock:
            return list(self.state.slow)

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
    With a ``Timing`` it answers sends late (``call_later``: no thread per waiting call), and with
    a log it appends one line per accepted message: arrival, acceptance, message id, addresses.
    """

    def __init__(self, counter, calls, timing: Timing, log) -> None:
        self.counter = counter
        self.calls = calls
        self.timing = timing
        self.log = log
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
            self._handle(head, body)

    def _handle(self, head: bytes, body: bytes) -> None:
        is_send = head.startswith(b"post ") and b"Action=GetSendQuota" not in body
        delay = 0.0
        if is_send:
            delay, _kind = self.timing.delay(next(self.calls))
        arrived = time.time()
        if delay <= 0:
            self._answer(head, body, arrived)
        else:
            asyncio.get_running_loop().call_later(delay, self._answer, head, body, arrived)

    def _answer(self, head: bytes, body: bytes, arrived: float) -> None:
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
        if self.log is not None and head.startswith(b"post ") and b"Action=GetSendQuota" not in body:
            destinations, _raw = _v2_parse(body) if head.startswith(b"post /v2/") else _v1_parse(body)
            self.log.write(f"{arrived:.6f}\t{time.time():.6f}\t{number:016x}-stub\t{','.join(destinations)}\n")
        if self.transport is None or self.transport.is_closing():
            return  # the client gave up on a hanging call; SES accepted the message all the same
        self.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\nx-amzn-RequestId: %d\r\n\r\n%s"
            % (content_type, len(payload), number, payload)
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


def serve_forever(port: int, ready=None, timing: Timing | None = None, log_path: str | None = None) -> None:
    """Entry point for a separate stub process (the benchmark keeps the stub off its own GIL).

    Answers every send with a fresh id: no failures. ``timing`` delays answers as described in
    the module docstring; ``log_path`` appends one line per accepted message (tab-separated:
    arrival time, acceptance time, message id, addresses) so a fault run can count duplicates.
    """
    import socket

    async def main() -> None:
        counter = itertools.count(int(time.time() * 1000) << 20)
        calls = itertools.count(1)
        log = open(log_path, "a", buffering=1) if log_path else None  # open for the process's whole life
        server = await asyncio.get_running_loop().create_server(
            lambda: _FastProtocol(counter, calls, timing or Timing(), log), "127.0.0.1", port, backlog=256
        )
        for sock in server.sockets:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ready is not None:
            ready.set()
        await server.serve_forever()

    asyncio.run(main())


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="A local SES endpoint (v1 + v2) for benchmarks and fault runs.")
    parser.add_argument("port", type=int, nargs="?", default=8025)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before every answer (SES: 0.03-0.15)")
    parser.add_argument("--slow-fraction", type=float, default=0.0, help="fraction of sends answered late")
    parser.add_argument("--slow-seconds", type=float, default=0.0, help="how late a slow send is answered")
    parser.add_argument("--hang-fraction", type=float, default=0.0, help="fraction of sends that hang")
    parser.add_argument("--hang-seconds", type=float, default=0.0, help="how long a hanging send hangs")
    parser.add_argument("--log", help="append every accepted message to this file (to count duplicates)")
    args = parser.parse_args(argv)
    timing = Timing(args.latency, args.slow_fraction, args.slow_seconds, args.hang_fraction, args.hang_seconds)
    print(f"SES stub on http://127.0.0.1:{args.port} ({timing})", flush=True)
    serve_forever(args.port, timing=timing, log_path=args.log)


if __name__ == "__main__":
    main()
