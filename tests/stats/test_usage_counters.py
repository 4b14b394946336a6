"""Usage per organisation and day (``stats.models.OrganisationDay``): moved by the engine's group
commit, test sends and the webhook's event batches; read by quotas (``usage_sent``) and the Usage page."""

from __future__ import annotations

import datetime
import importlib
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.apps import apps
from django.urls import reverse
from django.utils import timezone

from audiences.models import Suppression
from campaigns.delivery.engine import campaign_dispatch
from campaigns.models import Campaign, Recipient
from campaigns.services import campaign_send_now
from campaigns.snapshot import audience_snapshot
from organisations.models import Organisation
from stats.counters import markers_claim, usage_add, usage_day, usage_sent
from stats.models import CampaignStats, OrganisationDay, RecipientActivity
from tests.factories import CampaignFactory, campaign_to, list_with_contacts
from tests.sns import campaign_with_recipients
from tests.tracking.records import event, identity_notification

pytestmark = pytest.mark.django_db

EVENT_DAY = datetime.date(2026, 11, 27)  # tests.tracking.records: SES events happen on this day


def usage(organisation_id: int, day: datetime.date | None = None) -> dict[str, int]:
    row = OrganisationDay.objects.filter(organisation_id=organisation_id, day=day or usage_day()).first()
    return {name: getattr(row, name) if row else 0 for name in OrganisationDay.COUNTER_FIELDS}


def send_and_drain(campaign: Campaign, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=False):
        campaign_send_now(campaign_id=campaign.pk)
    audience_snapshot(campaign_id=campaign.pk)
    assert campaign_dispatch(campaign_id=campaign.pk, seconds=60) == "finished"


# --- the engine ---------------------------------------------------------------------------------------


def test_a_sent_campaign_counts_its_recipients_on_its_organisations_day(ses, django_capture_on_commit_callbacks):
    campaign = campaign_to(list_with_contacts(5))

    send_and_drain(campaign, django_capture_on_commit_callbacks)

    assert len(ses.sent()) == 5
    assert usage(campaign.organisation_id)["sent"] == 5 == CampaignStats.objects.get(campaign=campaign).sent
    assert usage(campaign.organisation_id)["test_sent"] == 0


def test_campaigns_of_two_organisations_count_apart_and_add_up_within_one(
    ses, organisation, django_capture_on_commit_callbacks
):
    club = Organisation.objects.create(name="Hilltop Chess", slug="hilltop", parent=organisation)
    first = campaign_to(list_with_contacts(3, name="Rowing", organisation=organisation), organisation=organisation)
    second = campaign_to(list_with_contacts(2, name="Sculling", organisation=organisation), organisation=organisation)
    chess = campaign_to(list_with_contacts(4, name="Chess", organisation=club), organisation=club)

    for campaign in (first, second, chess):
        send_and_drain(campaign, django_capture_on_commit_callbacks)

    assert usage(organisation.pk)["sent"] == 5
    assert usage(club.pk)["sent"] == 4
    assert OrganisationDay.objects.count() == 2  # one row per organisation and day, however many groups


def test_recipients_skipped_at_dispatch_are_not_counted(ses, django_capture_on_commit_callbacks):
    contact_list = list_with_contacts(3)
    campaign = campaign_to(contact_list)
    with django_capture_on_commit_callbacks(execute=False):
        campaign_send_now(campaign_id=campaign.pk)
    audience_snapshot(campaign_id=campaign.pk)
    gone = Recipient.objects.filter(campaign=campaign).order_by("id").first().email
    Suppression.objects.create(email=gone, reason=Suppression.Reason.HARD_BOUNCE)

    assert campaign_dispatch(campaign_id=campaign.pk, seconds=60) == "finished"

    assert Recipient.objects.filter(campaign=campaign, status=Recipient.Status.SENT).count() == 2
    assert usage(campaign.organisation_id)["sent"] == 2


# --- test sends ------------------------------------------------------------------------------------


def test_each_test_message_ses_accepts_counts_as_a_test_message(ses, staff_client):
    campaign = CampaignFactory()

    staff_client.post(
        reverse("compose:test_send", args=[campaign.pk]), {"addresses": "me@example.org, you@example.org"}
    )

    assert len(ses.sent()) == 2
    assert usage(campaign.organisation_id) == {
        "sent": 0,
        "test_sent": 2,
        "delivered": 0,
        "bounced_hard": 0,
        "complained": 0,
    }


def test_a_test_message_ses_refuses_is_not_counted(ses, staff_client, settings):
    settings.SENDER_ADDRESSES = ["news@cobalt.example"]
    campaign = CampaignFactory(from_email="news@unverified.example")

    staff_client.post(reverse("compose:test_send", args=[campaign.pk]), {"addresses": "me@example.org"})

    assert not OrganisationDay.objects.exists()


# --- quotas' reader and the writer ------------------------------------------------------------------


def test_usage_sent_adds_messages_and_test_messages_from_the_day_given(organisation):
    today = datetime.date(2026, 11, 30)
    usage_add(organisation_id=organisation.pk, day=datetime.date(2026, 10, 31), sent=1000)
    usage_add(organisation_id=organisation.pk, day=datetime.date(2026, 11, 1), sent=300, test_sent=2)
    usage_add(organisation_id=organisation.pk, day=today, sent=40)
    usage_add(organisation_id=organisation.pk, day=today, sent=5, test_sent=1)

    assert usage_sent(organisation.pk, today) == 46
    assert usage_sent(organisation.pk, datetime.date(2026, 11, 1)) == 348
    assert usage_sent(organisation.pk, datetime.date(2026, 12, 1)) == 0
    assert usage(organisation.pk, today)["sent"] == 45


def test_nothing_to_add_writes_no_row_and_an_unknown_counter_is_refused(organisation):
    usage_add(organisation_id=organisation.pk, sent=0)
    assert not OrganisationDay.objects.exists()

    with pytest.raises(ValueError, match="Not a usage counter: opens"):
        usage_add(organisation_id=organisation.pk, opens=1)


@time_machine.travel(datetime.datetime(2026, 11, 30, 23, 30, tzinfo=datetime.UTC), tick=False)
def test_the_day_is_the_installations_whatever_time_zone_the_staff_member_chose(settings):
    settings.TIME_ZONE = "Europe/London"

    with timezone.override(ZoneInfo("Australia/Sydney")):  # already 1 December there
        assert usage_day() == datetime.date(2026, 11, 30)
    assert usage_day(datetime.datetime(2026, 6, 30, 23, 30, tzinfo=datetime.UTC)) == datetime.date(2026, 7, 1)  # BST


# --- the webhook: recipients, not notifications ----------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "counter"), [("Delivery", "delivered"), ("Bounce", "bounced_hard"), ("Complaint", "complained")]
)
def test_two_notifications_for_one_recipient_count_once_for_the_organisation(notify, kind, counter):
    campaign, (recipient, other) = campaign_with_recipients(2)
    tagged = event(kind, address=recipient.email, campaign=campaign.pk, recipient=recipient.pk,
                   message_id=recipient.ses_message_id)  # fmt: skip
    identity = identity_notification(kind, address=recipient.email, message_id=recipient.ses_message_id)

    for record in (tagged, identity, tagged):  # configuration set, identity topic, an SNS retry
        assert notify(record).status_code == 200

    assert usage(campaign.organisation_id, EVENT_DAY)[counter] == 1
    assert getattr(CampaignStats.objects.get(campaign=campaign), counter) == 1
    assert notify(event(kind, address=other.email, campaign=campaign.pk, recipient=other.pk,
                        message_id=other.ses_message_id)).status_code == 200  # fmt: skip
    assert usage(campaign.organisation_id, EVENT_DAY)[counter] == 2


def test_soft_bounces_opens_and_clicks_do_not_move_the_organisations_usage(notify):
    campaign, (recipient,) = campaign_with_recipients(1)
    tag = {"campaign": campaign.pk, "recipient": recipient.pk, "message_id": recipient.ses_message_id}

    for record in (
        event("Bounce", bounceType="Transient", bounceSubType="MailboxFull", address=recipient.email, **tag),
        event("Open", address=recipient.email, **tag),
        event("Click", address=recipient.email, **tag),
    ):
        assert notify(record).status_code == 200

    assert CampaignStats.objects.get(campaign=campaign).bounced_soft == 1
    assert not OrganisationDay.objects.exists()


# --- the migration's backfill ----------------------------------------------------------------------


def test_the_migration_backfills_usage_from_sent_recipients_and_their_outcomes(settings):
    settings.TIME_ZONE = "Europe/Berlin"
    campaign, recipients = campaign_with_recipients(3)
    late = datetime.datetime(2026, 11, 2, 23, 30, tzinfo=datetime.UTC)  # 3 November in Berlin
    Recipient.objects.filter(pk=recipients[0].pk).update(sent_at=late - datetime.timedelta(days=1))
    Recipient.objects.filter(pk__in=[r.pk for r in recipients[1:]]).update(sent_at=late)
    markers_claim(rows={(recipients[0].pk, RecipientActivity.Kind.DELIVERED): late,
                        (recipients[1].pk, RecipientActivity.Kind.BOUNCED_HARD): late,
                        (recipients[1].pk, RecipientActivity.Kind.BOUNCED): late})  # fmt: skip
    backfill = importlib.import_module("stats.migrations.0004_organisation_day").usage_backfill

    backfill(apps, None)

    rows = {
        row.day: (row.sent, row.test_sent, row.delivered, row.bounced_hard, row.complained)
        for row in OrganisationDay.objects.filter(organisation_id=campaign.organisation_id)
    }
    assert rows == {datetime.date(2026, 11, 2): (1, 0, 0, 0, 0), datetime.date(2026, 11, 3): (2, 0, 1, 1, 0)}
