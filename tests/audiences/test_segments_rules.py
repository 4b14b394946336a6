"""Segment rules against a known data set, and the snapshot's exclusions."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from audiences.models import Contact, Subscription, Suppression
from audiences.segments import RuleError, rules_filter
from campaigns.snapshot import audience_count, audience_left_out, audience_snapshot
from organisations.models import sole_organisation_id
from tests.factories import (
    CampaignFactory,
    ContactFactory,
    ContactListFactory,
    EventFactory,
    RecipientFactory,
    SegmentFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def people() -> dict:
    """Five contacts with known attributes, lists, statuses, dates and engagement."""
    rowing, chess = ContactListFactory(name="Rowing"), ContactListFactory(name="Chess")
    with time_machine.travel("2026-01-10 12:00Z"):
        ada = ContactFactory(email="ada@example.org", first_name="Ada", attributes={"club": "Rowing", "age": "36"})
        bob = ContactFactory(email="bob@example.org", first_name="Bob", attributes={"club": "rowing", "age": "9"})
    with time_machine.travel("2026-03-10 12:00Z"):
        cy = ContactFactory(email="cy@example.org", first_name="Cy", attributes={"club": "Chess", "age": "n/a"})
        dee = ContactFactory(email="dee@example.org", first_name="Dee", attributes={"age": "120.5"})
        eve = ContactFactory(email="eve@other.example", first_name="Eve", attributes={"club": ""})
    eve.status = Contact.Status.BOUNCED
    eve.save()
    for contact in (ada, bob):
        Subscription.objects.create(contact=contact, contact_list=rowing)
    Subscription.objects.create(contact=cy, contact_list=chess)
    Subscription.objects.create(contact=dee, contact_list=chess, status="unsubscribed")
    return {"ada": ada, "bob": bob, "cy": cy, "dee": dee, "eve": eve, "rowing": rowing, "chess": chess}


def campaign_audience_emails(campaign) -> list[str]:
    from campaigns.snapshot import audience_queryset

    return list(audience_queryset(campaign).values_list("email", flat=True))


def names(rules: list[dict], match: str = "all") -> set[str]:
    found = Contact.objects.filter(rules_filter(rules, match=match, organisation=sole_organisation_id()))
    return set(found.values_list("first_name", flat=True))


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"field": "attribute:club", "operator": "equals", "value": "rowing"}, {"Ada", "Bob"}),
        ({"field": "attribute:club", "operator": "contains", "value": "ES"}, {"Cy"}),
        ({"field": "attribute:club", "operator": "empty"}, {"Dee", "Eve"}),
        ({"field": "attribute:age", "operator": "gt", "value": "30"}, {"Ada", "Dee"}),
        ({"field": "attribute:age", "operator": "gt", "value": 100}, {"Dee"}),
        ({"field": "email", "operator": "contains", "value": "other"}, {"Eve"}),
        ({"field": "email", "operator": "equals", "value": " ADA@example.org "}, {"Ada"}),
        ({"field": "status", "operator": "equals", "value": "bounced"}, {"Eve"}),
        ({"field": "created", "operator": "before", "value": "2026-02-01"}, {"Ada", "Bob"}),
        ({"field": "created", "operator": "after", "value": "2026-02-01"}, {"Cy", "Dee", "Eve"}),
    ],
)
def test_each_rule_type_picks_the_expected_contacts(people, rule, expected):
    assert names([rule]) == expected


def test_list_membership_counts_only_subscribed_contacts(people):
    chess = people["chess"].pk

    assert names([{"field": "list", "operator": "member", "value": chess}]) == {"Cy"}
    assert names([{"field": "list", "operator": "not_member", "value": chess}]) == {"Ada", "Bob", "Dee", "Eve"}


def test_all_and_any_combine_rules(people):
    rules = [
        {"field": "attribute:club", "operator": "equals", "value": "Rowing"},
        {"field": "attribute:age", "operator": "gt", "value": "30"},
    ]

    assert names(rules, "all") == {"Ada"}
    assert names(rules, "any") == {"Ada", "Bob", "Dee"}


def test_engagement_rules_read_tracking_events(people):
    campaign = CampaignFactory()
    other = CampaignFactory()
    recipients = {name: RecipientFactory(campaign=campaign, contact=people[name]) for name in ("ada", "bob", "cy")}
    now = timezone.now()
    events = [
        ("ada", "open", now - timedelta(days=2)),
        ("ada", "click", now - timedelta(days=2)),
        ("bob", "open", now - timedelta(days=40)),
        ("cy", "bounce", now - timedelta(days=1)),
    ]
    for name, event_type, when in events:
        EventFactory(event_type=event_type, recipient=recipients[name], occurred_at=when)

    def engagement(operator: str, **value) -> set[str]:
        return names([{"field": "engagement", "operator": operator, "value": value}])

    assert engagement("opened", campaign=campaign.pk) == {"Ada", "Bob"}
    assert engagement("opened", days=30) == {"Ada"}
    assert engagement("clicked", campaign=campaign.pk) == {"Ada"}
    assert engagement("bounced", days=7) == {"Cy"}
    assert engagement("not_opened", campaign=campaign.pk) == {"Cy"}
    assert engagement("not_opened", days=30) == {"Bob", "Cy", "Dee", "Eve"}
    assert engagement("opened", campaign=other.pk) == set()


@pytest.mark.parametrize(
    "rule",
    [
        {"field": "attribute:club; DROP TABLE x", "operator": "equals", "value": "x"},
        {"field": "attribute:age", "operator": "gt", "value": "many"},
        {"field": "created", "operator": "before", "value": "yesterday"},
        {"field": "engagement", "operator": "opened", "value": {}},
        {"field": "list", "operator": "member", "value": "1 OR 1=1"},
        {"field": "id", "operator": "raw", "value": "1"},
    ],
)
def test_a_bad_rule_is_refused_with_a_clear_error(rule):
    with pytest.raises(RuleError):
        rules_filter([rule], organisation=sole_organisation_id())


def test_the_snapshot_leaves_out_unsubscribed_bounced_complained_suppressed_and_excluded(people):
    members, vip = ContactListFactory(name="Members"), ContactListFactory(name="VIP")
    keep = ContactFactory(email="keep@example.org", attributes={})
    unsubscribed = ContactFactory(email="unsub@example.org", status=Contact.Status.UNSUBSCRIBED, attributes={})
    bounced = ContactFactory(email="bounced@example.org", status=Contact.Status.BOUNCED, attributes={})
    complained = ContactFactory(email="complained@example.org", status=Contact.Status.COMPLAINED, attributes={})
    suppressed = ContactFactory(email="suppressed@example.org", attributes={})
    excluded = ContactFactory(email="vip@example.org", attributes={})
    left_list = ContactFactory(email="left@example.org", attributes={})
    for contact in (keep, unsubscribed, bounced, complained, suppressed, excluded):
        Subscription.objects.create(contact=contact, contact_list=members)
    Subscription.objects.create(contact=left_list, contact_list=members, status="unsubscribed")
    Subscription.objects.create(contact=excluded, contact_list=vip)
    Suppression.objects.create(email="suppressed@example.org", reason=Suppression.Reason.COMPLAINT)
    rowers = SegmentFactory(name="Rowers", rules=[{"field": "attribute:club", "operator": "equals", "value": "rowing"}])
    young = SegmentFactory(name="Young", rules=[{"field": "attribute:age", "operator": "gt", "value": "0"}])
    not_bob = SegmentFactory(name="Bob", rules=[{"field": "email", "operator": "equals", "value": "bob@example.org"}])
    campaign = CampaignFactory()
    campaign.include_lists.add(members, people["rowing"])  # keep is on one list, Ada/Bob on the other
    campaign.exclude_lists.add(vip)
    campaign.include_segments.add(rowers, young)  # Ada and Bob again (dedupe), and Dee
    campaign.exclude_segments.add(not_bob)

    assert set(campaign_audience_emails(campaign)) == {"keep@example.org", "ada@example.org", "dee@example.org"}
    assert audience_count(campaign) == 3
    left_out = audience_left_out(campaign)
    count = audience_snapshot(campaign_id=campaign.pk)

    assert count == 3
    assert set(campaign.recipients.values_list("email", flat=True)) == {
        "keep@example.org",
        "ada@example.org",
        "dee@example.org",
    }
    assert left_out == {"unsubscribed": 1, "bounced": 1, "complained": 1, "suppressed": 1}
    campaign.refresh_from_db()
    assert campaign.left_out == left_out
    assert audience_snapshot(campaign_id=campaign.pk) == 3  # a second run adds nobody
