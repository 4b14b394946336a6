"""The one builder of outgoing messages: campaign messages and test sends alike.

What every message of a campaign shares (From and Reply-To headers, attachment parts, the MIME
boundary) is built once per campaign (``prepare_campaign``); per message only the rendered parts
and a few headers are added, as raw bytes shaped like the ``EmailMessage`` django-ses reads.
"""

from __future__ import annotations

import binascii
import uuid
from dataclasses import dataclass, field
from email import policy as email_policy
from email.header import Header
from email.message import EmailMessage as MIMEPart
from email.utils import formataddr, parseaddr

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from post_office.models import EmailTemplate

from campaigns.composer.rendering import (
    CompiledCampaign,
    RenderedMessage,
    campaign_html_source,
    compile_campaign,
    render_for,
)
from campaigns.models import Campaign, Recipient, SesTenant


def campaign_tags(campaign_id: int, recipient_id: int) -> str:
    """The SES message tags that tie a message's events to its recipient (and the figures)."""
    return f"campaign={campaign_id}, recipient={recipient_id}"


def _headers(*, tags: str, unsubscribe_url: str, one_click: bool) -> dict[str, str]:
    headers = {"X-SES-MESSAGE-TAGS": tags, "List-Unsubscribe": f"<{unsubscribe_url}>"}
    if one_click:
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    if settings.AWS_SES_CONFIGURATION_SET:
        headers["X-SES-CONFIGURATION-SET"] = settings.AWS_SES_CONFIGURATION_SET
    return headers


def _ses_headers(campaign: Campaign, recipient: Recipient, context: dict) -> dict[str, str]:
    """The headers of a recipient's message, for post_office's own sending path (bench baseline)."""
    tags = campaign_tags(campaign.pk, recipient.pk)
    return _headers(tags=tags, unsubscribe_url=context["unsubscribe_url"], one_click=True)


def build_message(
    campaign: Campaign, rendered: RenderedMessage, *, to: str, subject: str, headers: dict[str, str]
) -> EmailMultiAlternatives:
    """The general path through Django's ``EmailMessage`` (for addresses the raw path cannot write)."""
    message = EmailMultiAlternatives(
        subject=subject,
        body=rendered.text,
        from_email=campaign.from_email,
        to=[to],
        reply_to=[campaign.reply_to] if campaign.reply_to else None,
        headers=headers,
    )
    message.attach_alternative(rendered.html, "text/html")
    for filename, content, mimetype in rendered.attachments:
        message.attach(filename, content, mimetype)
    return message


class PreparedMessage:
    """Raw MIME already built, shaped like the ``EmailMessage`` that django-ses's backend reads.

    The backend only calls ``recipients()`` and ``message().as_bytes()`` and writes the SES
    message id into ``extra_headers``; building the bytes ourselves skips the ``email`` package's
    header parsing and generator, the largest per-message costs in the profile.
    """

    def __init__(
        self, *, from_email: str, to: str, raw: bytes, configuration_set: str | None, tenant: str = ""
    ) -> None:
        self.from_email = from_email
        self.ses_tenant = tenant  # SES_TENANTS: the SendEmail call names it (ses.TenantNameBackend)
        self.to = [to]
        self.cc: list[str] = []
        self.bcc: list[str] = []
        self.raw = raw
        self.extra_headers: dict = {}
        if configuration_set:  # already in ``raw``; tells django-ses not to add it again
            self.extra_headers["X-SES-CONFIGURATION-SET"] = configuration_set

    def recipients(self) -> list[str]:
        return self.to

    def message(self) -> PreparedMessage:
        return self

    def as_bytes(self, *args, **kwargs) -> bytes:
        return self.raw

    def as_string(self, *args, **kwargs) -> str:
        return self.raw.decode("utf-8", "surrogateescape")


@dataclass
class CampaignMessage:
    """Everything about a campaign's messages that does not depend on the recipient."""

    campaign: Campaign
    compiled: CompiledCampaign
    head: bytes  # From, Reply-To, MIME-Version, configuration set
    boundary: str
    attachment_parts: list[bytes] = field(default_factory=list)
    tenant_name: str = ""  # the organisation's SES tenant (SES_TENANTS=1), named on every send

    def build(self, recipient: Recipient, context: dict, date: str) -> PreparedMessage | EmailMultiAlternatives:
        """A recipient's message: tagged for the campaign's figures, with one-click unsubscribe."""
        return self.assemble(
            render_for(self.compiled, context),
            to=recipient.email,
            date=date,
            tags=campaign_tags(self.campaign.pk, recipient.pk),
            unsubscribe_url=context["unsubscribe_url"],
        )

    def assemble(
        self,
        rendered: RenderedMessage,
        *,
        to: str,
        date: str,
        tags: str,
        unsubscribe_url: str,
        subject_prefix: str = "",
        one_click: bool = True,
    ) -> PreparedMessage | EmailMultiAlternatives:
        """The message of ``rendered`` to ``to`` (an address the raw path cannot write takes Django's)."""
        subject = subject_prefix + rendered.subject
        if not to.isascii() or "\n" in to or "\r" in to:
            headers = _headers(tags=tags, unsubscribe_url=unsubscribe_url, one_click=one_click)
            message = build_message(self.campaign, rendered, to=to, subject=subject, headers=headers)
            message.ses_tenant = self.tenant_name  # read by ses.TenantNameBackend, never sent as a header
            return message
        headers = [
            self.head,
            b"To: ",
            to.encode(),
            b"\r\nSubject: ",
            _header_value(subject),
            b"\r\nDate: ",
            date.encode(),
            b"\r\nX-SES-MESSAGE-TAGS: ",
            tags.encode(),
            b"\r\nList-Unsubscribe: <",
            unsubscribe_url.encode(),
            b">\r\n",
        ]
        if one_click:
            headers.append(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")
        return PreparedMessage(
            from_email=self.campaign.from_email,
            to=to,
            raw=b"".join(headers + self._body(rendered)),
            configuration_set=settings.AWS_SES_CONFIGURATION_SET,
            tenant=self.tenant_name,
        )

    def _body(self, rendered: RenderedMessage) -> list[bytes]:
        boundary = self.boundary.encode()
        alternative = (
            b"--" + boundary + b"\r\n" + _text_part("plain", rendered.text)
            + b"--" + boundary + b"\r\n" + _text_part("html", rendered.html)
            + b"--" + boundary + b"--\r\n"
        )  # fmt: skip
        if not self.attachment_parts:
            return [b'Content-Type: multipart/alternative; boundary="', boundary, b'"\r\n\r\n', alternative]
        mixed = b"mixed-" + boundary
        body = [b'Content-Type: multipart/mixed; boundary="', mixed, b'"\r\n\r\n--', mixed, b"\r\n"]
        body += [b'Content-Type: multipart/alternative; boundary="', boundary, b'"\r\n\r\n', alternative]
        for part in self.attachment_parts:
            body += [b"--", mixed, b"\r\n", part]
        body += [b"--", mixed, b"--\r\n"]
        return body


def _header_value(value: str) -> bytes:
    if value.isascii() and len(value) < 900 and "\n" not in value and "\r" not in value:
        return value.encode()
    return Header(value, "utf-8", header_name="Subject").encode(linesep="\r\n").encode()


def _address_header(value: str) -> str:
    name, address = parseaddr(value)
    return formataddr((name, address), charset="utf-8")


def _text_part(subtype: str, text: str) -> bytes:
    # Quoted-printable never contains "=_", so the boundary can never occur in a body.
    data = binascii.b2a_qp(text.replace("\r\n", "\n").encode("utf-8"), istext=True)
    return (
        b"Content-Type: text/" + subtype.encode() + b'; charset="utf-8"\r\n'
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + data.replace(b"\n", b"\r\n") + b"\r\n"
    )


def _attachment_part(filename: str, content: bytes | str, mimetype: str) -> bytes:
    part = MIMEPart(policy=email_policy.SMTP)
    maintype, _, subtype = (mimetype or "application/octet-stream").partition("/")
    if isinstance(content, str):
        content = content.encode("utf-8")
    part.set_content(content, maintype=maintype, subtype=subtype or "octet-stream", filename=filename)
    return part.as_bytes(policy=email_policy.SMTP)


def prepare_campaign(campaign: Campaign, compiled: CompiledCampaign | None = None) -> CampaignMessage:
    """Build once per campaign (per dispatch task or test send) what every message shares."""
    compiled = compiled or compile_campaign(campaign)
    head = [f"From: {_address_header(campaign.from_email)}"]
    if campaign.reply_to:
        head.append(f"Reply-To: {_address_header(campaign.reply_to)}")
    head.append("MIME-Version: 1.0")
    if settings.AWS_SES_CONFIGURATION_SET:
        head.append(f"X-SES-CONFIGURATION-SET: {settings.AWS_SES_CONFIGURATION_SET}")
    return CampaignMessage(
        campaign=campaign,
        compiled=compiled,
        head=("\r\n".join(head) + "\r\n").encode("utf-8"),
        boundary=f"=_cobalt_{campaign.pk}_{uuid.uuid4().hex}",
        attachment_parts=[_attachment_part(*attachment) for attachment in compiled.attachments],
        tenant_name=_tenant_name(campaign.organisation_id),
    )


def _tenant_name(organisation_id: int) -> str:
    """The organisation's SES tenant, once per campaign (no query while SES_TENANTS is off). An
    organisation whose tenant is not made yet sends under the account, as without tenants."""
    if not settings.SES_TENANTS:
        return ""
    return SesTenant.objects.filter(organisation_id=organisation_id).values_list("tenant_name", flat=True).first() or ""


def campaign_outbox_template(campaign: Campaign) -> EmailTemplate:
    """The post_office template every message of the campaign is rendered from (made once)."""
    if campaign.email_template_id:
        return campaign.email_template
    with transaction.atomic():
        locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if locked.email_template_id is None:  # two dispatchers starting together make one
            locked.email_template = EmailTemplate.objects.create(
                name=f"campaign-{campaign.pk}",
                description=f"Content of campaign {campaign.pk}: {campaign.name}"[:255],
                subject=campaign.subject,
                html_content=campaign_html_source(campaign),  # layout included: what was sent
                content=campaign.text_body,
            )
            Campaign.objects.filter(pk=campaign.pk).update(email_template=locked.email_template)
    campaign.email_template = locked.email_template
    return campaign.email_template
