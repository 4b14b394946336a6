"""What bounces, complaints and unsubscribes do to addresses, contacts, lists and the suppression list.

- Permanent bounce: the address is suppressed (``hard_bounce``) and its contact marked bounced
  (a complained contact stays complained).
- Transient or undetermined bounce: the address's consecutive soft-bounce count goes up once per
  message (across campaigns; a delivery resets it); at ``SOFT_BOUNCE_LIMIT`` it is suppressed.
- Complaint: suppressed, contact marked complained, unsubscribed from every list.
- SES Subscription event: ``unsubscribeAll`` unsubscribes the contact from every list and
  suppresses the address; a topic opt-out unsubscribes from the list named like the topic.

Organisations: suppression and the bounced/complained status are about the address and stay
installation-wide (every organisation's contact of it); the suppression records whose campaign
caused it. Unsubscribing (leaving lists) acts on the contact of the organisation whose campaign
the event is about; only an event that matched no campaign acts on every organisation's contact.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from django.conf import settings

from audiences.models import AddressHealth, Contact, Suppression
from audiences.services import (
    address_suppress,
    contact_status_mark,
    lists_leave,
    soft_bounce_count,
    soft_bounce_streak_end,
)
from campaigns.models import Campaign
from tracking.models import Event
from tracking.parsing import ParsedEvent

# Tables in the order every batch locks them, address by address (see policies_apply).
HEALTH, SUPPRESSION, CONTACT, SUBSCRIPTIONS = range(4)
ACTIVE, UNSUBSCRIBED, BOUNCED = Contact.Status.ACTIVE, Contact.Status.UNSUBSCRIBED, Contact.Status.BOUNCED
NOT_COMPLAINED = [ACTIVE, UNSUBSCRIBED, BOUNCED]


def policies_apply(fresh: list[tuple[Event, ParsedEvent]]) -> None:
    """What bounces, complaints and unsubscribes do to addresses, contacts, lists and the suppression list.

    The steps of the whole batch run table by table (soft-bounce streaks, suppression list,
    contacts, subscriptions) and, within a table, in address order: two webhook processes
    whose batches hold the same addresses (SES's two notifications of one bounce) then take
    their row locks in the same order and wait for each other instead of deadlocking.
    Every step is idempotent or conditional, so a second notification of the same bounce,
    complaint or unsubscribe changes nothing.
    """
    steps: list[tuple[int, str, int, Callable[[], object]]] = []

    def step(table: int, address: str, action: Callable[[], object]) -> None:
        steps.append((table, address, len(steps), action))

    delivered = {a for e, p in fresh if e.event_type == Event.Type.DELIVERY for a in p.addresses}
    if delivered:
        # A delivery ends the address's soft-bounce streak, before this batch's bounces count.
        streaks = AddressHealth.objects.filter(email__in=delivered, consecutive_soft_bounces__gt=0)
        for address in streaks.values_list("email", flat=True):
            step(HEALTH, address, partial(soft_bounce_streak_end, email=address))
    # Whose campaign each event is about (one query, only for the kinds that change addresses).
    campaign_ids = {e.campaign_id for e, _ in fresh if e.campaign_id and e.event_type in POLICY_TYPES}
    organisations = dict(Campaign.objects.filter(pk__in=campaign_ids).values_list("pk", "organisation_id"))
    for event, parsed in fresh:
        organisation_id = organisations.get(event.campaign_id)
        for address in parsed.addresses:
            for table, action in _policy_steps(event, parsed, address, organisation_id):
                step(table, address, action)
    for _, _, _, action in sorted(steps, key=lambda item: item[:3]):
        action()


POLICY_TYPES = {Event.Type.BOUNCE, Event.Type.COMPLAINT, Event.Type.SUBSCRIPTION}


def _policy_steps(
    event: Event, parsed: ParsedEvent, address: str, organisation_id: int | None
) -> list[tuple[int, Callable[[], object]]]:
    kind = event.event_type
    # Installation-wide: the suppression (recording whose campaign caused it), the contact status.
    suppress = partial(address_suppress, email=address, organisation=organisation_id)
    everywhere = partial(contact_status_mark, organisation=None, email=address)
    if kind == Event.Type.BOUNCE and event.bounce_type == "Permanent":
        return [
            (SUPPRESSION, partial(suppress, reason=Suppression.Reason.HARD_BOUNCE)),
            # A complained contact stays complained.
            (CONTACT, partial(everywhere, status=BOUNCED, from_statuses=NOT_COMPLAINED)),
        ]
    if kind == Event.Type.BOUNCE:
        counted: dict[str, int] = {}
        return [
            (HEALTH, partial(_soft_bounce_count, address, event.ses_message_id, counted)),
            (SUPPRESSION, partial(_soft_bounce_limit, address, counted, organisation_id)),
        ]
    if kind == Event.Type.COMPLAINT:
        return [
            (SUPPRESSION, partial(suppress, reason=Suppression.Reason.COMPLAINT)),
            (CONTACT, partial(everywhere, status=Contact.Status.COMPLAINED)),
            # The lists of the organisation whose mail was marked as spam; the suppression covers the rest.
            (SUBSCRIPTIONS, partial(lists_leave, organisation=organisation_id, email=address, list_names=None)),
        ]
    if kind == Event.Type.SUBSCRIPTION:
        return _subscription_steps(parsed, address, organisation_id)
    return []


def _soft_bounce_count(address: str, ses_message_id: str, counted: dict[str, int]) -> None:
    streak = soft_bounce_count(email=address, ses_message_id=ses_message_id)
    if streak is not None:
        counted["streak"] = streak


def _soft_bounce_limit(address: str, counted: dict[str, int], organisation_id: int | None) -> None:
    streak = counted.get("streak", 0)
    if streak >= settings.SOFT_BOUNCE_LIMIT:
        address_suppress(
            email=address,
            reason=Suppression.Reason.SOFT_BOUNCES,
            note=f"{streak} consecutive soft bounces",
            organisation=organisation_id,
        )


def _subscription_steps(
    parsed: ParsedEvent, address: str, organisation_id: int | None
) -> list[tuple[int, Callable[[], object]]]:
    """Honour an unsubscribe made through SES subscription management: ``unsubscribeAll`` leaves
    every list and suppresses the address; a topic opt-out leaves the list named like the topic."""
    preferences = parsed.detail.get("newTopicPreferences") or {}
    if not isinstance(preferences, dict):
        return []
    if preferences.get("unsubscribeAll") is True:
        note = "Unsubscribed through SES subscription management"
        # audiences.services.contacts_unsubscribe_everywhere in two steps: the contact in the
        # contacts' turn, its lists in the subscriptions', keeping the batch's table lock order.
        mine = {"organisation": organisation_id, "email": address}
        return [
            (
                SUPPRESSION,
                partial(
                    address_suppress,
                    email=address,
                    reason=Suppression.Reason.UNSUBSCRIBED,
                    note=note,
                    organisation=organisation_id,
                ),
            ),
            (CONTACT, partial(contact_status_mark, **mine, status=UNSUBSCRIBED, from_statuses=[ACTIVE])),
            (SUBSCRIPTIONS, partial(lists_leave, **mine, list_names=None)),
        ]
    topics = preferences.get("topicSubscriptionStatus")
    opted_out = [
        str(topic.get("topicName"))
        for topic in (topics if isinstance(topics, list) else [])
        if isinstance(topic, dict) and topic.get("subscriptionStatus") == "OptOut"
    ]
    leave = partial(lists_leave, organisation=organisation_id, email=address, list_names=opted_out)
    return [(SUBSCRIPTIONS, leave)] if opted_out else []
