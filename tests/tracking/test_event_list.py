"""The staff event list: every stored event shown, filterable, unmatched ones counted."""

from __future__ import annotations

import pytest

from tests.sns import campaign_with_recipients, new_id
from tests.tracking.records import EVENT_TYPES, event, identity_notification
from tracking.storing import event_record

pytestmark = pytest.mark.django_db


def test_it_shows_every_event_type_with_its_details(staff_client):
    campaign, (recipient,) = campaign_with_recipients(1)
    for kind in EVENT_TYPES:
        record = event(kind, address=recipient.email, campaign=campaign.pk, recipient=recipient.pk)
        event_record(sns_message_id=new_id(), record=record)

    page = staff_client.get("/tracking/events/").content.decode()

    assert page.count('data-testid="event-row"') == len(EVENT_TYPES)
    for label in ("Rendering failure", "Delivery delay", "Subscription", "Permanent / General", "abuse"):
        assert label in page
    assert "https://example.com/read" in page


def test_it_filters_by_type_and_lists_unmatched_events(staff_client):
    event_record(sns_message_id=new_id(), record=identity_notification("Bounce", message_id="nobody-knows"))
    campaign, (recipient,) = campaign_with_recipients(1)
    event_record(sns_message_id=new_id(), record=event("Open", campaign=campaign.pk, recipient=recipient.pk))

    opens = staff_client.get("/tracking/events/?type=open").content.decode()
    unmatched = staff_client.get("/tracking/events/?campaign=none").content.decode()

    assert opens.count('data-testid="event-row"') == 1
    assert unmatched.count('data-testid="event-row"') == 1
    assert ">1 unmatched event<" in unmatched


def test_members_cannot_see_events(client, member_user):
    client.force_login(member_user)

    assert client.get("/tracking/events/").status_code == 403
