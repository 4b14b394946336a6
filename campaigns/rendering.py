"""Per-recipient rendering of campaign content, with templates compiled once per campaign.

Staff-written content is a Django template run in a sandbox: its own ``Engine`` with no loaders
(no ``{% include %}`` / ``{% extends %}`` of files), no tag libraries to ``{% load %}``, and a
context of plain strings and dicts only, so it cannot reach settings, models or Python attributes.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings
from django.template import Context, Engine, Template, TemplateSyntaxError
from django.urls import reverse

from campaigns.models import Campaign, Recipient
from campaigns.tokens import recipient_token

MERGE_FIELDS = (
    "first_name",
    "last_name",
    "full_name",
    "email",
    "attributes",
    "unsubscribe_url",
    "preferences_url",
    "view_online_url",
)


class TemplateProblem(ValueError):
    """Content that will not render; the message says where."""


@lru_cache(maxsize=1)
def sandbox_engine() -> Engine:
    return Engine(
        dirs=[],
        app_dirs=False,
        libraries={},
        builtins=["django.template.defaulttags", "django.template.defaultfilters"],
        string_if_invalid="",
        autoescape=True,
        debug=False,
    )


# Tags that could read files or pull in other templates are refused outright.
FORBIDDEN_TAGS = re.compile(r"{%\s*(load|include|extends|debug|ssi|csrf_token)\b")


def compile_template(source: str, *, part: str) -> Template:
    found = FORBIDDEN_TAGS.search(source)
    if found:
        raise TemplateProblem(f"{part}: the tag '{found.group(1)}' is not allowed in campaign content.")
    try:
        return sandbox_engine().from_string(source)
    except TemplateSyntaxError as error:
        raise TemplateProblem(f"{part}: {error}") from None


@dataclass(frozen=True)
class CompiledCampaign:
    campaign_id: int
    subject: Template
    html: Template
    text: Template | None


def compile_campaign(campaign: Campaign) -> CompiledCampaign:
    return CompiledCampaign(
        campaign_id=campaign.pk,
        subject=compile_template(campaign.subject, part="Subject"),
        html=compile_template(campaign.html_body, part="HTML body"),
        text=compile_template(campaign.text_body, part="Plain-text body") if campaign.text_body.strip() else None,
    )


def recipient_context(recipient: Recipient) -> dict:
    contact = recipient.contact
    token = recipient_token(recipient.pk)
    first = contact.first_name if contact else ""
    last = contact.last_name if contact else ""
    return {
        "first_name": first,
        "last_name": last,
        "full_name": " ".join(part for part in (first, last) if part),
        "email": recipient.email,
        "attributes": dict(contact.attributes) if contact and isinstance(contact.attributes, dict) else {},
        "unsubscribe_url": settings.SITE_URL + reverse("campaigns:unsubscribe", args=[token]),
        "preferences_url": settings.SITE_URL + reverse("campaigns:preferences", args=[token]),
        "view_online_url": settings.SITE_URL + reverse("campaigns:view_online", args=[token]),
    }


@dataclass(frozen=True)
class RenderedMessage:
    subject: str
    html: str
    text: str


def render_for(compiled: CompiledCampaign, context: dict) -> RenderedMessage:
    template_context = Context(context, autoescape=True)
    html_body = compiled.html.render(template_context)
    # Subject and plain text are not HTML: render them without escaping.
    plain_context = Context(context, autoescape=False)
    subject = " ".join(compiled.subject.render(plain_context).split())
    text = compiled.text.render(plain_context) if compiled.text else html_to_text(html_body)
    return RenderedMessage(subject=subject, html=html_body, text=text)


_BLOCK_END = re.compile(r"</(p|div|h[1-6]|li|tr|table|blockquote)>|<br\s*/?>", re.IGNORECASE)
_LINK = re.compile(r"<a\s[^>]*href=[\"']([^\"']+)[\"'][^>]*>(.*?)</a>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]+>")
_HIDDEN = re.compile(r"<(style|script|head)\b.*?</\1>", re.IGNORECASE | re.DOTALL)


def html_to_text(markup: str) -> str:
    """A readable plain-text part: links as "text (url)", blocks as lines, no tags."""
    text = _HIDDEN.sub("", markup)
    text = _LINK.sub(lambda m: f"{_TAG.sub('', m.group(2)).strip()} ({m.group(1)})", text)
    text = _BLOCK_END.sub("\n", text)
    text = html.unescape(_TAG.sub("", text))
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"
