"""A local stand-in for SES event publishing: signed SNS notifications for what local SES accepted.

moto's SES server accepts messages but publishes no events. The simulator reads what it accepted,
each message once (``common.local_ses``'s cursor endpoint; ``/moto-api/data.json`` from a
plain moto server), plans the events SES would publish for each message (links read from the
decoded HTML part) and posts them to the webhook as SNS would: JSON envelopes signed with
SignatureVersion 1 or 2 by its own self-signed certificate (key and certificate under
``var/ses_simulator/``), which it serves over local HTTP so the webhook can fetch it. The webhook
trusts that certificate URL and topic only through settings (``SNS_CERT_TRUSTED_URLS``,
``SNS_TOPIC_ARNS``), which development settings set when ``SNS_LOCAL_SIMULATOR=1``.

Behaviour per recipient address:

- SES mailbox simulator addresses (``<name>[+label]@simulator.amazonses.com``): ``success`` is
  delivered; ``bounce`` hard-bounces (General); ``ooto`` is delivered (the auto-reply is mail, not
  an event); ``complaint`` is delivered then complained about; ``suppressionlist`` hard-bounces
  with subtype OnAccountSuppressionList. They never open or click.
- Any other address: hard bounce with ``bounce_rate``, soft bounce with ``soft_bounce_rate``,
  otherwise delivered; a delivered message is opened with ``open_rate`` (a share
  ``machine_open_share`` of opens come from an image proxy seconds after delivery) and clicked
  with ``click_rate``. Randomness is seeded per message, so a message always gets the same fate.

Timing: SES's delays (delivery after 1-3 s, opens after minutes) compressed by ``time_scale``
(real seconds per simulated second), a person's opens and clicks never sooner than the webhook's
machine-open window allows; each notification is posted when its time comes and carries that
time, never a later one (``run_once`` moves a message's schedule back so its last event is now).
How far it has read and what it has not posted yet are kept in the database
(``SimulatorCursor``, ``SimulatedNotification``), so a restart neither repeats nor loses events
and a fresh database starts from nothing. Notifications are posted over several connections at
once: SNS sends one per request, and the engine makes about 2.5 per message.
"""

from __future__ import annotations

import base64
import email
import html
import json
import logging
import random
import re
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from django.db import close_old_connections, reset_queries, transaction

from common.local_ses import CURSOR_PATH
from tracking.models import SimulatedNotification, SimulatorCursor
from tracking.sns import string_to_sign

logger = logging.getLogger(__name__)

SIMULATOR_DOMAIN = "simulator.amazonses.com"
DEFAULT_TOPIC_ARN = "arn:aws:sns:us-east-1:000000000000:cobalt-local-simulator"
DEFAULT_CERT_PORT = 5006
PROXY_AGENT = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
HUMAN_AGENTS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
)
READ_PAGE = 500  # messages per read from local SES
POST_BATCH = 500  # notifications taken from the database per round of concurrent posts
UNREACHABLE_GRACE = 10.0  # seconds the webhook or local SES may be away before a warning
MODEL_DATA = "moto-api/data.json"  # the cursor's instance when reading a plain moto server
ACCEPTED, REFUSED, RETRY = "accepted", "refused", "retry"
# Seconds after sending before a simulated person opens or clicks, whatever the time scale: the
# webhook counts earlier ones as automatic (tracking.parsing.MACHINE_OPEN_SECONDS / _CLICK_).
HUMAN_OPEN_AFTER = 6.0
HUMAN_CLICK_AFTER = 11.0
HREF = re.compile(r'href=["\'](https?://[^"\']+)["\']', re.IGNORECASE)


class SigningIdentity:
    """An RSA key and a self-signed certificate, created once and kept in ``directory``."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        key_path, cert_path = directory / "key.pem", directory / "cert.pem"
        if key_path.exists() and cert_path.exists():
            self.key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            self.cert_pem = cert_path.read_bytes()
            certificate = x509.load_pem_x509_certificate(self.cert_pem)
            if certificate.not_valid_after_utc > datetime.now(UTC) + timedelta(days=1):
                return
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Cobalt Mail local SNS simulator")])
        now = datetime.now(UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=3650))
            .sign(self.key, hashes.SHA256())
        )
        self.cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
        key_pem = self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        key_path.write_bytes(key_pem)
        key_path.chmod(0o600)
        cert_path.write_bytes(self.cert_pem)

    def sign(self, fields: dict, *, version: str = "2") -> dict:
        """Add SignatureVersion and Signature (v1 SHA1withRSA, v2 SHA256withRSA) to ``fields``."""
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = self.key.sign(string_to_sign(fields), padding.PKCS1v15(), algorithm)
        return {**fields, "SignatureVersion": version, "Signature": base64.b64encode(signature).decode()}

    def notification(
        self, record: dict, *, topic_arn: str, cert_url: str, version: str = "2", message_id: str | None = None
    ) -> dict:
        """A signed SNS Notification envelope carrying ``record`` as its Message."""
        fields = {
            "Type": "Notification",
            "MessageId": message_id or str(uuid.uuid4()),
            "TopicArn": topic_arn,
            "Message": json.dumps(record, separators=(",", ":")),
            "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "SigningCertURL": cert_url,
            "UnsubscribeURL": cert_url.rsplit("/", 1)[0] + "/unsubscribe",
        }
        return self.sign(fields, version=version)


class CertificateServer:
    """Serves the certificate (``/cert.pem``) and answers SubscribeURL visits (``/confirm``)."""

    def __init__(self, identity: SigningIdentity, *, port: int = 0, host: str = "127.0.0.1") -> None:
        self.confirmations: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/cert.pem":
                    body, status = identity.cert_pem, 200
                elif self.path.startswith("/confirm"):
                    server.confirmations.append(self.path)
                    body, status = b"<ConfirmSubscriptionResponse/>", 200
                else:
                    body, status = b"not found", 404
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://{host}:{self.httpd.server_address[1]}/"
        self.cert_url = self.url + "cert.pem"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class Rates:
    bounce_rate: float = 0.02
    soft_bounce_rate: float = 0.01
    complaint_rate: float = 0.001
    open_rate: float = 0.45
    machine_open_share: float = 0.2
    click_rate: float = 0.12


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def message_links(parsed: EmailMessage) -> list[str]:
    """The web addresses the HTML parts link to, decoded as a mail client would read them.

    Quoted-printable and base64 bodies are decoded (and their charset applied) by the ``email``
    package; reading the raw text instead finds soft line breaks inside addresses
    (``https://example.com/seas= on``). Entities in attributes (``&amp;``) are unescaped.
    """
    links: list[str] = []
    for part in parsed.walk():
        if part.get_content_type() != "text/html":
            continue
        try:
            text = part.get_content()
        except (LookupError, ValueError):  # an unknown charset or a broken body: no links to click
            continue
        links.extend(html.unescape(href) for href in HREF.findall(text))
    return links


def plan_events(
    message: dict, *, rates: Rates, seed: int, sent_at: datetime, time_scale: float = 1.0
) -> list[tuple[float, dict]]:
    """The SES records one accepted message produces, each with its delay in real seconds.

    Delays are SES's (delivery after 1-3 s, human opens after minutes) times ``time_scale``, and
    every timestamp in a record is ``sent_at`` plus its delay: posted when due, an event never
    carries a time later than the moment it reaches the webhook.
    """
    parsed = email.message_from_string(message.get("raw_data", ""), policy=policy.default)
    tags_header = str(parsed.get("X-SES-MESSAGE-TAGS", ""))
    destinations = message.get("destinations") or {}
    addresses = destinations.get("ToAddresses", []) if isinstance(destinations, dict) else list(destinations)
    addresses = list(dict.fromkeys(addresses))  # moto lists an address once per header it is in
    address = (addresses or [str(parsed.get("To", ""))])[0]
    links = message_links(parsed)
    mail = {
        "timestamp": _iso(sent_at),
        "source": message.get("source", ""),
        "sendingAccountId": "000000000000",
        "messageId": message["id"],
        "destination": addresses or [address],
        "headersTruncated": False,
        "headers": [{"name": "X-SES-MESSAGE-TAGS", "value": tags_header}],
        "commonHeaders": {
            "from": [message.get("source", "")],
            "to": [address],
            "subject": str(parsed.get("Subject", "")),
        },
        "tags": {"ses:configuration-set": [str(parsed.get("X-SES-CONFIGURATION-SET", ""))], **_tags(tags_header)},
    }
    chooser = random.Random(f"{seed}:{message['id']}")
    local, _, domain = address.strip("<>").rpartition("@")
    name = local.split("+", 1)[0].lower()
    events: list[tuple[float, dict]] = [(0.0, {"eventType": "Send", "mail": mail, "send": {}})]
    delivered_after = chooser.uniform(1, 3) * time_scale

    def at(delay: float) -> str:
        return _iso(sent_at + timedelta(seconds=delay))

    def delivery() -> tuple[float, dict]:
        detail = {"timestamp": at(delivered_after), "processingTimeMillis": int(delivered_after * 1000),
                  "recipients": [address], "smtpResponse": "250 2.6.0 Message received",
                  "reportingMTA": "a8-70.smtp-out.amazonses.com"}  # fmt: skip
        return delivered_after, {"eventType": "Delivery", "mail": mail, "delivery": detail}

    def bounce(kind: str, subtype: str, status: str, diagnostic: str) -> tuple[float, dict]:
        detail = {"bounceType": kind, "bounceSubType": subtype, "timestamp": at(delivered_after),
                  "feedbackId": str(uuid.uuid4()), "reportingMTA": "dsn; a8-70.smtp-out.amazonses.com",
                  "bouncedRecipients": [{"emailAddress": address, "action": "failed", "status": status,
                                         "diagnosticCode": diagnostic}]}  # fmt: skip
        return delivered_after, {"eventType": "Bounce", "mail": mail, "bounce": detail}

    def complaint(delay: float) -> tuple[float, dict]:
        detail = {
            "timestamp": at(delay),
            "feedbackId": str(uuid.uuid4()),
            "complaintFeedbackType": "abuse",
            "complainedRecipients": [{"emailAddress": address}],
            "userAgent": "ExampleCorp Feedback Loop",
        }
        return delay, {"eventType": "Complaint", "mail": mail, "complaint": detail}

    if domain.lower() == SIMULATOR_DOMAIN:
        if name in {"bounce", "suppressionlist"}:
            subtype = "General" if name == "bounce" else "OnAccountSuppressionList"
            events.append(bounce("Permanent", subtype, "5.1.1", "smtp; 550 5.1.1 user unknown"))
        else:
            events.append(delivery())
            if name == "complaint":
                events.append(complaint(delivered_after + chooser.uniform(2, 10) * time_scale))
        return events
    roll = chooser.random()
    if roll < rates.bounce_rate:
        events.append(bounce("Permanent", "General", "5.1.1", "smtp; 550 5.1.1 user unknown"))
        return events
    if roll < rates.bounce_rate + rates.soft_bounce_rate:
        events.append(bounce("Transient", "MailboxFull", "4.2.2", "smtp; 452 4.2.2 mailbox full"))
        return events
    events.append(delivery())
    if chooser.random() < rates.open_rate:
        machine = chooser.random() < rates.machine_open_share
        if machine:
            delay = delivered_after + chooser.uniform(0.5, 2) * time_scale
        else:  # however compressed, a person opens after the webhook's machine-open window
            delay = max(HUMAN_OPEN_AFTER, delivered_after + chooser.uniform(60, 3600) * time_scale)
        agent = PROXY_AGENT if machine else chooser.choice(HUMAN_AGENTS)
        ip = "66.249.84.1" if machine else f"198.51.100.{chooser.randint(1, 254)}"
        events.append((delay, {"eventType": "Open", "mail": mail,
                               "open": {"timestamp": at(delay), "ipAddress": ip, "userAgent": agent}}))  # fmt: skip
        if chooser.random() < rates.click_rate / max(rates.open_rate, 0.01):
            click_delay = max(HUMAN_CLICK_AFTER, delay + chooser.uniform(5, 120) * time_scale)
            link = chooser.choice(links) if links else "https://example.com/"
            events.append((click_delay, {"eventType": "Click", "mail": mail,
                                         "click": {"timestamp": at(click_delay), "ipAddress": ip,
                                                   "userAgent": chooser.choice(HUMAN_AGENTS), "link": link,
                                                   "linkTags": {}}}))  # fmt: skip
    if chooser.random() < rates.complaint_rate:
        events.append(complaint(delivered_after + chooser.uniform(600, 7200) * time_scale))
    return events


def not_after(record: dict, moment: datetime) -> dict:
    """``record`` with its event's timestamp moved back to ``moment`` if it is later (posting early)."""
    kind = record["eventType"][0].lower() + record["eventType"][1:]
    detail = record.get(kind)
    stamp = _iso(moment)
    if isinstance(detail, dict) and detail.get("timestamp", "") > stamp:  # same format: compares as text
        record = {**record, kind: {**detail, "timestamp": stamp}}
    return record


def _tags(header: str) -> dict[str, list[str]]:
    tags: dict[str, list[str]] = {}
    for part in header.split(","):
        name, _, value = part.partition("=")
        if name.strip() and value.strip():
            tags[name.strip()] = [value.strip()]
    return tags


class Simulator:
    """Reads what local SES accepted, once, and posts the resulting signed SNS notifications.

    State lives in the database the events are for (``SimulatorCursor``: how far it has read each
    local SES; ``SimulatedNotification``: what is planned and not yet posted), so a fresh database
    starts from nothing and a restart neither repeats nor loses events.

    Reading: ``GET {endpoint}/cobalt-api/ses/messages?after=N`` (``common.local_ses``) returns
    only what was accepted since the cursor, a page at a time, so memory stays flat however many
    messages local SES holds. Against a plain moto server (no such endpoint) it falls back to
    ``/moto-api/data.json``, which returns everything each time, and skips what it has read.

    Posting: SNS delivers one notification per HTTPS request, so due notifications are posted over
    ``connections`` keep-alive connections at once (one ``requests.Session`` per thread); the
    notifications of one message are posted in order by one thread, as their times say.
    """

    def __init__(
        self,
        *,
        webhook_url: str,
        ses_endpoint: str,
        identity: SigningIdentity,
        cert_url: str,
        topic_arn: str = DEFAULT_TOPIC_ARN,
        rates: Rates | None = None,
        seed: int = 1,
        time_scale: float = 0.05,
        signature_version: str = "2",
        connections: int = 32,
        region: str = "us-east-1",
        report: Callable[[str], None] | None = None,
        report_every: float = 10.0,
    ) -> None:
        self.webhook_url = webhook_url
        self.ses_endpoint = ses_endpoint.rstrip("/")
        self.identity = identity
        self.cert_url = cert_url
        self.topic_arn = topic_arn
        self.rates = rates or Rates()
        self.seed = seed
        self.time_scale = time_scale
        self.signature_version = signature_version
        self.region = region
        self.report = report
        self.report_every = report_every
        self.read = 0  # messages fetched from local SES so far (each is fetched once)
        self.session = requests.Session()  # reads from local SES (the caller's thread)
        self._connections = threading.local()
        self._pool = ThreadPoolExecutor(max_workers=max(1, connections), thread_name_prefix="sns-post")
        self._unreachable_since: float | None = None
        self._warned_unreachable = False
        self._since_report: Counter[str] = Counter()
        self._last_report = time.monotonic()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.session.close()

    # --- reading what local SES accepted ---------------------------------------------------------

    def poll(self, *, max_messages: int = 2000, backdate: bool = False) -> int:
        """Plan the events of messages accepted since the last poll. Returns how many were new.

        ``backdate``: every event is due now, its schedule moved back so that its last event
        happens now (times in the past, gaps between them kept); for ``run_once``.
        """
        cursor, _ = SimulatorCursor.objects.get_or_create(ses_endpoint=self.ses_endpoint)
        new = 0
        while new < max_messages:
            instance, end, messages = self._read(cursor)
            if end == cursor.position and instance == cursor.instance:
                break
            planned = [
                SimulatedNotification(
                    due_at=due, sns_message_id=str(uuid.uuid4()), ses_message_id=message["id"], record=record
                )
                for message in messages
                if message.get("id")
                for due, record in self._plan(message, backdate=backdate)
            ]
            with transaction.atomic():
                # Conditional on the position read: two simulators on one database plan nothing twice.
                moved = SimulatorCursor.objects.filter(
                    pk=cursor.pk, position=cursor.position, instance=cursor.instance
                ).update(position=end, instance=instance)
                if not moved:
                    raise RuntimeError("Another event simulator is reading the same local SES for this database.")
                SimulatedNotification.objects.bulk_create(planned, batch_size=500)
            cursor.position, cursor.instance = end, instance
            new += len(messages)
            self.read += len(messages)
        return new

    def _plan(self, message: dict, *, backdate: bool) -> list[tuple[float, dict]]:
        """(due Unix time, record) for each event of ``message``."""
        now, sent_at = time.time(), datetime.now(UTC)
        options = {"rates": self.rates, "seed": self.seed, "time_scale": self.time_scale}
        events = plan_events(message, sent_at=sent_at, **options)
        if not backdate:
            return [(now + delay, record) for delay, record in events]
        last = max(delay for delay, _ in events)
        events = plan_events(message, sent_at=sent_at - timedelta(seconds=last), **options)
        return [(now, record) for _, record in events]

    def _read(self, cursor: SimulatorCursor) -> tuple[str, int, list[dict]]:
        """(local SES instance, new cursor position, the messages accepted since the cursor)."""
        position = cursor.position
        for _attempt in range(2):
            response = self.session.get(
                f"{self.ses_endpoint}{CURSOR_PATH}",
                params={"after": position, "limit": READ_PAGE, "region": self.region},
                timeout=30,
            )
            if response.status_code == 404:
                return self._read_everything(cursor)
            response.raise_for_status()
            page = response.json()
            if page["instance"] == cursor.instance and page["total"] >= position:
                return page["instance"], page["next"], page["messages"]
            position = 0  # another local SES (restarted or reset): read it from its start
        return page["instance"], page["next"], page["messages"]

    def _read_everything(self, cursor: SimulatorCursor) -> tuple[str, int, list[dict]]:
        """A plain moto server: every message it holds comes back every time; keep the new ones."""
        response = self.session.get(f"{self.ses_endpoint}/moto-api/data.json", timeout=60)
        response.raise_for_status()
        messages = response.json().get("ses", {}).get("RawMessage", [])
        position = cursor.position if cursor.instance == MODEL_DATA and cursor.position <= len(messages) else 0
        end = min(len(messages), position + READ_PAGE)
        return MODEL_DATA, end, messages[position:end]

    # --- posting -----------------------------------------------------------------------------------

    def flush(self, *, everything: bool = False, max_batches: int | None = 10) -> int:
        """Post the notifications that are due (or all). Returns how many the webhook accepted."""
        accepted = 0
        batches = 0
        while max_batches is None or batches < max_batches:
            due = SimulatedNotification.objects.order_by("due_at", "id")
            if not everything:
                due = due.filter(due_at__lte=time.time())
            rows = list(due.values_list("id", "sns_message_id", "ses_message_id", "record")[:POST_BATCH])
            if not rows:
                break
            batches += 1
            by_message: dict[str, list[tuple]] = defaultdict(list)
            for row in rows:
                by_message[row[2]].append(row)
            done: list[int] = []
            retry = False
            for outcomes in self._pool.map(self._post_in_order, by_message.values()):
                for row_id, outcome, event_type in outcomes:
                    if outcome == RETRY:
                        retry = True
                        continue
                    done.append(row_id)
                    if outcome == ACCEPTED:
                        accepted += 1
                        self._since_report[event_type] += 1
            for start in range(0, len(done), 500):  # SQLite: at most a few hundred parameters
                SimulatedNotification.objects.filter(id__in=done[start : start + 500]).delete()
            if retry:
                break
        return accepted

    def _post_in_order(self, rows: list[tuple]) -> list[tuple[int, str, str]]:
        """Post one message's notifications in order; stop at the first that must be retried."""
        outcomes = []
        for row_id, sns_message_id, _ses_message_id, record in rows:
            outcome = self._post(sns_message_id, record)
            outcomes.append((row_id, outcome, record["eventType"]))
            if outcome == RETRY:
                break
        return outcomes

    def _post(self, sns_message_id: str, record: dict) -> str:
        session = getattr(self._connections, "session", None)
        if session is None:
            session = self._connections.session = requests.Session()
        envelope = self.identity.notification(
            not_after(record, datetime.now(UTC)),
            topic_arn=self.topic_arn,
            cert_url=self.cert_url,
            version=self.signature_version,
            message_id=sns_message_id,
        )
        try:
            response = session.post(
                self.webhook_url,
                data=json.dumps(envelope),
                headers={"Content-Type": "text/plain; charset=UTF-8", "x-amz-sns-message-type": "Notification"},
                timeout=30,
            )
        except requests.RequestException as error:
            self._unreachable(f"The webhook is not reachable ({error}); the simulator keeps retrying.")
            return RETRY
        self._unreachable_since = None
        if response.status_code >= 500:
            logger.warning("The webhook answered %s; will retry.", response.status_code)
            return RETRY
        if response.status_code >= 400:
            logger.warning("The webhook refused an event (%s): %s", response.status_code, response.text[:200])
            return REFUSED
        return ACCEPTED

    def _unreachable(self, message: str) -> None:
        """Warn once per outage, and only when it lasts: a web server reloading is not worth a line."""
        now = time.monotonic()
        if self._unreachable_since is None:
            self._unreachable_since = now
            self._warned_unreachable = False
        elif now - self._unreachable_since >= UNREACHABLE_GRACE and not self._warned_unreachable:
            self._warned_unreachable = True
            logger.warning(message)

    # --- running -----------------------------------------------------------------------------------

    def run_once(self) -> int:
        """Read everything accepted so far and post all its events now (for tests and scripts)."""
        while self.poll(backdate=True):
            reset_queries()  # DEBUG (make run) keeps every query's SQL: 9,000 bulk inserts of events
        return self.flush(everything=True, max_batches=None)

    def loop(self, *, interval: float = 1.0, stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        while not stop.is_set():
            close_old_connections()
            reset_queries()  # DEBUG (make run) keeps the SQL of the last 9,000 queries: large event inserts
            busy = False
            try:
                busy = self.poll() > 0
                busy = self.flush() > 0 or busy
            except requests.RequestException as error:
                self._unreachable(f"Local SES is not reachable ({error}); the simulator keeps retrying.")
            self._report_progress()
            if not busy:
                stop.wait(interval)

    def _report_progress(self) -> None:
        """One line per batch of events posted, at most one every ``report_every`` seconds."""
        if self.report is None or not self._since_report:
            return
        now = time.monotonic()
        if now - self._last_report < self.report_every:
            return
        total = sum(self._since_report.values())
        kinds = ", ".join(f"{kind} {count:,}" for kind, count in self._since_report.most_common())
        waiting = SimulatedNotification.objects.count()
        self.report(f"SES events: {total:,} posted in the last {now - self._last_report:.0f} s ({kinds}); "
                    f"{waiting:,} waiting for their time.")  # fmt: skip
        self._since_report.clear()
        self._last_report = now
