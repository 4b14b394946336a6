"""Sender domains against the mailbox providers' bulk-sender rules: a checklist per domain.

Gmail and Yahoo (since February 2024) and Microsoft (since May 2025) ask bulk senders for SPF and
DKIM that pass, a DMARC record (at least ``p=none``) that one of them aligns with, one-click
unsubscribe and a spam-complaint rate under 0.3%. For the domain of every address in
``SENDER_ADDRESSES`` this module asks SES how it signs (Easy DKIM) and which MAIL FROM domain it
uses, and asks DNS (dnspython) for the SPF, MX and DMARC records those need. Each item is "OK",
"could not be checked", or the exact record to publish.

Every DNS lookup gives up after ``LOOKUP_SECONDS``; a domain's lookups run side by side, so a
silent name server costs the page about that long, not that long per record. A domain's result
is cached for an hour (Django's cache): DNS changes slowly and the page must stay cheap. A result
in which something could not be checked is cached for five minutes only, so that a passing
outage does not hide the answer for an hour; "Check again" forgets one domain's result.
"""

from __future__ import annotations

import enum
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import quote

import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.contrib import messages
from django.core.cache import cache
from django.db.models import Sum
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from campaigns.delivery.ses import ses_client
from stats.models import CampaignStats

LOOKUP_SECONDS = 2.0
CACHE_SECONDS = 3600
UNCHECKED_CACHE_SECONDS = 300
CACHE_PREFIX = "senderdns:v1:"
COMPLAINT_LIMIT = 0.003  # Gmail, Yahoo and Microsoft: under 0.3%
COMPLAINT_DAYS = 7
ALL_PROVIDERS = "Gmail, Yahoo and Microsoft require it"
SPF_FOR_SES = "v=spf1 include:amazonses.com ~all"


class Status(enum.StrEnum):
    OK = "ok"
    TODO = "todo"
    RECOMMENDED = "recommended"
    UNKNOWN = "unknown"

    @property
    def label(self) -> str:
        return {"ok": "OK", "todo": "To do", "recommended": "Recommended", "unknown": "Could not be checked"}[self]


@dataclass(frozen=True)
class Record:
    """A DNS record to publish at the domain's DNS host."""

    name: str
    type: str
    value: str


@dataclass(frozen=True)
class Item:
    title: str
    rule: str  # who asks for it
    status: Status
    text: str  # what was found, or what to do, in plain words
    found: tuple[str, ...] = ()  # records as DNS returned them (shown as text)
    publish: tuple[Record, ...] = ()


@dataclass(frozen=True)
class Lookup:
    """One DNS question's answer: ``found`` is False for no such record (NXDOMAIN or no data),
    ``failed`` for no answer at all (time-out, server failure, no resolver)."""

    name: str
    records: tuple[str, ...] = ()
    failed: bool = False


@dataclass(frozen=True)
class DomainReport:
    domain: str
    items: tuple[Item, ...]
    checked_at: datetime

    @property
    def complete(self) -> bool:
        return all(item.status != Status.UNKNOWN for item in self.items)


# --- DNS ------------------------------------------------------------------------------------------


def _nameserver(entry: str) -> dns.nameserver.Do53Nameserver:
    """``ip``, ``ip:port`` or ``[ipv6]:port`` (cobalt_mail/settings.py checked it at start-up)."""
    if entry.startswith("["):
        host, _, port = entry[1:].partition("]")
        port = port.removeprefix(":")
    elif entry.count(":") == 1:
        host, _, port = entry.partition(":")
    else:
        host, port = entry, ""
    return dns.nameserver.Do53Nameserver(host, int(port or 53))


def _resolver() -> dns.resolver.Resolver:
    if settings.DNS_NAMESERVERS:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [_nameserver(entry) for entry in settings.DNS_NAMESERVERS]
    else:
        resolver = dns.resolver.Resolver()  # /etc/resolv.conf
    # One budget for the whole lookup, retries and every name server included.
    resolver.timeout = resolver.lifetime = LOOKUP_SECONDS
    return resolver


def lookup(name: str, record_type: str) -> Lookup:
    """TXT records as their text (strings joined), MX as ``"preference host"``."""
    try:
        answer = _resolver().resolve(name, record_type, raise_on_no_answer=False, search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return Lookup(name)
    except (dns.exception.DNSException, OSError, ValueError):
        # Time-out, SERVFAIL from every server, no resolver configured, an unreachable network.
        return Lookup(name, failed=True)
    if answer.rrset is None:
        return Lookup(name)
    if answer.rdtype == dns.rdatatype.TXT:
        records = [b"".join(rdata.strings).decode("utf-8", "replace") for rdata in answer.rrset]
    else:
        records = [
            f"{rdata.preference} {rdata.exchange.to_text(omit_final_dot=True).lower()}" for rdata in answer.rrset
        ]
    return Lookup(name, tuple(sorted(records)))


def spf_records(found: Lookup) -> list[str]:
    return [record for record in found.records if record.strip().lower().split(" ")[0] == "v=spf1"]


def dmarc_records(found: Lookup) -> list[str]:
    return [record for record in found.records if record.replace(" ", "").lower().startswith("v=dmarc1")]


def dmarc_tags(record: str) -> dict[str, str]:
    tags = {}
    for part in record.split(";"):
        key, _, value = part.partition("=")
        if key.strip():
            tags[key.strip().lower()] = value.strip().lower()
    return tags


def _parents(domain: str) -> list[str]:
    """news.club.org.au → club.org.au, org.au: where DMARC looks when a subdomain has no record.

    The true organisational domain needs the public-suffix list; asking a name too short
    (``org.au``) finds nothing and is harmless.
    """
    labels = domain.split(".")
    return [".".join(labels[start:]) for start in range(1, len(labels) - 1)]


def dmarc_lookup(domain: str) -> tuple[Lookup, str]:
    """The DMARC TXT lookup that decides for ``domain`` and the domain it belongs to."""
    found = lookup(f"_dmarc.{domain}", "TXT")
    for parent in _parents(domain):
        if found.failed or dmarc_records(found):
            break
        found, domain = lookup(f"_dmarc.{parent}", "TXT"), parent
    return found, domain


# --- SES ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SesIdentity:
    """What SES says about a domain identity; ``reachable`` False when it could not be asked."""

    reachable: bool
    dkim: dict = field(default_factory=dict)  # GetIdentityDkimAttributes' entry
    mail_from: dict = field(default_factory=dict)  # GetIdentityMailFromDomainAttributes' entry


def ses_identity(domain: str) -> SesIdentity:
    try:
        client = ses_client()
        dkim = client.get_identity_dkim_attributes(Identities=[domain])["DkimAttributes"]
        mail_from = client.get_identity_mail_from_domain_attributes(Identities=[domain])["MailFromDomainAttributes"]
    except (BotoCoreError, ClientError):
        return SesIdentity(reachable=False)
    return SesIdentity(reachable=True, dkim=dkim.get(domain, {}), mail_from=mail_from.get(domain, {}))


# --- the checklist items of one domain --------------------------------------------------------------


def dkim_item(domain: str, ses: SesIdentity) -> Item:
    title, rule = "DKIM signature (SES)", ALL_PROVIDERS
    if not ses.reachable:
        return Item(title, rule, Status.UNKNOWN, "SES could not be asked (check the credentials and the SES endpoint).")
    status = ses.dkim.get("DkimVerificationStatus") or "NotStarted"
    tokens = ses.dkim.get("DkimTokens") or []
    records = tuple(Record(f"{token}._domainkey.{domain}", "CNAME", f"{token}.dkim.amazonses.com") for token in tokens)
    if status == "Success" and ses.dkim.get("DkimEnabled"):
        return Item(title, rule, Status.OK, f"SES signs every message with DKIM for {domain} (aligned with DMARC).")
    if status == "Success":
        text = f"SES has verified DKIM for {domain} but signing is off: turn DKIM signing on for the identity in SES."
        return Item(title, rule, Status.TODO, text)
    if status == "NotStarted" or not records:
        text = (
            f"SES does not sign mail for {domain} with DKIM. In the SES console open the identity {domain} "
            "(create it if it is missing), turn on Easy DKIM, then publish the three CNAME records it shows."
        )
        return Item(title, rule, Status.TODO, text)
    waiting = {
        "Pending": "SES is waiting to find these records; it looks for 72 hours.",
        "Failed": "SES stopped looking for these records: publish them, then restart DKIM verification in SES.",
        "TemporaryFailure": "SES could not read these records for a while; it keeps trying.",
    }.get(status, f"SES reports DKIM status {status}.")
    return Item(title, rule, Status.TODO, f"Publish these three CNAME records. {waiting}", publish=records)


def mail_from_domain(ses: SesIdentity) -> str:
    return (ses.mail_from.get("MailFromDomain") or "").lower().rstrip(".")


def is_aligned(sub: str, domain: str) -> bool:
    """Relaxed alignment, as far as it can be told without the public-suffix list."""
    return sub == domain or sub.endswith(f".{domain}")


def feedback_host() -> str:
    return f"feedback-smtp.{settings.AWS_SES_REGION_NAME}.amazonses.com"


def spf_item(ses: SesIdentity, mail_from_txt: Lookup | None, own_txt: Lookup) -> Item:
    title, rule = "SPF passes", ALL_PROVIDERS
    own = tuple(f"{own_txt.name} TXT {record}" for record in spf_records(own_txt))
    if not ses.reachable:
        return Item(title, rule, Status.UNKNOWN, "SES could not be asked which MAIL FROM domain it sends with.", own)
    mail_from = mail_from_domain(ses)
    if not mail_from or mail_from_txt is None:
        text = (
            "SES sends with its own MAIL FROM domain (amazonses.com), whose SPF record passes."
            " (Your domain's own SPF record, if any, is for mail sent from elsewhere.)"
        )
        return Item(title, rule, Status.OK, text, own)
    if mail_from_txt.failed:
        return Item(title, rule, Status.UNKNOWN, f"The TXT records of {mail_from} could not be looked up.")
    records = spf_records(mail_from_txt)
    found = tuple(f"{mail_from} TXT {record}" for record in records)
    publish = (Record(mail_from, "TXT", SPF_FOR_SES),)
    if not records:
        text = f"{mail_from} (SES's MAIL FROM domain for you) has no SPF record: publish this TXT record."
        return Item(title, rule, Status.TODO, text, found, publish)
    if len(records) > 1:
        text = f"{mail_from} has {len(records)} SPF records, which receivers treat as an error: keep only this one."
        return Item(title, rule, Status.TODO, text, found, publish)
    if "include:amazonses.com" not in records[0].lower().split():
        text = f"The SPF record of {mail_from} does not include amazonses.com: replace it with this one."
        return Item(title, rule, Status.TODO, text, found, publish)
    return Item(title, rule, Status.OK, f"{mail_from} has an SPF record that lets SES send.", found)


def mail_from_item(domain: str, ses: SesIdentity, mx: Lookup | None, dkim_ok: bool) -> Item:
    title = "Custom MAIL FROM domain (SPF aligned)"
    rule = "DMARC needs SPF or DKIM aligned: " + (
        "recommended, DKIM already is" if dkim_ok else "required while DKIM is not"
    )
    mail_from = mail_from_domain(ses)
    suggested = mail_from or f"bounce.{domain}"
    publish = (Record(suggested, "MX", f"10 {feedback_host()}"), Record(suggested, "TXT", SPF_FOR_SES))
    missing = Status.RECOMMENDED if dkim_ok else Status.TODO
    if not ses.reachable:
        return Item(title, rule, Status.UNKNOWN, "SES could not be asked which MAIL FROM domain it sends with.")
    if not mail_from:
        text = (
            f"SES sends with its own MAIL FROM domain, so SPF passes for amazonses.com, not for {domain}. "
            f"In SES set the identity's custom MAIL FROM domain to {suggested}, and publish these records."
        )
        return Item(title, rule, missing, text, publish=publish)
    if not is_aligned(mail_from, domain):
        text = f"The MAIL FROM domain {mail_from} is not part of {domain}: choose one under it, e.g. bounce.{domain}."
        return Item(title, rule, missing, text)
    if mx is None or mx.failed:
        return Item(title, rule, Status.UNKNOWN, f"The MX records of {mail_from} could not be looked up.")
    found = tuple(f"{mail_from} MX {record}" for record in mx.records)
    if not any(record.split(" ")[-1] == feedback_host() for record in mx.records):
        text = f"{mail_from} has no MX record pointing to SES ({feedback_host()}): publish this one."
        return Item(title, rule, missing, text, found, publish[:1])
    ses_status = ses.mail_from.get("MailFromDomainStatus") or "Pending"
    if ses_status != "Success":
        text = f"The records are in place; SES reports {ses_status} for {mail_from} and checks again by itself."
        return Item(title, rule, missing, text, found)
    return Item(title, rule, Status.OK, f"SES sends with MAIL FROM {mail_from}, part of {domain}.", found)


def dmarc_item(domain: str, found: Lookup, at: str) -> Item:
    title, rule = "DMARC policy (at least p=none)", ALL_PROVIDERS
    publish = (Record(f"_dmarc.{domain}", "TXT", "v=DMARC1; p=none"),)
    if found.failed:
        return Item(title, rule, Status.UNKNOWN, f"The TXT records of _dmarc.{at} could not be looked up.")
    records = dmarc_records(found)
    shown = tuple(f"_dmarc.{at} TXT {record}" for record in records)
    if not records:
        text = (
            f"{domain} has no DMARC record: publish this TXT record (add rua=mailto:an-address@{domain} to get"
            " reports of who sends as your domain)."
        )
        return Item(title, rule, Status.TODO, text, publish=publish)
    if len(records) > 1:
        text = f"_dmarc.{at} has {len(records)} DMARC records, so receivers ignore them all: keep one."
        return Item(title, rule, Status.TODO, text, shown, publish)
    tags = dmarc_tags(records[0])
    policy = tags.get("sp", tags.get("p")) if at != domain else tags.get("p")
    if policy not in {"none", "quarantine", "reject"}:
        text = "The DMARC record has no valid policy (p=none, p=quarantine or p=reject): publish this one instead."
        return Item(title, rule, Status.TODO, text, shown, publish)
    meaning = {
        "none": "receivers only report failures",
        "quarantine": "receivers put failing mail in spam",
        "reject": "receivers refuse failing mail",
    }[policy]
    inherited = f" (from {at}, which {domain} belongs to)" if at != domain else ""
    return Item(title, rule, Status.OK, f"Policy p={policy}{inherited}: {meaning}.", shown)


def alignment_item(domain: str, dkim: Item, mail_from: Item, spf: Item, found: Lookup) -> Item:
    title, rule = "DMARC aligned (DKIM or SPF for the From domain)", ALL_PROVIDERS
    strict_spf = any(dmarc_tags(record).get("aspf") == "s" for record in dmarc_records(found))
    spf_aligned = mail_from.status == Status.OK and spf.status == Status.OK and not strict_spf
    if dkim.status == Status.OK or spf_aligned:
        by = " and ".join(name for name, ok in (("DKIM", dkim.status == Status.OK), ("SPF", spf_aligned)) if ok)
        return Item(title, rule, Status.OK, f"Mail from {domain} passes DMARC through {by}.")
    if Status.UNKNOWN in {dkim.status, mail_from.status, spf.status}:
        return Item(title, rule, Status.UNKNOWN, "Not known until the items above can be checked.")
    text = f"Neither DKIM nor SPF is aligned with {domain} yet: DMARC fails. Set up DKIM above (the quickest)."
    return Item(title, rule, Status.TODO, text)


def domain_check(domain: str) -> DomainReport:
    """Ask SES and DNS about ``domain``: the lookups run side by side, each within its budget."""
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="senderdns") as pool:
        ses_future = pool.submit(ses_identity, domain)
        own_future = pool.submit(lookup, domain, "TXT")
        dmarc_future = pool.submit(dmarc_lookup, domain)
        ses = ses_future.result()
        mail_from = mail_from_domain(ses)
        mx_future = pool.submit(lookup, mail_from, "MX") if mail_from else None
        txt_future = pool.submit(lookup, mail_from, "TXT") if mail_from else None
        dmarc_found, dmarc_at = dmarc_future.result()
        mx = mx_future.result() if mx_future else None
        mail_from_txt = txt_future.result() if txt_future else None
        own_txt = own_future.result()
    dkim = dkim_item(domain, ses)
    spf = spf_item(ses, mail_from_txt, own_txt)
    mail_from_row = mail_from_item(domain, ses, mx, dkim.status == Status.OK)
    dmarc = dmarc_item(domain, dmarc_found, dmarc_at)
    aligned = alignment_item(domain, dkim, mail_from_row, spf, dmarc_found)
    return DomainReport(domain, (dkim, spf, dmarc, aligned, mail_from_row), timezone.now())


# --- every domain, cached ----------------------------------------------------------------------------


def sender_domains() -> list[str]:
    domains = {address.rpartition("@")[2].strip().lower().rstrip(".") for address in settings.SENDER_ADDRESSES}
    return sorted(domain for domain in domains if domain)


def _cache_key(domain: str) -> str:
    return CACHE_PREFIX + quote(domain)  # plain ASCII, as every cache backend accepts


def domain_report(domain: str) -> DomainReport:
    report = cache.get(_cache_key(domain))
    if report is None:
        report = domain_check(domain)
        cache.set(_cache_key(domain), report, CACHE_SECONDS if report.complete else UNCHECKED_CACHE_SECONDS)
    return report


def domain_forget(domain: str) -> None:
    cache.delete(_cache_key(domain))


def domain_reports(domains: list[str]) -> list[DomainReport]:
    cached = {domain: cache.get(_cache_key(domain)) for domain in domains}
    missing = [domain for domain, report in cached.items() if report is None]
    if missing:  # domains side by side too: a silent name server costs the page one budget
        with ThreadPoolExecutor(max_workers=min(4, len(missing)), thread_name_prefix="senderdns-domain") as pool:
            for domain, report in zip(missing, pool.map(domain_check, missing), strict=True):
                cache.set(_cache_key(domain), report, CACHE_SECONDS if report.complete else UNCHECKED_CACHE_SECONDS)
                cached[domain] = report
    return [cached[domain] for domain in domains]


# --- what holds for every domain: unsubscribe and complaints -------------------------------------------


def unsubscribe_item() -> Item:
    """campaigns/delivery/mime.py puts ``List-Unsubscribe: <SITE_URL/u/…>`` and
    ``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` on every campaign message (test sends
    leave the second out: they are not bulk mail). RFC 8058 wants the link over HTTPS."""
    title, rule = "One-click unsubscribe (RFC 8058)", ALL_PROVIDERS + " (and to honour it within 2 days)"
    if not settings.SITE_URL.lower().startswith("https://"):
        text = (
            f"Every campaign message has the one-click unsubscribe headers, but their link starts with "
            f"{settings.SITE_URL}: mailbox providers accept only https:// links."
            " Set SITE_URL to the site's https:// address."
        )
        return Item(title, rule, Status.TODO, text)
    text = (
        "Every campaign message carries List-Unsubscribe and List-Unsubscribe-Post: List-Unsubscribe=One-Click;"
        " the link unsubscribes at once."
    )
    return Item(title, rule, Status.OK, text)


def complaint_item() -> Item:
    """Recipients who complained ÷ delivered recipients, over the last 7 days' campaigns (all
    campaigns when none delivered in that time), against the providers' 0.3%."""
    title, rule = "Spam complaint rate under 0.3%", ALL_PROVIDERS
    since = timezone.now() - timedelta(days=COMPLAINT_DAYS)
    period = f"campaigns of the last {COMPLAINT_DAYS} days"
    totals = _complaint_totals(CampaignStats.objects.filter(campaign__started_at__gte=since))
    if not totals[1]:
        period, totals = "all campaigns", _complaint_totals(CampaignStats.objects.all())
    complained, delivered = totals
    if not delivered:
        return Item(title, rule, Status.UNKNOWN, "Nothing has been delivered yet, so there is no rate to judge.")
    rate = complained / delivered
    figures = f"{complained:,} complaints from {delivered:,} delivered recipients ({rate:.2%}), {period}"
    if rate >= COMPLAINT_LIMIT:
        text = (
            f"{figures}: above 0.3%, providers send your mail to spam or refuse it. Send only to people who asked"
            " for your mail, say who you are in the first lines, and remove people who have not opened for a long time."
        )
        return Item(title, rule, Status.TODO, text)
    return Item(title, rule, Status.OK, f"{figures}.")


def _complaint_totals(stats) -> tuple[int, int]:
    totals = stats.aggregate(complained=Sum("complained"), delivered=Sum("delivered"))
    return totals["complained"] or 0, totals["delivered"] or 0


# --- the page ------------------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def senders_page(request: HttpRequest) -> HttpResponse:
    """The checklist; POST ``domain`` ("Check again") forgets that domain's cached result."""
    domains = sender_domains()
    if request.method == "POST":
        domain = request.POST.get("domain", "").strip().lower()
        if domain not in domains:
            return HttpResponseBadRequest("That is not one of the sender domains (SENDER_ADDRESSES): nothing to check.")
        domain_forget(domain)
        messages.success(request, f"{domain} was checked again just now.")
        return redirect("reports:senders")
    context = {
        "reports": domain_reports(domains),
        "account_items": [unsubscribe_item(), complaint_item()],
        "lookup_seconds": LOOKUP_SECONDS,
    }
    return render(request, "reports/senders.html", context)
