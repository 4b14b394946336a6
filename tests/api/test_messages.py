"""Single messages through the API (POST /messages, GET /messages/{id}, GET /templates), sent by the
real engine in-process (``campaign_dispatch``) to the local SES server."""

from __future__ import annotations

import email
import json
import threading
from datetime import timedelta
from email import policy

import pytest
from django.db import connection
from django.utils import timezone

from api.feed import SETTLE
from api.models import IdempotentRequest
from audiences.models import Contact, Suppression
from campaigns.delivery.engine import campaign_dispatch
from campaigns.models import Campaign, CampaignTemplate, Recipient
from campaigns.services import campaign_send_now
from campaigns.snapshot import audience_snapshot
from organisations.models import Role
from tests.api.conftest import KeyClient
from tests.factories import CampaignFactory, campaign_to, list_with_contacts
from tests.sns import new_id
from tests.tracking.records import event

pytestmark = pytest.mark.django_db

MESSAGES = "/api/v1/messages"


@pytest.fixture
def template(club):
    return CampaignTemplate.objects.create(
        organisation=club,
        name="Regatta entry",
        subject="Your entry, {{ first_name }}",
        html_body="<p>Hi {{ first_name }} {{ last_name }}, you row in {{ attributes.race }} "
        "at {{ attributes.start }}.</p>",
    )


@pytest.fixture
def sender(club, key_for) -> KeyClient:
    return key_for(club, Role.SENDER)[1]


def message_body(saved: CampaignTemplate, /, **overrides) -> dict:
    return {
        "template": saved.pk,
        "to": "ann@example.org",
        "context": {"first_name": "Ann", "last_name": "Lee", "race": "Novice 1x", "start": "10:40"},
        **overrides,
    }


def post_message(client: KeyClient, body: dict, key: str | None = "entry-1"):
    return client.post(MESSAGES, body, **({"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}))


def sent_message(client: KeyClient, body: dict, key: str = "entry-1") -> dict:
    """POST a message and let the engine send it; the POST's answer."""
    response = post_message(client, body, key)
    assert response.status_code == 202, response.content
    answer = response.json()
    assert campaign_dispatch(campaign_id=answer["id"], seconds=30) == "finished"
    return answer


def fields_of(response) -> list[str]:
    return [error["field"] for error in response.json()["errors"]]


def nothing_written() -> bool:
    return not (Campaign.objects.exists() or Recipient.objects.exists() or IdempotentRequest.objects.exists())


# --- sending --------------------------------------------------------------------------------------


def test_it_sends_the_template_rendered_with_the_context_and_reports_it_sent(sender, template, ses):
    response = post_message(sender, message_body(template))

    assert response.status_code == 202, response.content
    answer = response.json()
    assert (answer["status"], answer["to"], answer["template"]) == ("queued", "ann@example.org", "Regatta entry")
    assert answer["sent_at"] is None and answer["error"] == ""
    assert not any(answer["events"].values())
    assert campaign_dispatch(campaign_id=answer["id"], seconds=30) == "finished"

    (raw,) = ses.sent()
    message = email.message_from_string(raw["raw_data"], policy=policy.default)
    assert message["To"] == "ann@example.org"
    assert message["Subject"] == "Your entry, Ann"
    assert "Hi Ann Lee, you row in Novice 1x at 10:40." in message.get_body(("html",)).get_content()
    recipient = Recipient.objects.get()
    assert (recipient.status, recipient.ses_message_id) == (Recipient.Status.SENT, raw["id"])
    assert message["X-SES-MESSAGE-TAGS"] == f"campaign={answer['id']}, recipient={recipient.pk}"
    shown = sender.get(f"{MESSAGES}/{answer['id']}").json()
    assert shown["status"] == "sent" and shown["sent_at"] is not None
    assert Campaign.objects.get(pk=answer["id"]).kind == Campaign.Kind.MESSAGE


def test_the_templates_are_listed_for_the_organisation_only(club, other_club, template, key_for):
    CampaignTemplate.objects.create(organisation=other_club, name="Chess news", subject="s", html_body="<p>x</p>")
    listed = key_for(club, Role.VIEWER)[1].get("/api/v1/templates").json()
    assert [(row["id"], row["name"], row["subject"]) for row in listed] == [
        (template.pk, "Regatta entry", "Your entry, {{ first_name }}")
    ]


# --- idempotency ----------------------------------------------------------------------------------


def test_the_same_key_twice_sends_once_and_answers_the_first_answer_again(sender, template, ses):
    first = post_message(sender, message_body(template))
    assert campaign_dispatch(campaign_id=first.json()["id"], seconds=30) == "finished"

    again = post_message(sender, message_body(template))

    assert again.status_code == 202
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert Campaign.objects.filter(kind=Campaign.Kind.MESSAGE).count() == 1
    assert Recipient.objects.count() == 1
    assert len(ses.sent()) == 1


def test_a_retry_with_the_same_json_in_another_key_order_and_spacing_is_the_same_request(sender, template):
    first = post_message(sender, message_body(template))
    body = message_body(template)
    reordered = json.dumps(dict(reversed(list(body.items()))), indent=2)

    again = sender.client.post(
        MESSAGES,
        reordered,
        content_type="application/json",
        headers={"Authorization": f"Bearer {sender.raw}", "Idempotency-Key": "entry-1"},
    )

    assert again.status_code == 202, again.content
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert Campaign.objects.filter(kind=Campaign.Kind.MESSAGE).count() == 1


def test_the_same_key_with_another_body_is_refused_and_writes_nothing(sender, template):
    first = post_message(sender, message_body(template))
    assert first.status_code == 202

    other = post_message(sender, message_body(template, to="bob@example.org"))

    assert other.status_code == 422
    assert fields_of(other) == ["Idempotency-Key"]
    assert Campaign.objects.count() == 1 and Recipient.objects.get().email == "ann@example.org"
    assert IdempotentRequest.objects.count() == 1


def test_a_key_older_than_a_day_sends_a_new_message(sender, template):
    first = post_message(sender, message_body(template)).json()
    IdempotentRequest.objects.update(created_at=timezone.now() - timedelta(hours=24, minutes=1))

    again = post_message(sender, message_body(template))

    assert again.status_code == 202 and "Idempotent-Replayed" not in again
    assert again.json()["id"] != first["id"]
    assert Campaign.objects.filter(kind=Campaign.Kind.MESSAGE).count() == 2
    assert IdempotentRequest.objects.count() == 1  # the expired one was replaced


def test_keys_belong_to_their_organisation(club, other_club, sender, template, key_for):
    theirs = CampaignTemplate.objects.create(organisation=other_club, name="Chess", subject="s", html_body="<p>x</p>")
    mine = post_message(sender, message_body(template))
    other = post_message(key_for(other_club, Role.SENDER)[1], message_body(theirs))

    assert (mine.status_code, other.status_code) == (202, 202)
    assert "Idempotent-Replayed" not in other
    assert Campaign.objects.get(pk=other.json()["id"]).organisation_id == other_club.pk
    assert Campaign.objects.get(pk=mine.json()["id"]).organisation_id == club.pk


def test_a_missing_or_too_long_key_is_refused(sender, template):
    for key in (None, "", " ", "k" * 256):
        response = post_message(sender, message_body(template), key)
        assert response.status_code == 422, key
        assert fields_of(response) == ["Idempotency-Key"]
        assert "Idempotency-Key" in response.json()["detail"]
    assert nothing_written()
    assert post_message(sender, message_body(template), "k" * 255).status_code == 202


@pytest.mark.django_db(transaction=True)
def test_two_calls_with_the_same_key_at_once_make_one_message(club, key_for, template):
    first = key_for(club, Role.SENDER)[1]
    clients = [first, KeyClient(first.raw)]  # the same program retrying: one key, two connections
    start = threading.Barrier(2)
    answers = []

    def call(client: KeyClient) -> None:
        try:
            start.wait(timeout=10)
            answers.append(post_message(client, message_body(template), "race-entry-77"))
        finally:
            connection.close()

    threads = [threading.Thread(target=call, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(answer.status_code for answer in answers) == [202, 202]
    assert answers[0].json() == answers[1].json()
    assert sorted(answer.get("Idempotent-Replayed", "") for answer in answers) == ["", "true"]
    assert Campaign.objects.filter(kind=Campaign.Kind.MESSAGE).count() == 1
    assert Recipient.objects.count() == 1 and IdempotentRequest.objects.count() == 1


# --- refusals -------------------------------------------------------------------------------------


def test_a_suppressed_address_is_refused_and_nothing_is_written(sender, template):
    Suppression.objects.create(email="ann@example.org", reason=Suppression.Reason.HARD_BOUNCE)

    response = post_message(sender, message_body(template))

    assert response.status_code == 422
    assert fields_of(response) == ["to"] and "suppression list" in response.json()["detail"]
    assert nothing_written()


def test_a_contact_who_unsubscribed_from_the_organisation_is_refused(club, other_club, sender, template):
    Contact.objects.create(organisation=club, email="ann@example.org", status=Contact.Status.UNSUBSCRIBED)
    Contact.objects.create(organisation=other_club, email="bob@example.org", status=Contact.Status.UNSUBSCRIBED)

    refused = post_message(sender, message_body(template))
    assert refused.status_code == 422 and fields_of(refused) == ["to"]
    assert nothing_written()
    # Another organisation's opt-out is theirs: this organisation may still write to the address.
    assert post_message(sender, message_body(template, to="bob@example.org")).status_code == 202


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"to": "not-an-address"}, "to"),
        ({"to": "ann@@example.org"}, "to"),
        ({"template": 987654}, "template"),
        ({"from_email": "boss@elsewhere.example"}, "from_email"),
        ({"reply_to": "not-an-address"}, "reply_to"),
    ],
)
def test_a_bad_field_is_refused_by_name_and_nothing_is_written(sender, template, change, field):
    response = post_message(sender, message_body(template, **change))

    assert response.status_code == 422, response.content
    assert fields_of(response) == [field]
    assert nothing_written()


def test_another_organisations_template_is_refused_and_the_key_stays_free(other_club, sender, template):
    theirs = CampaignTemplate.objects.create(organisation=other_club, name="Chess", subject="s", html_body="<p>x</p>")

    refused = post_message(sender, message_body(template, template=theirs.pk))

    assert refused.status_code == 422 and fields_of(refused) == ["template"]
    assert nothing_written()
    # A refused call takes no key: the corrected call with the same key goes out.
    assert post_message(sender, message_body(template)).status_code == 202


# --- roles ----------------------------------------------------------------------------------------


def test_viewers_and_editors_cannot_send_and_viewers_can_read(club, other_club, sender, template, key_for):
    for role in (Role.VIEWER, Role.EDITOR):
        assert post_message(key_for(club, role)[1], message_body(template)).status_code == 403
    assert nothing_written()
    answer = post_message(sender, message_body(template)).json()

    read = key_for(club, Role.VIEWER)[1].get(f"{MESSAGES}/{answer['id']}")
    assert read.status_code == 200 and read.json()["to"] == "ann@example.org"
    assert key_for(other_club, Role.SENDER)[1].get(f"{MESSAGES}/{answer['id']}").status_code == 404


def test_a_campaigns_id_is_not_a_message(club, sender):
    campaign = CampaignFactory(organisation=club)
    assert sender.get(f"{MESSAGES}/{campaign.pk}").status_code == 404


# --- kept apart from campaigns; tracked like them -------------------------------------------------


def test_messages_are_not_listed_with_campaigns(club, sender, template, ses, staff_client, time_machine):
    now = timezone.now()
    campaign = CampaignFactory(
        organisation=club, name="Spring newsletter", status=Campaign.Status.SENT, started_at=now, finished_at=now
    )
    answer = sent_message(sender, message_body(template))
    assert Campaign.objects.get(pk=answer["id"]).finished_at is not None

    listed = sender.get("/api/v1/campaigns").json()
    assert [row["id"] for row in listed["items"]] == [campaign.pk]
    page = staff_client.get("/campaigns/")
    assert page.status_code == 200
    assert "Spring newsletter" in page.text and "Regatta entry" not in page.text
    time_machine.move_to(timezone.now() + SETTLE + timedelta(seconds=1), tick=True)
    feed = sender.get("/api/v1/events").json()["items"]
    finished = [item["data"]["campaign_id"] for item in feed if item["type"] == "campaign_finished"]
    assert finished == [campaign.pk]


def test_a_bounce_of_a_message_suppresses_the_address_and_shows_in_the_feed(
    sender, template, ses, notify, time_machine
):
    answer = sent_message(sender, message_body(template))
    recipient = Recipient.objects.get()

    record = event("Bounce", address=recipient.email, message_id=recipient.ses_message_id, campaign=answer["id"],
                   recipient=recipient.pk)  # fmt: skip
    assert notify(record, message_id=new_id()).status_code == 200

    assert Suppression.objects.filter(email="ann@example.org").exists()
    shown = sender.get(f"{MESSAGES}/{answer['id']}").json()
    assert shown["events"]["bounced"] is True and shown["events"]["delivered"] is False
    time_machine.move_to(timezone.now() + SETTLE + timedelta(seconds=1), tick=True)
    (bounce,) = sender.get("/api/v1/events", types="bounce").json()["items"]
    assert bounce["data"]["email"] == "ann@example.org"
    assert bounce["data"]["campaign_id"] == answer["id"]
    # The address is suppressed now: a new message to it is refused.
    refused = post_message(sender, message_body(template), "entry-2")
    assert refused.status_code == 422 and fields_of(refused) == ["to"]


def test_a_message_is_sent_ahead_of_a_sending_campaign_by_its_dispatcher(sender, template, ses):
    bulk = campaign_to(list_with_contacts(200))
    campaign_send_now(campaign_id=bulk.pk)  # in a test transaction: its start task is never enqueued
    audience_snapshot(campaign_id=bulk.pk)
    answer = post_message(sender, message_body(template)).json()

    # Only the bulk campaign's dispatcher runs: the express lane takes the message on the way.
    assert campaign_dispatch(campaign_id=bulk.pk, seconds=60) == "finished"

    message = Recipient.objects.get(campaign_id=answer["id"])
    assert message.status == Recipient.Status.SENT
    bulk_times = sorted(Recipient.objects.filter(campaign=bulk).values_list("sent_at", flat=True))
    assert len(bulk_times) == 200 and None not in bulk_times
    assert message.sent_at < bulk_times[49]
    assert sender.get(f"{MESSAGES}/{answer['id']}").json()["status"] == "sent"


def test_erasing_the_contact_clears_the_messages_merge_fields(club, sender, template, ses, key_for):
    Contact.objects.create(organisation=club, email="ann@example.org", external_id="member-12")
    answer = sent_message(sender, message_body(template))
    assert Recipient.objects.get().merge_data["attributes"] == {"race": "Novice 1x", "start": "10:40"}

    assert key_for(club, Role.EDITOR)[1].delete("/api/v1/contacts/member-12").status_code == 204

    recipient = Recipient.objects.get(campaign_id=answer["id"])
    assert recipient.merge_data is None
    assert recipient.email.endswith("@erased.invalid")
    assert recipient.status == Recipient.Status.SENT
