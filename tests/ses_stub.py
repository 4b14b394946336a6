"""A zero-latency local SES endpoint for benchmarks and failure tests.

Answers the SES v1 Query API (``SendRawEmail``, ``SendEmail``, ``GetSendQuota``) and the v2
JSON API (``POST /v2/email/outbound-emails``, ``GET /v2/email/account``, and the email identity calls
``CreateEmailIdentity``, ``GetEmailIdentity``, ``PutEmailIdentityMailFromAttributes`` and
``DeleteEmailIdentity``, which moto lacks in part) with fresh message ids,
over HTTP/1.1 keep-alive so boto3's pooled connections are reused as they would be against AWS.

SES tenants (SESv2, which moto lacks): ``CreateTenant``, ``GetTenant``, ``ListTenants``,
``CreateTenantResourceAssociation``, ``ListTenantResources`` and ``GetReputationEntity`` (the status
a test sets with ``StubSES.tenant_status``). A ``SendEmail`` naming a tenant is refused as SES
refuses it: the tenant unknown (``NotFoundException``), paused (``SendingPausedException``), or a
resource the message names (its configuration set, its From identity: the address or its domain)
not associated with the tenant (``BadRequestException``); an accepted message records its tenant.

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
from email.parser import BytesHeaderParser
from email.utils import parseaddr
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote

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
    tenant: str = ""  # the TenantName the call named (SESv2)


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
    # SESv2 email identities (CreateEmailIdentity and friends), by name: SES's answer to GetEmailIdentity.
    identities: dict[str, dict] = field(default_factory=dict)
    # SES tenants by name: the tenant as GetTenant answers it, plus "resources" (associated ARNs) and
    # "reputation" (GetReputationEntity's ReputationEntity).
    tenants: dict[str, dict] = field(default_factory=dict)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like AWS
    # Headers and body leave in one segment; with Nagle on, the client's delayed ACK adds 40 ms.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format, *args):
        return

    def do_GET(self):  # v2 GetAccount, GetEmailIdentity, GetReputationEntity
        if self.path.startswith(_IDENTITIES + "/"):
            self._identity_call("GET")
            return
        if self.path.startswith(_REPUTATION):
            self._reputation_entity()
            return
        state = self.server.state
        body = {"SendQuota": {"Max24HourSend": 1e9, "MaxSendRate": state.max_send_rate, "SentLast24Hours": 0}}
        self._reply(200, json.dumps(body).encode(), "application/json", request_id=str(uuid.uuid4()))

    def do_PUT(self):  # v2 PutEmailIdentityMailFromAttributes
        self._identity_call("PUT")

    def do_DELETE(self):  # v2 DeleteEmailIdentity
        self._identity_call("DELETE")

    def _identity_call(self, method: str) -> None:
        """SESv2 identities as SES answers them: Easy DKIM tokens at creation, not verified until the
        test says SES saw the DNS records (``StubSES.identity_verified``)."""
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        name, _, part = self.path[len(_IDENTITIES) :].strip("/").partition("/")
        name = unquote(name) or body.get("EmailIdentity", "")
        identities = self.server.state.identities
        with self.server.state.lock:
            found = identities.get(name)
            if method == "POST" and found is None:
                found = identities[name] = _new_identity(name)
                answer = {key: found[key] for key in ("IdentityType", "VerifiedForSendingStatus", "DkimAttributes")}
            elif method == "POST":
                answer = ("AlreadyExistsException", f"Email identity {name} already exist.")
            elif found is None:
                answer = ("NotFoundException", f"Email identity {name} does not exist.")
            elif method == "PUT" and part == "mail-from":
                found["MailFromAttributes"] = {
                    "MailFromDomain": body.get("MailFromDomain", ""),
                    "MailFromDomainStatus": "PENDING",
                    "BehaviorOnMxFailure": body.get("BehaviorOnMxFailure", "USE_DEFAULT_VALUE"),
                }
                answer = {}
            elif method == "DELETE":
                del identities[name]
                answer = {}
            else:
                answer = found
        self._answer_json(answer)

    def _answer_json(self, answer: dict | tuple[str, str]) -> None:
        """A JSON answer, or (code, message): an SESv2 error (404 for NotFoundException, else 400)."""
        if isinstance(answer, tuple):
            code, message = answer
            self._json_error(404 if code == "NotFoundException" else 400, code, message)
            return
        self._reply(200, json.dumps(answer).encode(), "application/json", request_id=str(uuid.uuid4()))

    def _json_error(self, status: int, code: str, message: str) -> None:
        self.send_response(status)
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.send_header("x-amzn-ErrorType", code)
        payload = json.dumps({"message": message}).encode()
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _tenant_call(self) -> None:
        """CreateTenant, GetTenant, ListTenants, CreateTenantResourceAssociation, ListTenantResources."""
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        action = self.path[len(_TENANTS) :].strip("/")
        tenants = self.server.state.tenants
        name = body.get("TenantName", "")
        with self.server.state.lock:
            found = tenants.get(name)
            if action == "list":
                answer = {"Tenants": [_tenant_info(tenant) for tenant in tenants.values()]}
            elif action == "":
                if found is not None:
                    answer = ("AlreadyExistsException", f"Tenant {name} already exists.")
                else:
                    found = tenants[name] = _new_tenant(name, body.get("Tags", []))
                    answer = {**_tenant_info(found), "Tags": found["Tags"]}
            elif found is None:
                answer = ("NotFoundException", f"Tenant {name} does not exist.")
            elif action == "get":
                answer = {"Tenant": {**_tenant_info(found), "Tags": found["Tags"]}}
            elif action == "resources":
                arn = body.get("ResourceArn", "")
                if arn in found["resources"]:
                    answer = ("AlreadyExistsException", f"Resource {arn} is already associated with tenant {name}.")
                else:
                    found["resources"].append(arn)
                    answer = {}
            elif action == "resources/list":
                answer = {"TenantResources": [_resource_info(arn) for arn in found["resources"]]}
            else:
                answer = ("BadRequestException", f"Unknown tenant operation {action}.")
        self._answer_json(answer)

    def _reputation_entity(self) -> None:
        """GetReputationEntity for a tenant's ARN (the only entities this stub knows)."""
        kind, _, reference = self.path[len(_REPUTATION) :].partition("/")
        reference = unquote(reference)
        with self.server.state.lock:
            tenant = next((t for t in self.server.state.tenants.values() if t["TenantArn"] == reference), None)
            answer = (
                ("NotFoundException", f"Reputation entity {reference} does not exist.")
                if tenant is None or kind != "RESOURCE"
                else {"ReputationEntity": json.loads(json.dumps(tenant["reputation"]))}
            )
        self._answer_json(answer)

    def _tenant_refusal(self, request: dict) -> tuple[int, str, str] | None:
        """Why SES refuses a send naming a tenant, as (HTTP status, code, message); None: it may go."""
        name = request["TenantName"]
        raw = base64.b64decode(request.get("Content", {}).get("Raw", {}).get("Data", ""))
        headers = BytesHeaderParser().parsebytes(raw)
        configuration_set = request.get("ConfigurationSetName") or headers.get("X-SES-CONFIGURATION-SET", "")
        address = parseaddr(request.get("FromEmailAddress") or headers.get("From", ""))[1].lower()
        with self.server.state.lock:
            tenant = self.server.state.tenants.get(name)
            if tenant is None:
                return 404, "NotFoundException", f"Tenant {name} does not exist."
            if tenant["reputation"]["SendingStatusAggregate"] == "DISABLED":
                return 400, "SendingPausedException", f"Sending is paused for tenant {name}."
            associated = set(tenant["resources"])
        if configuration_set and f"{ARN_BASE}:configuration-set/{configuration_set}" not in associated:
            arn = f"{ARN_BASE}:configuration-set/{configuration_set}"
            return 400, "BadRequestException", f"Resource {arn} is not associated with tenant {name}."
        identities = {f"{ARN_BASE}:identity/{address}", f"{ARN_BASE}:identity/{address.rpartition('@')[2]}"}
        if not identities & associated:
            arn = f"{ARN_BASE}:identity/{address}"
            return 400, "BadRequestException", f"Resource {arn} is not associated with tenant {name}."
        return None

    def do_POST(self):
        if self.path.rstrip("/") == _IDENTITIES:  # v2 CreateEmailIdentity
            self._identity_call("POST")
            return
        if self.path.startswith(_TENANTS):
            self._tenant_call()
            return
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
        tenant = ""
        if v2 and b'"TenantName"' in body:
            request = json.loads(body)
            tenant = request["TenantName"]
            refusal = self._tenant_refusal(request)
            if refusal:
                self._json_error(*refusal)
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
                state.received.append(Received(arrived, destinations, raw, message_id, time.time(), tenant))
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
            self._json_error(status, code, message)
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


_IDENTITIES = "/v2/email/identities"
_TENANTS = "/v2/email/tenants"
_REPUTATION = "/v2/email/reputation/entities/"
# The account every ARN of the stub is in (tenants' ARNs carry it; callers derive resource ARNs).
ARN_BASE = "arn:aws:ses:us-east-1:123456789012"


def _new_tenant(name: str, tags: list) -> dict:
    tenant_id = uuid.uuid4().hex[:20]
    return {
        "TenantName": name,
        "TenantId": tenant_id,
        "TenantArn": f"{ARN_BASE}:tenant/{name}/{tenant_id}",
        "CreatedTimestamp": time.time(),
        "Tags": tags,
        "resources": [],
        "reputation": {
            "ReputationEntityReference": f"{ARN_BASE}:tenant/{name}/{tenant_id}",
            "ReputationEntityType": "RESOURCE",
            "AwsSesManagedStatus": {"Status": "ENABLED"},
            "CustomerManagedStatus": {"Status": "ENABLED"},
            "SendingStatusAggregate": "ENABLED",
        },
    }


def _tenant_info(tenant: dict) -> dict:
    keys = ("TenantName", "TenantId", "TenantArn", "CreatedTimestamp")
    return {**{key: tenant[key] for key in keys}, "SendingStatus": tenant["reputation"]["SendingStatusAggregate"]}


def _resource_info(arn: str) -> dict:
    kind = arn.split(":", 5)[5].partition("/")[0]
    names = {"identity": "EMAIL_IDENTITY", "configuration-set": "CONFIGURATION_SET", "template": "EMAIL_TEMPLATE"}
    return {"ResourceType": names.get(kind, kind.upper()), "ResourceArn": arn}


def _new_identity(name: str) -> dict:
    domain = "@" not in name
    return {
        "IdentityType": "DOMAIN" if domain else "EMAIL_ADDRESS",
        "VerifiedForSendingStatus": False,
        "VerificationStatus": "PENDING",
        "DkimAttributes": {
            "SigningEnabled": domain,
            "Status": "PENDING" if domain else "NOT_STARTED",
            "Tokens": [uuid.uuid4().hex for _ in range(3)] if domain else [],
            "SigningAttributesOrigin": "AWS_SES",
        },
        "MailFromAttributes": {"MailFromDomain": "", "MailFromDomainStatus": "", "BehaviorOnMxFailure": ""},
    }


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

    def identity_verified(self, name: str, *, mail_from: str = "SUCCESS") -> None:
        """SES saw the identity's DNS records (DKIM, and the MAIL FROM domain's MX: ``mail_from``)."""
        with self.state.lock:
            identity = self.state.identities[name]
            identity["VerifiedForSendingStatus"] = True
            identity["VerificationStatus"] = "SUCCESS"
            identity["DkimAttributes"]["Status"] = "SUCCESS"
            if identity["MailFromAttributes"]["MailFromDomain"]:
                identity["MailFromAttributes"]["MailFromDomainStatus"] = mail_from

    def tenant_status(self, name: str, status: str, *, cause: str = "", impact: str | None = None) -> None:
        """SES's own status for tenant ``name`` (ENABLED, REINSTATED or DISABLED), as GetReputationEntity
        reports it; a DISABLED tenant's sends are refused with SendingPausedException."""
        with self.state.lock:
            reputation = self.state.tenants[name]["reputation"]
            reputation["AwsSesManagedStatus"] = {"Status": status, "Cause": cause, "LastUpdatedTimestamp": time.time()}
            reputation["SendingStatusAggregate"] = status
            if impact:
                reputation["ReputationImpact"] = impact

    def tenant_resources(self, name: str) -> list[str]:
        with self.state.lock:
            return list(self.state.tenants[name]["resources"])

    @property
    def tenants(self) -> list[str]:
        with self.state.lock:
            return list(self.state.tenants)

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
            self.state.identities.clear()
            self.state.tenants.clear()

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
