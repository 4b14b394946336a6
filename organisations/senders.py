"""Sender identities: the domains and addresses an organisation sends from, verified by SES.

An administrator adds a domain (recommended: every address at it may send, and mail is signed
with the organisation's own DKIM key, which Gmail, Yahoo and Microsoft look for) or a single
address. Cobalt Mail creates the identity in SES (SESv2 ``CreateEmailIdentity``, Easy DKIM) and,
for a domain, optionally a custom MAIL FROM domain (``PutEmailIdentityMailFromAttributes``); the
page lists the DNS records to publish. SES checks DNS by itself; the ``sender-identities-check``
schedule asks SES (``GetEmailIdentity``) every few minutes about identities not yet verified, and
hourly about verified ones (SES may withdraw a verification when the records disappear).

Until an organisation has a verified identity it sends from the installation's shared addresses
(``SENDER_ADDRESSES``), which every organisation may always use. ``sender_allowed`` is the one
answer to "may this organisation send from this address", read by the campaign form, the send-time
check and the API's single messages.

This module is the only writer of ``SenderIdentity`` rows; every add and removal is audited.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import timedelta

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone

from common.ses_clients import ses_account_client
from organisations import audit
from organisations.models import Organisation, SenderIdentity

logger = logging.getLogger(__name__)

Kind = SenderIdentity.Kind
Status = SenderIdentity.Status

SPF_FOR_SES = "v=spf1 include:amazonses.com ~all"  # as reports/senderdns.py asks for
PENDING_CHECK_EVERY = timedelta(minutes=4)  # the schedule runs every 5 minutes
VERIFIED_CHECK_EVERY = timedelta(minutes=55)
CHECKS_PER_RUN = 200  # SES allows about one GetEmailIdentity a second per account: stay well inside a run
_DOMAIN = re.compile(r"^(?=.{4,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$")
_SES_STATUS = {"FAILED": Status.FAILED, "TEMPORARY_FAILURE": Status.TEMPORARY_FAILURE}


class SenderRefused(ValueError):
    """An identity that cannot be added or removed; the message says why in plain words."""


@dataclass(frozen=True)
class DnsRecord:
    """A record to publish at the domain's DNS host."""

    name: str
    type: str
    value: str
    purpose: str
    published: bool  # SES has seen it


def sesv2_client():
    """A boto3 SESv2 client with the same region, endpoint and credentials as the sending client."""
    return ses_account_client("sesv2")


# --- reads ----------------------------------------------------------------------------------------


def shared_addresses() -> list[str]:
    """The installation's shared sender addresses: every organisation may always send from them."""
    return [address.strip() for address in settings.SENDER_ADDRESSES if address.strip()]


def identities_of(organisation: Organisation | int):
    return SenderIdentity.objects.filter(organisation_id=getattr(organisation, "pk", organisation))


def verified_senders(organisation: Organisation | int) -> tuple[list[str], list[str]]:
    """(verified domains, verified addresses) of the organisation, sorted."""
    domains, addresses = [], []
    for kind, value in identities_of(organisation).filter(status=Status.VERIFIED).values_list("kind", "value"):
        (domains if kind == Kind.DOMAIN else addresses).append(value)
    return sorted(domains), sorted(addresses)


def sender_allowed(organisation: Organisation | int, address: str) -> bool:
    """May the organisation send from ``address``? A shared address, or one of its verified
    identities (an address, or any address at a domain)."""
    address = (address or "").strip().lower()
    if not address or "@" not in address:
        return False
    if address in {shared.lower() for shared in shared_addresses()}:
        return True
    domain = address.rpartition("@")[2]
    found = identities_of(organisation).filter(status=Status.VERIFIED)
    return found.filter(Q(kind=Kind.DOMAIN, value=domain) | Q(kind=Kind.ADDRESS, value=address)).exists()


def sender_refusal(organisation: Organisation | int, address: str) -> str:
    """Why ``address`` may not be used, in words for staff (empty if it may)."""
    if sender_allowed(organisation, address):
        return ""
    domains, addresses = verified_senders(organisation)
    offered = [*shared_addresses(), *addresses, *(f"any address at {domain}" for domain in domains)]
    return (
        f"{address} is not a verified sender of this organisation. Send from {', '.join(offered) or 'a shared address'}"
        ", or add it under Organisation → Senders and wait until SES has verified it."
    )


def dns_records(identity: SenderIdentity) -> list[DnsRecord]:
    """The records the identity needs: three DKIM CNAMEs; for a custom MAIL FROM domain its MX and SPF."""
    if identity.kind != Kind.DOMAIN:
        return []
    dkim_done = identity.dkim_status == "SUCCESS"
    records = [
        DnsRecord(
            name=f"{token}._domainkey.{identity.value}",
            type="CNAME",
            value=f"{token}.dkim.amazonses.com",
            purpose="DKIM: SES signs your mail with the key behind it",
            published=dkim_done,
        )
        for token in identity.dkim_tokens
    ]
    if identity.mail_from_domain:
        mail_from_done = identity.mail_from_status == "success"
        records += [
            DnsRecord(
                name=identity.mail_from_domain,
                type="MX",
                value=f"10 feedback-smtp.{settings.AWS_SES_REGION_NAME}.amazonses.com",
                purpose="MAIL FROM: bounces come back to SES through it",
                published=mail_from_done,
            ),
            DnsRecord(
                name=identity.mail_from_domain,
                type="TXT",
                value=SPF_FOR_SES,
                purpose="SPF: allows SES to send for the MAIL FROM domain",
                published=mail_from_done,
            ),
        ]
    return records


def missing(identity: SenderIdentity) -> list[str]:
    """What is still to be done before the identity sends (or sends well), in plain words."""
    if identity.kind == Kind.ADDRESS:
        if identity.verified:
            return []
        return [
            f"SES sent a verification email to {identity.value}: click its link. "
            "The link works for 24 hours; if it has expired, remove the address and add it again."
        ]
    found = []
    if identity.status == Status.FAILED or identity.dkim_status == "FAILED":
        found.append(
            "SES could not find the three DKIM records for 72 hours and gave up: check them below at your "
            "DNS host, then remove the domain and add it again."
        )
    elif not identity.verified or identity.dkim_status != "SUCCESS":
        if identity.dkim_tokens:
            found.append(
                "SES has not seen the DKIM records yet: publish the three CNAME records below at your DNS host; "
                "it can take up to 72 hours."
            )
        else:
            found.append("SES has not given the DKIM records yet: press “Check now” in a minute.")
    if identity.status == Status.TEMPORARY_FAILURE:
        found.append("SES could not look up your DNS for a while; it keeps trying by itself.")
    if identity.mail_from_domain and identity.mail_from_status != "success":
        if identity.mail_from_status == "failed":
            found.append(
                f"SES could not find the MX record of {identity.mail_from_domain}: mail goes out with SES's own "
                "MAIL FROM domain until you publish the MX and TXT records below."
            )
        else:
            found.append(
                f"Publish the MX and TXT records of {identity.mail_from_domain} below, so that SPF passes for your "
                "own domain (until then SES uses its own MAIL FROM domain)."
            )
    return found


def due_for_check(now=None):
    """Identities the schedule should ask SES about now, oldest check first."""
    now = now or timezone.now()
    never = Q(last_checked_at__isnull=True)
    pending = ~Q(status=Status.VERIFIED) & Q(last_checked_at__lte=now - PENDING_CHECK_EVERY)
    verified = Q(status=Status.VERIFIED, last_checked_at__lte=now - VERIFIED_CHECK_EVERY)
    return SenderIdentity.objects.filter(never | pending | verified).order_by("last_checked_at", "pk")


# --- writes ---------------------------------------------------------------------------------------


def normalise_identity(kind: str, value: str) -> str:
    """A domain: lower case, no trailing dot, internationalised names in punycode. An address: lower case."""
    value = (value or "").strip().strip("<>").strip()
    if kind == Kind.ADDRESS:
        try:
            validate_email(value)
        except ValidationError:
            raise SenderRefused(f"“{value}” is not an email address.") from None
        local, _, domain = value.rpartition("@")
        return f"{local}@{_domain(domain)}".lower()
    if "@" in value:
        raise SenderRefused("Type the domain only (e.g. riverside.example), or choose “A single address”.")
    return _domain(value)


def _domain(value: str) -> str:
    value = value.strip().rstrip(".").lower()
    try:
        value = value.encode("idna").decode("ascii")
    except UnicodeError:
        raise SenderRefused(f"“{value}” is not a domain name.") from None
    if not _DOMAIN.match(value):
        raise SenderRefused(f"“{value}” is not a domain name (e.g. riverside.example).")
    return value


def _check_free(organisation: Organisation, kind: str, value: str) -> None:
    """An identity belongs to one organisation, and a domain's addresses to the domain's owner."""
    domain = value.rpartition("@")[2]
    taken = SenderIdentity.objects.filter(value=value).first()
    if taken is not None:
        if taken.organisation_id == organisation.pk:
            raise SenderRefused(f"{value} is already one of your senders.")
        raise SenderRefused(
            f"{value} is already a sender of another organisation. An identity belongs to one organisation: "
            "ask its administrators, or a site operator, if it should be yours."
        )
    if domain in {shared.rpartition("@")[2].lower() for shared in shared_addresses()}:
        raise SenderRefused(
            f"{domain} is the installation's shared sender domain: every organisation may already use it."
        )
    others = SenderIdentity.objects.exclude(organisation=organisation)
    if kind == Kind.ADDRESS and others.filter(kind=Kind.DOMAIN, value=domain).exists():
        raise SenderRefused(f"{domain} is a sender domain of another organisation: its addresses are theirs.")
    if kind == Kind.DOMAIN and others.filter(kind=Kind.ADDRESS, value__endswith=f"@{domain}").exists():
        raise SenderRefused(f"Another organisation sends from an address at {domain}: a domain belongs to one owner.")


def sender_add(
    *,
    organisation: Organisation,
    kind: str,
    value: str,
    mail_from_subdomain: str = "",
    request: HttpRequest | None = None,
) -> SenderIdentity:
    """Create the identity in SES (Easy DKIM), optionally its custom MAIL FROM, and record it."""
    value = normalise_identity(kind, value)
    _check_free(organisation, kind, value)
    mail_from = ""
    if kind == Kind.DOMAIN and mail_from_subdomain.strip():
        mail_from = _domain(f"{mail_from_subdomain.strip().rstrip('.')}.{value}")
    client = sesv2_client()
    try:
        answer = client.create_email_identity(EmailIdentity=value)
    except ClientError as error:
        if _code(error) != "AlreadyExistsException":
            raise SenderRefused(f"SES refused {value}: {_words(error)}") from None
        answer = {}  # made earlier (by hand, or before a removal failed half-way): adopt it
    except BotoCoreError as error:
        raise SenderRefused(f"SES could not be reached ({error}); nothing was added. Try again in a minute.") from None
    identity = SenderIdentity(
        organisation=organisation,
        kind=kind,
        value=value,
        dkim_tokens=list((answer.get("DkimAttributes") or {}).get("Tokens") or []),
        dkim_status=(answer.get("DkimAttributes") or {}).get("Status", ""),
        status=Status.VERIFIED if answer.get("VerifiedForSendingStatus") else Status.PENDING,
        mail_from_domain=mail_from,
        created_by=request.user if request is not None and request.user.is_authenticated else None,
    )
    mail_from_problem = _put_mail_from(client, identity) if mail_from else ""
    try:
        with transaction.atomic():
            identity.save()
            kind_words = "sender domain" if kind == Kind.DOMAIN else "sender address"
            audit.record(
                request,
                audit.Action.ORGANISATION,
                f"Added the {kind_words} {value}" + (f" (MAIL FROM {mail_from})" if mail_from else ""),
                organisation=organisation,
                object_type="sender_identity",
                object_id=identity.pk,
            )
    except IntegrityError:  # another request added the same name a moment ago
        raise SenderRefused(f"{value} was added by someone else a moment ago.") from None
    sender_check(identity=identity, client=client)
    if mail_from_problem:  # shown on the page until the next check
        identity.last_error = mail_from_problem
        identity.save(update_fields=["last_error"])
    return identity


def _put_mail_from(client, identity: SenderIdentity) -> str:
    """Ask SES to use the custom MAIL FROM domain; a refusal leaves the identity without one and
    returns why (the domain itself is added all the same: DKIM is what matters most)."""
    try:
        client.put_email_identity_mail_from_attributes(
            EmailIdentity=identity.value,
            MailFromDomain=identity.mail_from_domain,
            BehaviorOnMxFailure="USE_DEFAULT_VALUE",  # never stop sending over a missing MX record
        )
    except (ClientError, BotoCoreError) as error:
        problem = f"SES did not set the MAIL FROM domain {identity.mail_from_domain}: {_words(error)}"[:300]
        identity.mail_from_domain = ""
        return problem
    identity.mail_from_status = "pending"
    return ""


def sender_check(*, identity: SenderIdentity, client=None) -> SenderIdentity:
    """Ask SES (``GetEmailIdentity``) and store what it says; a failed call is recorded, not raised."""
    client = client or sesv2_client()
    fields = ["status", "dkim_status", "dkim_tokens", "mail_from_status", "last_checked_at", "last_error"]
    identity.last_checked_at = timezone.now()
    try:
        answer = client.get_email_identity(EmailIdentity=identity.value)
    except (ClientError, BotoCoreError) as error:
        if isinstance(error, ClientError) and _code(error) == "NotFoundException":
            identity.status, identity.last_error = (
                Status.FAILED,
                "SES no longer has this identity: remove it and add it again.",
            )
        else:
            identity.last_error = f"SES could not be asked: {_words(error)}"[:300]
        identity.save(update_fields=fields)
        return identity
    dkim = answer.get("DkimAttributes") or {}
    if answer.get("VerifiedForSendingStatus"):
        identity.status = Status.VERIFIED
    else:
        identity.status = _SES_STATUS.get(answer.get("VerificationStatus", ""), Status.PENDING)
    identity.dkim_status = dkim.get("Status", "")
    identity.dkim_tokens = list(dkim.get("Tokens") or identity.dkim_tokens)
    mail_from = answer.get("MailFromAttributes") or {}
    if identity.mail_from_domain and mail_from.get("MailFromDomain") == identity.mail_from_domain:
        identity.mail_from_status = (mail_from.get("MailFromDomainStatus") or "pending").lower()
    identity.last_error = ""
    identity.save(update_fields=fields)
    return identity


def sender_remove(*, identity: SenderIdentity, request: HttpRequest | None = None) -> None:
    """Delete the identity in SES (``DeleteEmailIdentity``) and here. Campaigns still set to send from
    it are refused at send time with the reason."""
    try:
        sesv2_client().delete_email_identity(EmailIdentity=identity.value)
    except ClientError as error:
        if _code(error) != "NotFoundException":  # already gone from SES: remove it here too
            raise SenderRefused(f"SES did not remove {identity.value}: {_words(error)}. Nothing changed.") from None
    except BotoCoreError as error:
        raise SenderRefused(f"SES could not be reached ({error}); nothing changed. Try again in a minute.") from None
    with transaction.atomic():
        audit.record(
            request,
            audit.Action.DELETE,
            f"Removed the sender {identity.get_kind_display().lower()} {identity.value}",
            organisation=identity.organisation,
            object_type="sender_identity",
            object_id=identity.pk,
        )
        identity.delete()


def identities_check_due() -> int:
    """The schedule's task: ask SES about the identities whose check is due; returns how many."""
    checked = 0
    client = None
    for identity in due_for_check()[:CHECKS_PER_RUN]:
        client = client or sesv2_client()
        before = identity.status
        sender_check(identity=identity, client=client)
        if identity.status != before:
            logger.info("Sender %s is now %s", identity.value, identity.status, extra={"sender_identity": identity.pk})
        checked += 1
    return checked


def _code(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Code", "")


def _words(error: Exception) -> str:
    if isinstance(error, ClientError):
        message = error.response.get("Error", {}).get("Message") or _code(error)
        return message.strip().rstrip(".") if "<html" not in message.lower() else _code(error) or "an error"
    return str(error)
