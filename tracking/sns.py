"""Parse and verify Amazon SNS HTTP(S) messages (the envelope SES events arrive in).

Why our own verifier instead of django-ses's ``EventMessageVerifier``:

- django-ses checks signatures with SHA1 only, so SignatureVersion 2 (SHA256withRSA, which AWS
  recommends and which a topic may be switched to at any time) is rejected;
- it caches certificates in a per-process dict with no lock and no expiry, and caches *failures*
  too: one network hiccup makes every later event signed with that certificate fail until the
  process restarts, and a cold process fetches once per request already in flight;
- its certificate URL check is domain based; we accept exactly ``https://sns.<region>.amazonaws.com/``
  (plus explicitly trusted URL prefixes for local development) and nothing else;
- an empty topic list means "any topic" there. Here an empty ``SNS_TOPIC_ARNS`` refuses every
  topic, in DEBUG too: a valid signature only proves that *some* SNS topic (anyone's) signed the
  message, so accepting all topics would let any AWS account post events to us. Development
  settings add the local simulator's topic explicitly.

Checks, in order (each failure raises ``SNSRefused`` with a 4xx status and a clear message):
body size, JSON object with string fields, known ``Type``, ``TopicArn`` on the allowlist,
``Timestamp`` not older than ``MAX_MESSAGE_AGE`` (a replay of a message old enough to have left
the event table is refused; younger replays are absorbed by the MessageId uniqueness), the
certificate URL, then the RSA signature (v1 SHA1 or v2 SHA256, PKCS#1 v1.5).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.conf import settings

logger = logging.getLogger(__name__)

NOTIFICATION = "Notification"
SUBSCRIPTION_CONFIRMATION = "SubscriptionConfirmation"
UNSUBSCRIBE_CONFIRMATION = "UnsubscribeConfirmation"

# The fields SNS signs, in the order it signs them (only those present take part).
SIGNED_FIELDS = {
    NOTIFICATION: ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    SUBSCRIPTION_CONFIRMATION: ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    UNSUBSCRIBE_CONFIRMATION: ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
REQUIRED_FIELDS = {
    NOTIFICATION: ("Message", "MessageId", "Timestamp", "TopicArn", "Type"),
    SUBSCRIPTION_CONFIRMATION: ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    UNSUBSCRIBE_CONFIRMATION: ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}

# SNS retries an HTTP delivery for at most an hour; a day leaves room for clock skew and backlogs.
MAX_MESSAGE_AGE = timedelta(hours=24)
MAX_CLOCK_SKEW = timedelta(minutes=15)
CERT_TTL_SECONDS = 6 * 3600
CERT_MAX_BYTES = 64 * 1024
SNS_HOST = re.compile(r"^sns\.[a-z]{2}(?:-[a-z]+)+-\d\.amazonaws\.com(?:\.cn)?$")


class SNSRefused(Exception):
    """The message is not one we accept; ``status`` is the 4xx to answer with."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Envelope:
    """A verified SNS message."""

    type: str
    message_id: str
    topic_arn: str
    message: str
    timestamp: datetime
    subscribe_url: str = ""
    fields: dict | None = None


def envelope_parse(*, body: bytes) -> dict:
    """Size, JSON and shape checks; returns the raw fields (not yet trusted)."""
    if len(body) > settings.SNS_MAX_BODY_BYTES:
        raise SNSRefused(f"The body is larger than {settings.SNS_MAX_BODY_BYTES} bytes.", status=413)
    try:
        fields = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: "[[[[…" nested deeply
        raise SNSRefused("The body is not valid JSON.") from None
    if not isinstance(fields, dict):
        raise SNSRefused("The body is not a JSON object.")
    kind = fields.get("Type")
    if kind not in REQUIRED_FIELDS:
        raise SNSRefused(f"Unknown SNS message type {str(kind)[:40]!r}.")
    for name in (*REQUIRED_FIELDS[kind], "Signature", "SignatureVersion", "SigningCertURL"):
        if not isinstance(fields.get(name), str) or not fields[name]:
            raise SNSRefused(f"The SNS field {name} is missing or not a string.")
    if "Subject" in fields and not isinstance(fields["Subject"], str):
        raise SNSRefused("The SNS field Subject is not a string.")
    return fields


def envelope_verify(*, fields: dict) -> Envelope:
    """Topic, age, certificate and signature checks on parsed fields."""
    topic_arn = fields["TopicArn"]
    if topic_arn not in settings.SNS_TOPIC_ARNS:
        raise SNSRefused("The topic is not on this site's SNS_TOPIC_ARNS list.", status=403)
    timestamp = _timestamp(fields["Timestamp"])
    now = datetime.now(UTC)
    if timestamp < now - MAX_MESSAGE_AGE or timestamp > now + MAX_CLOCK_SKEW:
        raise SNSRefused("The message timestamp is outside the accepted window (replayed or clock skew).", status=403)
    if settings.SNS_VERIFY_SIGNATURES:
        signature_verify(fields=fields)
    return Envelope(
        type=fields["Type"],
        message_id=fields["MessageId"][:100],
        topic_arn=topic_arn,
        message=fields["Message"],
        timestamp=timestamp,
        subscribe_url=fields.get("SubscribeURL", ""),
        fields=fields,
    )


def string_to_sign(fields: dict) -> bytes:
    names = SIGNED_FIELDS[fields["Type"]]
    return "".join(f"{name}\n{fields[name]}\n" for name in names if name in fields).encode()


def signature_verify(*, fields: dict) -> None:
    algorithm = HASHES.get(fields["SignatureVersion"])
    if algorithm is None:
        raise SNSRefused(f"Unsupported SignatureVersion {fields['SignatureVersion'][:10]!r}.", status=403)
    try:
        signature = base64.b64decode(fields["Signature"], validate=True)
    except (binascii.Error, ValueError):
        raise SNSRefused("The signature is not base64.", status=403) from None
    public_key = certificate_public_key(url=fields["SigningCertURL"])
    try:
        public_key.verify(signature, string_to_sign(fields), padding.PKCS1v15(), algorithm())
    except InvalidSignature:
        raise SNSRefused("The signature does not match the message.", status=403) from None


def url_trusted(url: str, *, query: bool = False) -> bool:
    """True for https://sns.<region>.amazonaws.com/... or a SNS_CERT_TRUSTED_URLS prefix.

    ``query``: allow a query string (a SubscribeURL has one; a certificate URL does not).
    """
    forbidden = "@\\#" if query else "@\\?#"
    if any(char in url for char in forbidden) or ".." in url or any(ord(char) < 33 for char in url):
        return False
    for prefix in settings.SNS_CERT_TRUSTED_URLS:
        prefix = prefix if prefix.endswith("/") else prefix + "/"
        if url.startswith(prefix):
            return True
    try:
        parts = urlsplit(url)
        return parts.scheme == "https" and parts.port is None and bool(SNS_HOST.match(parts.netloc))
    except ValueError:  # a port that is not a number, an unclosed "[" …
        return False


class CertificateCache:
    """Public keys by certificate URL: one fetch at a time, only successes kept, each for a while."""

    def __init__(self, ttl: float = CERT_TTL_SECONDS) -> None:
        self.ttl = ttl
        self._keys: dict[str, tuple[rsa.RSAPublicKey, float]] = {}
        self._lock = threading.Lock()

    def get(self, url: str) -> rsa.RSAPublicKey:
        cached = self._keys.get(url)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        # One fetch per URL at a time: requests already in flight wait for it instead of
        # all fetching the same certificate.
        with self._lock:
            cached = self._keys.get(url)
            if cached and cached[1] > time.monotonic():
                return cached[0]
            key, expires = self._fetch(url)
            self._keys[url] = (key, min(expires, time.monotonic() + self.ttl))
            return key

    def clear(self) -> None:
        with self._lock:
            self._keys.clear()

    def _fetch(self, url: str) -> tuple[rsa.RSAPublicKey, float]:
        try:
            response = requests.get(url, timeout=5, stream=True)
            response.raise_for_status()
            pem = response.raw.read(CERT_MAX_BYTES + 1, decode_content=True)
        except requests.RequestException as error:
            logger.warning("Could not fetch the SNS signing certificate %s: %s", url, error)
            raise SNSRefused("The signing certificate could not be fetched.", status=403) from None
        if len(pem) > CERT_MAX_BYTES:
            raise SNSRefused("The signing certificate is too large.", status=403)
        try:
            certificate = x509.load_pem_x509_certificate(pem)
        except ValueError:
            raise SNSRefused("The signing certificate is not a PEM certificate.", status=403) from None
        now = datetime.now(UTC)
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            raise SNSRefused("The signing certificate is expired or not yet valid.", status=403)
        key = certificate.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise SNSRefused("The signing certificate does not hold an RSA key.", status=403)
        remaining = (certificate.not_valid_after_utc - now).total_seconds()
        return key, time.monotonic() + remaining


certificates = CertificateCache()


def certificate_public_key(*, url: str) -> rsa.RSAPublicKey:
    if not url_trusted(url):
        raise SNSRefused("The signing certificate URL is not an SNS certificate URL.", status=403)
    return certificates.get(url)


def _timestamp(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SNSRefused("The SNS Timestamp is not an ISO 8601 time.") from None
    if parsed.tzinfo is None:
        raise SNSRefused("The SNS Timestamp has no time zone.")
    return parsed


def subscription_confirm(*, topic_arn: str, subscribe_url: str) -> None:
    """Confirm an SNS subscription to an allowed topic by visiting its SubscribeURL.

    The URL must be an SNS endpoint (or a trusted local prefix): fetching whatever URL a message
    names would let anyone make this server request internal addresses.
    """
    if not url_trusted(subscribe_url, query=True):
        raise SNSRefused("The SubscribeURL is not an SNS endpoint.", status=403)
    try:
        response = requests.get(subscribe_url, timeout=10)
        response.raise_for_status()
    except requests.RequestException as error:
        logger.warning("Confirming the SNS subscription to %s failed: %s", topic_arn, error)
        raise SNSRefused("The subscription could not be confirmed with SNS; try again.", status=502) from None
    logger.info("Confirmed the SNS subscription to %s", topic_arn)
