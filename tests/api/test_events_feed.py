"""The events feed: the organisation's bounces, complaints, unsubscribes, deliveries and finished
campaigns, in order, resumable with a cursor that never skips nor repeats an item."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from api.feed import SETTLE, feed_after, feed_start
from campaigns.models import Campaign
from campaigns.unsubscribe import unsubscribe_recipient
from organisations.models import Role
from tests.factories import EventFactory
from tests.sns import campaign_with_recipients, new_id
from tests.tracking.records import event
from tracking.models import Event

pytestmark = pytest.mark.django_db


def settle(time_machine) -> None:
    time_machine.move_to(timezone.now() + SETTLE + timedelta(seconds=1), tick=True)


@pytest.fixture
def viewer(club, key_for):
    return key_for(club, Role.VIEWER)[1]


@pytest.fixture
def mail(club, notify):
    """A campaign of the club with 6 recipients, fed through the signed webhook: 3 deliveries, a
    hard bounce, a complaint, an SES opt-out and an open (not a feed type)."""
    campaign, recipients = campaign_with_recipients(6)

    def send(kind, index, **detail):
        record = event(
            kind,
            address=recipients[index].email,
            message_id=recipients[index].ses_message_id,
            campaign=campaign.pk,
            recipient=recipients[index].pk,
            **detail,
        )
        assert notify(record, message_id=new_id()).status_code == 200

    for index in range(3):
        send("Delivery", index)
    send("Bounce", 3)
    send("Complaint", 2)
    send("Subscription", 1)
    send("Open", 0)
    return campaign, recipients


def read_all(client, *, limit: int, types: str | None = None, after: str | None = None) -> tuple[list[dict], str]:
    items, seen_cursors = [], set()
    while True:
        params = {"limit": limit, **({"after": after} if after else {}), **({"types": types} if types else {})}
        response = client.get("/api/v1/events", **params)
        assert response.status_code == 200, response.content
        page = response.json()
        items += page["items"]
        assert page["next_cursor"] not in seen_cursors or not page["items"]
        seen_cursors.add(page["next_cursor"])
        after = page["next_cursor"]
        if len(page["items"]) < limit:
            return items, after


def test_the_feed_pages_through_every_item_in_order_once(mail, viewer, time_machine):
    settle(time_machine)
    whole, _ = read_all(viewer, limit=1000)
    paged, _ = read_all(viewer, limit=2)
    assert [item["cursor"] for item in paged] == [item["cursor"] for item in whole]
    assert len({item["cursor"] for item in paged}) == len(paged) == 6
    assert sorted(item["type"] for item in whole) == ["bounce", "complaint", "delivery", "delivery", "delivery",
                                                      "unsubscribe"]  # fmt: skip
    bounce = next(item for item in whole if item["type"] == "bounce")
    campaign, recipients = mail
    assert bounce["data"]["email"] == recipients[3].email
    assert bounce["data"]["campaign_id"] == campaign.pk and bounce["data"]["campaign_name"] == campaign.name
    assert (bounce["data"]["bounce_type"], bounce["data"]["bounce_subtype"]) == ("Permanent", "General")
    unsubscribe = next(item for item in whole if item["type"] == "unsubscribe")
    assert unsubscribe["data"]["source"] == "ses" and unsubscribe["data"]["email"] == recipients[1].email


def test_items_appear_only_after_the_settle_window_and_then_exactly_once(mail, viewer, time_machine):
    first = viewer.get("/api/v1/events").json()
    assert first["items"] == []  # written just now: not yet settled
    settle(time_machine)
    second = viewer.get("/api/v1/events", after=first["next_cursor"]).json()
    assert len(second["items"]) == 6
    again = viewer.get("/api/v1/events", after=second["next_cursor"]).json()
    assert again["items"] == []


def test_an_item_whose_transaction_commits_late_is_not_skipped(club, viewer, time_machine):
    """A row written (received_at) before another but committed after it was read: the settle
    window keeps the cursor behind it, so the next poll still returns it."""
    _, recipients = campaign_with_recipients(2)
    now = timezone.now()
    later = EventFactory(recipient=recipients[1], event_type=Event.Type.BOUNCE, received_at=now)
    settle(time_machine)
    first = viewer.get("/api/v1/events").json()
    assert [item["data"]["email"] for item in first["items"]] == [later.email]
    # Written 3 s after ``later`` by a slower transaction that commits only now, after the read.
    earlier_id_late_commit = EventFactory(
        recipient=recipients[0], event_type=Event.Type.BOUNCE, received_at=timezone.now() - timedelta(seconds=3)
    )
    settle(time_machine)
    second = viewer.get("/api/v1/events", after=first["next_cursor"]).json()
    assert [item["data"]["email"] for item in second["items"]] == [earlier_id_late_commit.email]


def test_types_filter_the_feed(mail, viewer, time_machine):
    settle(time_machine)
    items = viewer.get("/api/v1/events", types="bounce,complaint").json()["items"]
    assert sorted(item["type"] for item in items) == ["bounce", "complaint"]
    assert [item["type"] for item in viewer.get("/api/v1/events", types="unsubscribe").json()["items"]] == [
        "unsubscribe"
    ]


def test_an_unknown_type_or_a_bad_cursor_answers_422(club, viewer):
    response = viewer.get("/api/v1/events", types="bounce,open")
    assert response.status_code == 422 and "open" in response.json()["detail"]
    assert response["Content-Type"] == "application/problem+json"
    for cursor in [
        "nonsense",
        "v1.1.0",
        "v1.99999999999999999.0.1",
        "v1.9999999999999999999.0.1",
        "<script>",
        "v1.-1.0.0x",
    ]:
        response = viewer.get("/api/v1/events", after=cursor)
        assert response.status_code == 422, cursor
        assert response.json()["errors"][0]["field"] == "query.after"
    assert viewer.get("/api/v1/events", limit=100000).status_code == 422
    assert viewer.get("/api/v1/events", limit="many").status_code == 422


def test_another_organisations_events_never_appear(mail, club, other_club, key_for, time_machine):
    campaign, _ = mail
    Campaign.objects.filter(pk=campaign.pk).update(organisation=other_club)
    settle(time_machine)
    assert key_for(club, Role.VIEWER)[1].get("/api/v1/events").json()["items"] == []
    assert len(key_for(other_club, Role.VIEWER)[1].get("/api/v1/events").json()["items"]) == 6


def test_a_link_unsubscribe_and_a_finished_campaign_are_items(club, viewer, time_machine):
    campaign, recipients = campaign_with_recipients(2)
    start = feed_start(club)
    assert unsubscribe_recipient(recipient=recipients[0])
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.SENT, finished_at=timezone.now())
    settle(time_machine)
    items = viewer.get("/api/v1/events", after=start).json()["items"]
    assert [item["type"] for item in items] == ["unsubscribe", "campaign_finished"]
    assert items[0]["data"] == {
        "email": recipients[0].email,
        "campaign_id": campaign.pk,
        "campaign_name": campaign.name,
        "message_id": None,  # a campaign's recipient, not a single message
        "source": "link",
    }
    assert items[1]["data"]["status"] == "sent"


def test_feed_start_skips_what_was_written_before(mail, club, time_machine):
    start = feed_start(club)
    settle(time_machine)
    assert feed_after(club, after=start) == []
    assert len(feed_after(club, after=None)) == 6


def test_event_fields_are_returned_as_plain_strings(club, viewer, time_machine):
    _, recipients = campaign_with_recipients(1)
    EventFactory(
        recipient=recipients[0],
        event_type=Event.Type.BOUNCE,
        bounce_type="<b>Permanent</b>",
        detail='smtp; 550 <script>alert("x")</script>',
    )
    settle(time_machine)
    data = viewer.get("/api/v1/events").json()["items"][0]["data"]
    assert data["bounce_type"] == "<b>Permanent</b>"
    assert data["diagnostic"] == 'smtp; 550 <script>alert("x")</script>'
