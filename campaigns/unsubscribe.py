"""Unsubscribe and preferences: the recipient's own choices, reached through signed links.

Also what those pages look like: the campaign's layout (logo, colours, sender name) and the
web copy ("view online") made into a proper page.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audiences.models import Contact, Subscription, Suppression
from audiences.services import address_suppress, contacts_unsubscribe_everywhere, preferences_save
from campaigns.composer.layouts import default_layout_of
from campaigns.models import Campaign, Layout, Recipient
from campaigns.tokens import LinkExpired, LinkPurpose, link_token, link_token_read
from common.colours import WCAG_AA, contrast_ratio, readable_on
from stats.counters import unsubscribe_recorded


@dataclass(frozen=True)
class RecipientLink:
    """What a public link opens: a recipient, or why not (``problem``: "invalid" or "expired")."""

    recipient: Recipient | None
    problem: str = ""
    legacy: bool = False  # a token of the old single-token scheme (campaigns/tokens.py)


def recipient_for_link(token: str, *, purpose: LinkPurpose) -> RecipientLink:
    """The recipient a ``purpose`` link was made for; a token of another purpose opens nothing."""
    try:
        read = link_token_read(token, purpose=purpose)
    except LinkExpired:
        return RecipientLink(None, problem="expired")
    if read is None:
        return RecipientLink(None, problem="invalid")
    recipient = Recipient.objects.select_related("contact", "campaign").filter(pk=read.recipient_id).first()
    if recipient is None:
        return RecipientLink(None, problem="invalid")
    if read.legacy and purpose is LinkPurpose.UNSUBSCRIBE and _legacy_unsubscribe_expired(recipient):
        return RecipientLink(None, problem="expired")
    return RecipientLink(recipient, legacy=read.legacy)


def _legacy_unsubscribe_expired(recipient: Recipient) -> bool:
    # Old tokens carry no date: the recipient's sending time stands in for it, so they expire as new ones do.
    limit = timezone.now() - timedelta(days=settings.UNSUBSCRIBE_TOKEN_DAYS)
    return recipient.sent_at is not None and recipient.sent_at < limit


def preferences_token_for(recipient: Recipient) -> str:
    """A fresh preference-page token, for the unsubscribe pages' "choose your lists" link."""
    return link_token(recipient_id=recipient.pk, purpose=LinkPurpose.PREFERENCES)


def masked_email(address: str) -> str:
    """``j•••@example.org``: enough to recognise one's own address, not to learn someone else's."""
    local, at, domain = address.rpartition("@")
    if not at:
        return "•••"
    return f"{local[:1]}•••@{domain}"


def _organisation_contact(recipient: Recipient) -> Contact | None:
    """The contact with the recipient's address in the organisation that sent the campaign.

    The same address may be a contact of several organisations, each with its own lists and
    consent: a link in one club's email never reaches another club's contact.
    """
    return Contact.objects.filter(email=recipient.email, organisation_id=recipient.campaign.organisation_id).first()


def unsubscribe_recipient(*, recipient: Recipient) -> bool:
    """Unsubscribe the contact from every list at once. Returns False if it already was."""
    # The contact may have been deleted (and perhaps re-imported) since the email was sent.
    contact = recipient.contact or _organisation_contact(recipient)
    now = timezone.now()
    with transaction.atomic():
        if contact is None:
            # Nobody to mark: suppress the address, so that a later import cannot mail it again.
            _, created = address_suppress(
                email=recipient.email,
                reason=Suppression.Reason.UNSUBSCRIBED,
                note="unsubscribe link, contact deleted",
                organisation=recipient.campaign.organisation_id,
            )
            return created
        # Only this organisation's contact and lists: the same address's contacts in other
        # organisations keep their own consent.
        changed = contacts_unsubscribe_everywhere(organisation=contact.organisation_id, contact_ids=[contact.pk])
        if changed:
            # Counted once per recipient (their marker also lists them in the campaign report), however
            # often they resubscribe and leave again.
            unsubscribe_recorded(recipient_id=recipient.pk, campaign_id=recipient.campaign_id, occurred_at=now)
    return bool(changed)


# --- coming back: the state an unsubscribe link finds, and resubscribing -----------------------

# Why an address gets nothing whatever its owner chooses here, in the owner's words.
_SUPPRESSION_EXPLAINED = {
    Suppression.Reason.HARD_BOUNCE: "Our emails to this address could not be delivered, so we stopped sending to it.",
    Suppression.Reason.SOFT_BOUNCES: "Our emails to this address kept coming back, so we stopped sending to it.",
    Suppression.Reason.COMPLAINT: "One of our emails to this address was marked as spam, so we stopped sending to it.",
    Suppression.Reason.MANUAL: "This address is on our do-not-send list.",
    Suppression.Reason.IMPORTED: "This address is on our do-not-send list.",
    Suppression.Reason.UNSUBSCRIBED: "This address asked to get nothing more from us.",
}
_CONTACT_EXPLAINED = {
    Contact.Status.BOUNCED: _SUPPRESSION_EXPLAINED[Suppression.Reason.HARD_BOUNCE],
    Contact.Status.COMPLAINED: _SUPPRESSION_EXPLAINED[Suppression.Reason.COMPLAINT],
}


@dataclass(frozen=True)
class SubscriptionState:
    """What an unsubscribe link finds. ``blocked``: why nothing can be sent, whatever is chosen here."""

    unsubscribed: bool
    can_resubscribe: bool
    blocked: str = ""


def subscription_state(recipient: Recipient) -> SubscriptionState:
    """Whether the recipient's address still gets campaigns, and whether it may ask for them again.

    Resubscribing only undoes an unsubscribe: a suppression (bounce, complaint, staff, the email
    provider) or a bounced/complained contact stays as it is, and the page says why instead.
    """
    # Read afresh: the page asks right after unsubscribing, which updates the row, not ``recipient.contact``.
    contacts = Contact.objects.filter(pk=recipient.contact_id) if recipient.contact_id else Contact.objects.none()
    contact = contacts.first() or _organisation_contact(recipient)
    suppression = Suppression.objects.filter(email=recipient.email).first()
    blocked = ""
    if suppression is not None:
        blocked = _SUPPRESSION_EXPLAINED.get(suppression.reason, _SUPPRESSION_EXPLAINED[Suppression.Reason.MANUAL])
    elif contact is not None:
        blocked = _CONTACT_EXPLAINED.get(contact.status, "")
    if contact is None:
        return SubscriptionState(unsubscribed=suppression is not None, can_resubscribe=False, blocked=blocked)
    unsubscribed = contact.status != Contact.Status.ACTIVE or suppression is not None
    can_resubscribe = contact.status == Contact.Status.UNSUBSCRIBED and not blocked
    return SubscriptionState(unsubscribed=unsubscribed, can_resubscribe=can_resubscribe, blocked=blocked)


def resubscribe_recipient(*, recipient: Recipient) -> list[str]:
    """Undo an unsubscribe: back on the campaign's lists (all the contact's lists if it went to a
    segment). Returns the names of the lists now subscribed; [] when resubscribing is not open to
    this address (see ``subscription_state``). Goes through ``preferences_save``, the one door for
    a recipient's own list choices, which leaves bounced and complained contacts as they are.
    """
    contact = Contact.objects.filter(pk=recipient.contact_id).first() if recipient.contact_id else None
    if contact is None or not subscription_state(recipient).can_resubscribe:
        return []
    subscriptions = Subscription.objects.filter(contact=contact)
    on_lists = set(subscriptions.values_list("contact_list_id", flat=True))
    campaign_lists = on_lists & set(recipient.campaign.include_lists.values_list("pk", flat=True))
    still_subscribed = set(
        subscriptions.filter(status=Subscription.Status.SUBSCRIBED).values_list("contact_list_id", flat=True)
    )
    chosen = still_subscribed | (campaign_lists or on_lists)
    if not chosen:
        return []
    preferences_save(contact=contact, list_ids=chosen)
    return list(
        subscriptions.filter(status=Subscription.Status.SUBSCRIBED)
        .order_by("contact_list__name")
        .values_list("contact_list__name", flat=True)
    )


# --- the look of the recipient pages: the campaign's layout ------------------------------------

HEX_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")
_WHITE, _DARK = "#ffffff", "#1a1a1a"


@dataclass(frozen=True)
class PageColours:
    """A layout's colours for a web page: checked ``#rrggbb``, each pair readable at WCAG AA."""

    primary: str  # the header band and buttons
    on_primary: str  # text on ``primary``
    background: str
    text: str  # on the white card
    link: str  # on the white card

    def stylesheet(self) -> str:
        return (
            f".public-page.is-branded {{ --brand-primary: {self.primary}; --brand-on-primary: {self.on_primary}; "
            f"--brand-background: {self.background}; --brand-text: {self.text}; --brand-link: {self.link}; }}\n"
        )


@dataclass(frozen=True)
class PageBranding:
    """What a recipient page shows of the campaign: its sender, the layout's logo and colours."""

    sender: str
    logo_url: str
    layout: Layout | None  # its colours come as a style sheet (campaigns:layout_colours)


def page_branding(campaign: Campaign) -> PageBranding:
    """The campaign's layout, or the default layout for a campaign without one."""
    layout = campaign.layout if campaign.layout_id else default_layout_of(campaign.organisation_id)
    logo_url = layout.logo_url if layout and layout.logo_url.startswith("https://") else ""  # img-src: https: only
    return PageBranding(sender=sender_name(campaign.from_email), logo_url=logo_url, layout=layout)


def layout_page_colours(layout: Layout) -> PageColours:
    """The layout's colours, made readable on a page.

    Staff pick layout colours for email; a light primary colour under white text, or pale grey
    text, would be unreadable, so dark text goes on light colours and a colour that reads with
    neither is darkened until white text reads on it.
    """
    primary = _colour(layout.primary_colour, "#1f4e8c")
    white_contrast, dark_contrast = contrast_ratio(primary, _WHITE), contrast_ratio(primary, _DARK)
    if dark_contrast >= WCAG_AA and dark_contrast > white_contrast:
        on_primary = _DARK
    else:
        primary, on_primary = readable_on(_WHITE, primary), _WHITE
    return PageColours(
        primary=primary,
        on_primary=on_primary,
        background=_colour(layout.background_colour, "#f4f5f7"),
        text=readable_on(_WHITE, _colour(layout.text_colour, "#222222")),
        link=readable_on(_WHITE, primary),
    )


def sender_name(from_email: str) -> str:
    """``"Riverside Rowing" <news@club.org>`` → ``Riverside Rowing``; a bare address stays as it is."""
    name = from_email.rpartition("<")[0].strip().strip('"').strip()
    return name or from_email.strip()


def _colour(value: str, fallback: str) -> str:
    # Checked again here: the value goes into a style sheet, so nothing but #rrggbb passes.
    return value.lower() if HEX_COLOUR.fullmatch(value or "") else fallback


def web_copy_page(document: str, *, title: str) -> str:
    """The rendered email as a web page: a document with a language and a title (the subject).

    Email layouts often leave ``<title>`` empty, and a campaign without a layout is a bare
    fragment; browsers, screen readers and bookmarks need both.
    """
    escaped_title = html.escape(title)
    if not re.search(r"<html[\s>]", document, re.I):
        return (
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{escaped_title}</title>\n</head>\n<body>\n{document}\n</body>\n</html>\n"
        )
    if not re.search(r"<html\b[^>]*\blang\s*=", document, re.I):
        document = re.sub(r"<html\b", '<html lang="en"', document, count=1, flags=re.I)
    if re.search(r"<title\b[^>]*>\s*</title>", document, re.I):
        return re.sub(
            r"<title\b[^>]*>\s*</title>", lambda _: f"<title>{escaped_title}</title>", document, count=1, flags=re.I
        )
    if not re.search(r"<title\b", document, re.I):
        if re.search(r"<head\b[^>]*>", document, re.I):
            return re.sub(
                r"<head\b[^>]*>", lambda m: f"{m.group(0)}<title>{escaped_title}</title>", document, count=1, flags=re.I
            )
        return re.sub(
            r"<html\b[^>]*>",
            lambda m: f"{m.group(0)}<head><title>{escaped_title}</title></head>",
            document,
            count=1,
            flags=re.I,
        )
    return document
