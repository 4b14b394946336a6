"""A local stand-in for SES event publishing: signed SNS notifications for what local SES accepted.

moto's SES server accepts messages but publishes no events. The simulator reads what it accepted
(``GET {endpoint}/moto-api/data.json`` → ``["ses"]["RawMessage"]``), plans the events SES would
publish for each message and posts them to the webhook as SNS would: JSON envelopes signed with
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

Timing: event timestamps follow SES's (send, delivery after 1-3 s, opens after minutes); when
looping, each notification is posted once its (compressed) due time comes, ``time_scale`` real
seconds per simulated minute. Handled message ids and not yet posted notifications are kept in a
JSON state file, so a restart neither repeats nor loses events.
"""

from __future__ import annotations

import base64
import email
import heapq
import json
import logging
import random
import re
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

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


def plan_events(message: dict, *, rates: Rates, seed: int, sent_at: datetime) -> list[tuple[float, dict]]:
    """The SES records one accepted message produces, each with its delay in simulated seconds."""
    parsed = email.message_from_string(message.get("raw_data", ""), policy=policy.compat32)
    tags = _tags(parsed.get("X-SES-MESSAGE-TAGS", ""))
    destinations = message.get("destinations") or {}
    addresses = destinations.get("ToAddresses", []) if isinstance(destinations, dict) else list(destinations)
    address = (addresses or [parsed.get("To", "")])[0]
    links = HREF.findall(message.get("raw_data", "").replace("=\n", "").replace("=3D", "="))
    mail = {
        "timestamp": _iso(sent_at),
        "source": message.get("source", ""),
        "sendingAccountId": "000000000000",
        "messageId": message["id"],
        "destination": addresses or [address],
        "headersTruncated": False,
        "headers": [{"name": "X-SES-MESSAGE-TAGS", "value": parsed.get("X-SES-MESSAGE-TAGS", "")}],
        "commonHeaders": {"from": [message.get("source", "")], "to": [address], "subject": parsed.get("Subject", "")},
        "tags": {"ses:configuration-set": [parsed.get("X-SES-CONFIGURATION-SET", "")], **tags},
    }
    chooser = random.Random(f"{seed}:{message['id']}")
    local, _, domain = address.strip("<>").rpartition("@")
    name = local.split("+", 1)[0].lower()
    events: list[tuple[float, dict]] = [(0.0, {"eventType": "Send", "mail": mail, "send": {}})]
    delivered_after = chooser.uniform(1, 3)

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
                events.append(complaint(delivered_after + chooser.uniform(2, 10)))
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
        delay = delivered_after + (chooser.uniform(0.5, 2) if machine else chooser.uniform(60, 3600))
        agent = PROXY_AGENT if machine else chooser.choice(HUMAN_AGENTS)
        ip = "66.249.84.1" if machine else f"198.51.100.{chooser.randint(1, 254)}"
        events.append((delay, {"eventType": "Open", "mail": mail,
                               "open": {"timestamp": at(delay), "ipAddress": ip, "userAgent": agent}}))  # fmt: skip
        if chooser.random() < rates.click_rate / max(rates.open_rate, 0.01):
            click_delay = delay + chooser.uniform(5, 120)
            link = chooser.choice(links) if links else "https://example.com/"
            events.append((click_delay, {"eventType": "Click", "mail": mail,
                                         "click": {"timestamp": at(click_delay), "ipAddress": ip,
                                                   "userAgent": chooser.choice(HUMAN_AGENTS), "link": link,
                                                   "linkTags": {}}}))  # fmt: skip
    if chooser.random() < rates.complaint_rate:
        events.append(complaint(delivered_after + chooser.uniform(600, 7200)))
    return events


def _tags(header: str) -> dict[str, list[str]]:
    tags: dict[str, list[str]] = {}
    for part in header.split(","):
        name, _, value = part.partition("=")
        if name.strip() and value.strip():
            tags[name.strip()] = [value.strip()]
    return tags


class Simulator:
    """Reads what local SES accepted and posts the resulting signed SNS notifications."""

    def __init__(
        self,
        *,
        webhook_url: str,
        ses_endpoint: str,
        state_path: Path,
        identity: SigningIdentity,
        cert_url: str,
        topic_arn: str = DEFAULT_TOPIC_ARN,
        rates: Rates | None = None,
        seed: int = 1,
        time_scale: float = 0.05,
        signature_version: str = "2",
    ) -> None:
        self.webhook_url = webhook_url
        self.ses_endpoint = ses_endpoint.rstrip("/")
        self.state_path = state_path
        self.identity = identity
        self.cert_url = cert_url
        self.topic_arn = topic_arn
        self.rates = rates or Rates()
        self.seed = seed
        self.time_scale = time_scale
        self.signature_version = signature_version
        self.session = requests.Session()
        self.handled: set[str] = set()
        self.pending: list[tuple[float, str, dict]] = []  # (due wall time, SNS message id, record)
        self._load()

    def _load(self) -> None:
        if self.state_path.exists():
            state = json.loads(self.state_path.read_text())
            self.handled = set(state.get("handled", []))
            self.pending = [tuple(item) for item in state.get("pending", [])]
            heapq.heapify(self.pending)

    def _save(self) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.state_path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"handled": sorted(self.handled), "pending": self.pending}))
        temporary.replace(self.state_path)  # atomic: a crash leaves the old or the new state

    def poll(self) -> int:
        """Plan events for newly accepted messages. Returns how many messages were new."""
        response = self.session.get(f"{self.ses_endpoint}/moto-api/data.json", timeout=10)
        response.raise_for_status()
        messages = response.json().get("ses", {}).get("RawMessage", [])
        fresh = [m for m in messages if m.get("id") and m["id"] not in self.handled]
        now = time.time()
        for message in fresh:
            sent_at = datetime.now(UTC)
            for delay, record in plan_events(message, rates=self.rates, seed=self.seed, sent_at=sent_at):
                # The SNS MessageId is fixed when planned, so a post retried after a restart is
                # recognised by the webhook as the same message.
                due = now + delay * self.time_scale
                heapq.heappush(self.pending, (due, str(uuid.uuid4()), record))
            self.handled.add(message["id"])
        if fresh:
            self._save()
        return len(fresh)

    def flush(self, *, everything: bool = False) -> int:
        """Post the notifications that are due (or all of them). Returns how many were accepted."""
        posted = 0
        now = time.time()
        while self.pending and (everything or self.pending[0][0] <= now):
            _, message_id, record = self.pending[0]
            envelope = self.identity.notification(
                record,
                topic_arn=self.topic_arn,
                cert_url=self.cert_url,
                version=self.signature_version,
                message_id=message_id,
            )
            try:
                response = self.session.post(
                    self.webhook_url,
                    data=json.dumps(envelope),
                    headers={"Content-Type": "text/plain; charset=UTF-8", "x-amz-sns-message-type": "Notification"},
                    timeout=10,
                )
            except requests.RequestException as error:
                logger.warning("The webhook is not reachable (%s); will retry.", error)
                break
            if response.status_code >= 500:
                logger.warning("The webhook answered %s; will retry.", response.status_code)
                break
            if response.status_code >= 400:
                logger.warning("The webhook refused an event (%s): %s", response.status_code, response.text[:200])
            heapq.heappop(self.pending)
            posted += response.status_code < 300
        self._save()
        return posted

    def run_once(self) -> int:
        """Read everything accepted so far and post all its events now (for tests and scripts)."""
        self.poll()
        return self.flush(everything=True)

    def loop(self, *, interval: float = 1.0, stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        while not stop.is_set():
            try:
                self.poll()
                self.flush()
            except requests.RequestException as error:
                logger.warning("Local SES is not reachable (%s); retrying.", error)
            stop.wait(interval)
