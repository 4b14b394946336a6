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


def test_it_filters_by_type_and_lists_unmatched_events_to_site_operators(client, django_user_model):
    event_record(sns_message_id=new_id(), record=identity_notification("Bounce", message_id="nobody-knows"))
    campaign, (recipient,) = campaign_with_recipients(1)
    event_record(sns_message_id=new_id(), record=event("Open", campaign=campaign.pk, recipient=recipient.pk))
    # Unmatched events belong to no organisation: site operators see them.
    client.force_login(django_user_model.objects.create_superuser(username="olga.operator", password="x" * 20))

    opens = client.get("/tracking/events/?type=open").content.decode()
    unmatched = client.get("/tracking/events/?campaign=none").content.decode()

    assert opens.count('data-testid="event-row"') == 1
    assert unmatched.count('data-testid="event-row"') == 1
    assert ">1 unmatched event<" in unmatched


def test_a_user_of_no_organisation_cannot_see_events(client, member_user):
    client.force_login(member_user)

    response = client.get("/tracking/events/")

    assert response.status_code == 302
    assert response["Location"].startswith("/login/")
