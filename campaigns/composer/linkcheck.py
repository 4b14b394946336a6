"""Checking a campaign's links for real, from the preview page.

``link_check_start`` lists the addresses in the message and stores one ``LinkCheckResult`` row per
address; a django-q2 task (``campaigns.tasks.links_check``) then fetches the waiting ones a few
at a time (``link_check_run``): HEAD first, GET when the site refuses HEAD, redirects followed,
``LINK_CHECK_TIMEOUT`` seconds per link for the whole chain. The preview polls the rows.

Which addresses: the message is rendered once with every merge field replaced by a marker, so a
link that holds a merge field (``{{ unsubscribe_url }}``, ``https://club.example/{{ email }}``)
is recognised whatever filters or tags surround it, and is listed as written, not fetched.

Server-side request forgery: staff type the addresses and the server fetches them, so an address
must not reach the server's own network. Every hop of a redirect chain is resolved once; if any
address the name resolves to is not on the public internet (private, loopback, link-local,
multicast, reserved, unspecified, shared, and IPv6 forms that embed such an IPv4 address) the
link is not fetched. Otherwise the connection goes to the address that was checked, not to a
second lookup of the name (which a hostile DNS server could answer differently), with the name
kept for the Host header and TLS. ``LINK_CHECK_ALLOW_PRIVATE`` lifts the rule (tests, intranets).
"""

from __future__ import annotations

import http.client
import ipaddress
import logging
import re
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from urllib.parse import quote, urljoin, urlsplit

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django_q.tasks import async_task

from campaigns.composer.rendering import (
    MERGE_FIELDS,
    CompiledCampaign,
    ContactAttributes,
    compile_campaign,
    link_report,
    render_for,
)
from campaigns.models import Campaign, LinkCheckResult

logger = logging.getLogger(__name__)

Outcome = LinkCheckResult.Outcome
State = LinkCheckResult.State

# Links fetched at once by one task: polite to a club's own small web server, quick enough.
CONCURRENCY = 4
MAX_LINKS = 100
MAX_REDIRECTS = 10
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
USER_AGENT = "CobaltMail-LinkCheck/1.0 (checking the links of a newsletter before it is sent)"
_MARKER = re.compile(r"cobaltfield(\d+)x", re.IGNORECASE)


@dataclass(frozen=True)
class PlannedLink:
    """An address in the message, as staff wrote it, and whether it is to be fetched."""

    url: str
    text: str
    outcome: str = Outcome.PENDING  # set when it will not be fetched
    detail: str = ""


@dataclass(frozen=True)
class FetchResult:
    outcome: str
    status: int | None = None
    final_url: str = ""
    elapsed_ms: int = 0
    detail: str = ""


class _Stop(Exception):
    """A link that cannot be followed further; carries the outcome and the words for staff."""

    def __init__(self, outcome: str, detail: str) -> None:
        super().__init__(detail)
        self.outcome = outcome
        self.detail = detail


# --- which links -----------------------------------------------------------------------------


class _MarkedAttributes(ContactAttributes):
    """Any attribute a template asks for is a marker too."""

    def __init__(self, mark) -> None:
        super().__init__()
        self._mark = mark

    def __missing__(self, key: str) -> str:
        return self._mark(f"attributes.{key}")


def _marker_context() -> tuple[dict, list[str]]:
    names: list[str] = []

    def mark(name: str) -> str:
        names.append(name)
        return f"cobaltfield{len(names) - 1}x"

    context = {name: mark(name) for name in MERGE_FIELDS if name != "attributes"}
    context["attributes"] = _MarkedAttributes(mark)
    return context, names


def campaign_links(compiled: CompiledCampaign) -> list[PlannedLink]:
    """Every distinct address in the message, in order, merge fields shown as ``{{ name }}``."""
    context, names = _marker_context()

    def unmark(text: str) -> str:
        return _MARKER.sub(lambda m: "{{ " + names[int(m.group(1))] + " }}", text)

    planned: dict[str, PlannedLink] = {}
    fetched = 0
    for link in link_report(render_for(compiled, context).html):
        href = link.href.strip()
        url, text = unmark(href), unmark(link.text)
        if url in planned:
            known = planned[url]
            if text and text not in known.text.split(" · ") and len(known.text) + len(text) < 480:
                joined = f"{known.text} · {text}" if known.text else text
                planned[url] = PlannedLink(url, joined, known.outcome, known.detail)
            continue
        outcome, detail = _classify(href, link.ok, link.problem)
        if outcome == Outcome.PENDING:
            fetched += 1
            if fetched > MAX_LINKS:
                outcome, detail = Outcome.SKIPPED, f"Only the first {MAX_LINKS} addresses are checked."
        planned[url] = PlannedLink(url, text[:500], outcome, detail)
    return list(planned.values())


def _classify(href: str, well_formed: bool, problem: str) -> tuple[str, str]:
    if _MARKER.search(href):
        return Outcome.SKIPPED, "Holds a merge field: filled in for each recipient, so not checked here."
    if not well_formed:
        return Outcome.INVALID, problem
    if href.startswith("#"):
        return Outcome.SKIPPED, "A link to a place within the message."
    scheme = urlsplit(href).scheme.lower()
    if scheme == "mailto":
        return Outcome.SKIPPED, "An email address: opens the reader's mail program."
    if scheme == "tel":
        return Outcome.SKIPPED, "A phone number."
    return Outcome.PENDING, ""


# --- the service: start, run, read ----------------------------------------------------------------


def link_check_start(*, campaign: Campaign) -> list[LinkCheckResult]:
    """Replace the campaign's link check with a new one and queue the task that fetches it.

    Raises ``TemplateProblem`` when the campaign does not render.
    """
    planned = campaign_links(compile_campaign(campaign, with_attachments=False))
    now = timezone.now()
    with transaction.atomic():
        # One check at a time per campaign: a second start waits here, then replaces this one.
        Campaign.objects.select_for_update().filter(pk=campaign.pk).first()
        LinkCheckResult.objects.filter(campaign=campaign).delete()
        LinkCheckResult.objects.bulk_create(
            LinkCheckResult(
                campaign=campaign,
                position=position,
                url=link.url,
                text=link.text,
                outcome=link.outcome,
                detail=link.detail,
                state=State.QUEUED if link.outcome == Outcome.PENDING else State.DONE,
                checked_at=None if link.outcome == Outcome.PENDING else now,
                created_at=now,
            )
            for position, link in enumerate(planned)
        )
        if any(link.outcome == Outcome.PENDING for link in planned):
            campaign_id = campaign.pk
            transaction.on_commit(lambda: async_task("campaigns.tasks.links_check", campaign_id, group="link-checks"))
    return link_checks(campaign=campaign)


def link_checks(*, campaign: Campaign) -> list[LinkCheckResult]:
    return list(LinkCheckResult.objects.filter(campaign=campaign).order_by("position"))


def link_checks_for_message(*, campaign: Campaign, planned: list[PlannedLink]) -> list[LinkCheckResult] | None:
    """The stored check if it is of these very addresses; None when the message changed since."""
    rows = link_checks(campaign=campaign)
    if not rows or [row.url for row in rows] != [link.url for link in planned]:
        return None
    return rows


def link_check_stalled_after() -> timedelta:
    """How long a check may take at most: every link at its time limit, a few at a time, plus a minute
    for the queue. A check still waiting after that has no worker (or lost it)."""
    rounds = -(-MAX_LINKS // CONCURRENCY)
    return timedelta(seconds=rounds * settings.LINK_CHECK_TIMEOUT + 60)


def link_check_state(rows: list[LinkCheckResult]) -> str:
    """One of "done", "running" or "stalled" (not finished in the time it could have taken)."""
    waiting = [row for row in rows if row.state != State.DONE]
    if not waiting:
        return "done"
    oldest = min(row.created_at for row in waiting)
    return "stalled" if timezone.now() - oldest > link_check_stalled_after() else "running"


def link_check_run(*, campaign_id: int) -> int:
    """Fetch the campaign's waiting links, ``CONCURRENCY`` at a time; returns how many it fetched.

    Runs twice safely: each row is claimed with a conditional UPDATE, and a row another run claimed
    is taken over only once that run is well past its time (it died).
    """
    rows = _claim(campaign_id)
    if not rows:
        return 0
    timeout, allow_private = settings.LINK_CHECK_TIMEOUT, settings.LINK_CHECK_ALLOW_PRIVATE
    # Threads only fetch; this thread writes the results (one database connection, in order).
    with ThreadPoolExecutor(max_workers=CONCURRENCY, thread_name_prefix="link-check") as pool:
        futures = {pool.submit(link_fetch, row.url, timeout=timeout, allow_private=allow_private): row for row in rows}
        for future in as_completed(futures):
            _record(futures[future], future.result())
    return len(rows)


def _claim(campaign_id: int) -> list[LinkCheckResult]:
    now = timezone.now()
    abandoned = now - timedelta(seconds=2 * settings.LINK_CHECK_TIMEOUT + 30)
    candidates = LinkCheckResult.objects.filter(campaign_id=campaign_id).filter(
        Q(state=State.QUEUED) | Q(state=State.CHECKING, started_at__lt=abandoned)
    )
    claimed = []
    for row in candidates.order_by("position"):
        taken = LinkCheckResult.objects.filter(pk=row.pk, state=row.state, started_at=row.started_at).update(
            state=State.CHECKING, started_at=now
        )
        if taken:
            claimed.append(row)
    return claimed


def _record(row: LinkCheckResult, result: FetchResult) -> None:
    LinkCheckResult.objects.filter(pk=row.pk, state=State.CHECKING).update(
        state=State.DONE,
        outcome=result.outcome,
        http_status=result.status,
        final_url=result.final_url,
        elapsed_ms=result.elapsed_ms,
        detail=result.detail[:300],
        checked_at=timezone.now(),
    )


# --- fetching one link ----------------------------------------------------------------------------


def link_fetch(url: str, *, timeout: float, allow_private: bool) -> FetchResult:
    """Follow ``url`` to its final answer within ``timeout`` seconds. Never raises."""
    started = time.monotonic()
    deadline = started + timeout
    current = url

    def result(outcome: str, status: int | None = None, detail: str = "") -> FetchResult:
        elapsed = round(1000 * (time.monotonic() - started))
        return FetchResult(outcome, status, current, elapsed, detail)

    try:
        for _ in range(MAX_REDIRECTS + 1):
            status, location = _fetch_hop(current, deadline=deadline, allow_private=allow_private)
            if status in REDIRECT_STATUSES and location:
                current = urljoin(current, location.strip())
                continue
            return result(*_judge(status))
        return result(Outcome.BROKEN, None, f"More than {MAX_REDIRECTS} redirects: the address goes round in circles.")
    except _Stop as stop:
        return result(stop.outcome, None, stop.detail)
    except TimeoutError:
        return result(Outcome.UNREACHABLE, None, f"No answer within {timeout:g} s.")
    except socket.gaierror:
        return result(Outcome.UNREACHABLE, None, "The site's name was not found: is the address spelt right?")
    except ssl.SSLCertVerificationError:
        return result(Outcome.UNREACHABLE, None, "The site's security certificate is not valid: browsers will warn.")
    except (OSError, http.client.HTTPException) as error:
        return result(Outcome.UNREACHABLE, None, f"The site did not answer properly ({type(error).__name__}).")
    except Exception:  # a link check must never take the task down; the log has the details
        logger.exception("link check of %r failed", url)
        return result(Outcome.UNREACHABLE, None, "The check failed unexpectedly.")


def _judge(status: int) -> tuple[str, int, str]:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown status"
    if status < 300:
        return Outcome.OK, status, phrase
    if status in (401, 403, 429):
        return Outcome.BROKEN, status, f"{phrase}: the site refused our check. Open the link in a browser to be sure."
    if status in (404, 410):
        return Outcome.BROKEN, status, f"{phrase}: the page does not exist."
    if status >= 500:
        return Outcome.BROKEN, status, f"{phrase}: the site has a problem. Try again later."
    return Outcome.BROKEN, status, phrase


def _fetch_hop(url: str, *, deadline: float, allow_private: bool) -> tuple[int, str | None]:
    """One request (HEAD, then GET if HEAD is refused) to the checked address of ``url``'s host."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise _Stop(Outcome.BROKEN, f"Leads to an address that is not a web page: {url[:100]}")
    try:
        host = (parts.hostname or "").encode("idna").decode("ascii")
        port = parts.port or (443 if scheme == "https" else 80)
    except (UnicodeError, ValueError):
        raise _Stop(Outcome.INVALID, "The address has an invalid site name or port.") from None
    if not host:
        raise _Stop(Outcome.INVALID, "The address has no site name.")
    address = _resolve(host, port, allow_private=allow_private)
    target = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~") + (
        "?" + quote(parts.query, safe="/%:@!$&'()*+,;=-._~?") if parts.query else ""
    )
    status, location = _request("HEAD", scheme, host, port, address, target, deadline)
    if status >= 400:  # 405 / 501 (HEAD not supported), and sites that answer HEAD wrongly
        status, location = _request("GET", scheme, host, port, address, target, deadline)
    return status, location


def _resolve(host: str, port: int, *, allow_private: bool) -> str:
    """The address to connect to; every address the name has must be public (see the module doc)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise socket.gaierror("no address")
    if not allow_private:
        for address in addresses:
            if not address_is_public(address):
                raise _Stop(
                    Outcome.REFUSED,
                    f"{host} is on a private or local network ({address.split('%')[0]}): not checked, "
                    "for safety. Recipients outside your network cannot open it either.",
                )
    return addresses[0]


def address_is_public(address: str) -> bool:
    """True for an address on the public internet only (IPv4 inside IPv6 forms is unwrapped)."""
    ip = ipaddress.ip_address(address.split("%")[0])
    candidates = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = [ip.ipv4_mapped, ip.sixtofour, ip.teredo[1] if ip.teredo else None]
        candidates += [inner for inner in embedded if inner is not None]
        if ip.is_site_local:
            return False
    return all(
        candidate.is_global
        and not (
            candidate.is_private
            or candidate.is_loopback
            or candidate.is_link_local
            or candidate.is_multicast
            or candidate.is_reserved
            or candidate.is_unspecified
        )
        for candidate in candidates
    )


class PinnedHTTPConnection(http.client.HTTPConnection):
    """Speaks to ``host`` (Host header) at the already checked ``address`` (also used by the
    webhooks, ``api.webhooks``, which follow the same rule)."""

    def __init__(self, host: str, port: int, *, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """As above over TLS: the certificate is verified for ``host`` (SNI too), not for the address."""

    def __init__(self, host: str, port: int, *, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=_tls_context())
        self._address = address

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)


@lru_cache(maxsize=1)
def _tls_context() -> ssl.SSLContext:
    try:
        import certifi

        return ssl.create_default_context(cafile=certifi.where())
    except ImportError:  # pragma: no cover - certifi comes with requests
        return ssl.create_default_context()


def _request(
    method: str, scheme: str, host: str, port: int, address: str, target: str, deadline: float
) -> tuple[int, str | None]:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError
    connection_class = PinnedHTTPSConnection if scheme == "https" else PinnedHTTPConnection
    connection = connection_class(host, port, address=address, timeout=remaining)
    try:
        # Only the status line and headers are read: the body is never downloaded.
        connection.request(method, target, headers={"User-Agent": USER_AGENT, "Accept": "*/*", "Connection": "close"})
        response = connection.getresponse()
        return response.status, response.getheader("Location")
    finally:
        connection.close()
