"""Reputation per organisation: figures from the daily counters, the hold, the refusals while held,
and the site operators' table where only they lift a hold."""

from __future__ import annotations

import datetime
import re

import pytest
import time_machine
from django.test import Client
from django.urls import reverse

from api.keys import api_key_create
from campaigns.models import Campaign, CampaignTemplate
from campaigns.services import (
    CampaignError,
    campaign_resume,
    campaign_schedule,
    campaign_send_now,
    campaign_start_due,
    organisation_reputation_enforce,
    organisations_reputation_check,
)
from organisations.models import AuditEntry, Organisation, Role
from organisations.reputation import Window, organisation_hold_lift, reputation_of, reputation_reason
from stats.counters import usage_add
from tests.api.conftest import KeyClient
from tests.factories import CampaignFactory, campaign_to, list_with_contacts

pytestmark = pytest.mark.django_db

NOW = datetime.datetime(2026, 11, 20, 12, 0, tzinfo=datetime.UTC)
TODAY = datetime.date(2026, 11, 20)


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


def days_ago(days: int) -> datetime.date:
    return TODAY - datetime.timedelta(days=days)


def sending(organisation: Organisation, **fields) -> Campaign:
    return CampaignFactory(organisation=organisation, status=Campaign.Status.SENDING, started_at=NOW, **fields)


def held(club) -> Organisation:
    """The club after 100 hard bounces in 1,000 messages today (10%): on hold."""
    usage_add(organisation_id=club.pk, day=TODAY, sent=1000, delivered=900, bounced_hard=100)
    organisation_reputation_enforce(organisation_id=club.pk)
    club.refresh_from_db()
    assert club.held_at is not None
    return club


@pytest.fixture
def operator_client(django_user_model):
    """A site operator (``is_superuser``), with no role in any organisation, in a client of their own."""
    operator = django_user_model.objects.create_superuser(username="olive.operator", password="correct-horse-battery")
    client = Client()
    client.force_login(operator)
    return client


# --- figures --------------------------------------------------------------------------------------


def test_both_windows_come_from_the_counters_and_a_small_clubs_1000_window_goes_back_days(club):
    usage_add(organisation_id=club.pk, day=TODAY, sent=310, delivered=300, bounced_hard=2)
    usage_add(organisation_id=club.pk, day=days_ago(3), sent=400, delivered=400)
    usage_add(organisation_id=club.pk, day=days_ago(10), sent=505, delivered=500, complained=1)
    usage_add(organisation_id=club.pk, day=days_ago(40), sent=100, delivered=100, bounced_hard=50)

    figures = reputation_of(club)

    week = figures.week
    assert (week.sent, week.delivered, week.bounced_hard, week.complained) == (710, 700, 2, 0)
    assert (week.first_day, week.last_day) == (days_ago(3), TODAY)
    recent = figures.recent
    assert (recent.sent, recent.delivered, recent.bounced_hard, recent.complained) == (1215, 1200, 2, 1)
    assert (recent.first_day, recent.last_day) == (days_ago(10), TODAY)  # not back to the bad day 40 days ago
    assert recent.bounce_rate == pytest.approx(2 / 1202)
    assert recent.complaint_rate == pytest.approx(1 / 1200)
    assert figures.reason is None


def test_a_large_senders_1000_window_is_today_alone(club):
    usage_add(organisation_id=club.pk, day=TODAY, sent=5000, delivered=4990, bounced_hard=10)
    usage_add(organisation_id=club.pk, day=days_ago(1), sent=5000, delivered=5000)

    recent = reputation_of(club).recent

    assert (recent.first_day, recent.last_day, recent.delivered) == (TODAY, TODAY, 4990)


def test_rates_never_exceed_100_percent_when_complaints_arrive_before_their_deliveries(club):
    usage_add(organisation_id=club.pk, day=TODAY, sent=10, delivered=2, complained=5)

    week = reputation_of(club).week

    assert week.complaint_rate == 1.0
    assert week.complaint_percent == "100.00%"


def test_three_bounces_of_ten_do_not_hold_too_few_to_judge(club):
    assert reputation_reason(Window("the last 7 days", TODAY, TODAY, 10, 7, 3, 0)) is None

    usage_add(organisation_id=club.pk, day=TODAY, sent=10, delivered=7, bounced_hard=3)
    campaign = sending(club)

    assert organisation_reputation_enforce(organisation_id=club.pk) is False
    club.refresh_from_db()
    assert club.held_at is None
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SENDING


def test_complaints_above_the_level_on_enough_deliveries_give_the_figures_in_words(club):
    usage_add(organisation_id=club.pk, day=days_ago(2), sent=2000, delivered=2000, complained=12)

    reason = reputation_of(club).reason

    assert reason.startswith("12 complaints from 2,000 deliveries (0.60%) in the last 7 days (18 Nov)")
    assert "SES's review level of 0.10%" in reason


# --- the hold -------------------------------------------------------------------------------------


def test_the_hold_pauses_every_sending_campaign_of_that_organisation_only(club, other_club):
    newsletter, regatta = sending(club, name="Newsletter"), sending(club, name="Regatta")
    draft = CampaignFactory(organisation=club)
    chess = sending(other_club, name="Chess news")
    usage_add(organisation_id=club.pk, day=TODAY, sent=1000, delivered=900, bounced_hard=100)

    assert organisation_reputation_enforce(organisation_id=club.pk) is True

    club.refresh_from_db()
    assert "100 hard bounces from 1,000 messages with an outcome (10.0%) in the last 7 days" in club.held_reason
    for campaign in (newsletter, regatta):
        campaign.refresh_from_db()
        assert campaign.status == Campaign.Status.PAUSED
        assert campaign.status_reason.startswith("Paused: Sending is on hold for Riverside Rowing: 100 hard bounces")
        assert "A site operator must review and lift the hold. Then resume this campaign." in campaign.status_reason
    draft.refresh_from_db()
    chess.refresh_from_db()
    assert draft.status == Campaign.Status.DRAFT
    assert chess.status == Campaign.Status.SENDING
    entry = AuditEntry.objects.get(organisation=club, summary__startswith="Sending put on hold")
    assert entry.action == AuditEntry.Action.ORGANISATION


def test_the_engine_tick_holds_an_organisation_and_pauses_a_campaign_that_raced_the_hold(club):
    usage_add(organisation_id=club.pk, day=days_ago(5), sent=1000, delivered=900, bounced_hard=100)
    assert organisations_reputation_check() == 0  # held, but nothing was sending
    club.refresh_from_db()
    assert club.held_at is not None

    late = sending(club)  # started at the moment the hold was being written
    assert organisations_reputation_check() == 1
    late.refresh_from_db()
    assert late.status == Campaign.Status.PAUSED


def test_nothing_starts_while_held_with_words_staff_understand(club):
    held(club)
    contact_list = list_with_contacts(3, organisation=club)
    draft = campaign_to(contact_list, organisation=club)
    paused = CampaignFactory(organisation=club, status=Campaign.Status.PAUSED)

    for start in (
        lambda: campaign_send_now(campaign_id=draft.pk),
        lambda: campaign_schedule(campaign_id=draft.pk, when=NOW + datetime.timedelta(days=1)),
        lambda: campaign_resume(campaign_id=paused.pk),
    ):
        with pytest.raises(CampaignError) as refused:
            start()
        words = str(refused.value)
        assert words.startswith("Sending is on hold for Riverside Rowing: 100 hard bounces from 1,000 messages")
        assert words.endswith("A site operator must review and lift the hold.")
    draft.refresh_from_db()
    paused.refresh_from_db()
    assert (draft.status, paused.status) == (Campaign.Status.DRAFT, Campaign.Status.PAUSED)


def test_a_test_send_while_held_sends_nothing_and_says_why(club, admin_client):
    held(club)
    draft = campaign_to(list_with_contacts(1, organisation=club), organisation=club)

    response = admin_client.post(
        reverse("compose:test_send", args=[draft.pk]), {"addresses": "ada@example.org"}, follow=True
    )

    assert "Nothing was sent: Sending is on hold for Riverside Rowing" in response.content.decode()
    assert not AuditEntry.objects.filter(summary__icontains="test").exists()


def test_a_single_message_by_the_api_while_held_is_refused_with_409(club):
    held(club)
    template = CampaignTemplate.objects.create(organisation=club, name="Entry", subject="Hi", html_body="<p>Hi</p>")
    _, raw = api_key_create(organisation=club, role=Role.SENDER, name="entries")

    response = KeyClient(raw).post(
        "/api/v1/messages", {"template": template.pk, "to": "ann@example.org"}, HTTP_IDEMPOTENCY_KEY="entry-1"
    )

    assert response.status_code == 409, response.content
    assert "Sending is on hold for Riverside Rowing" in response.json()["detail"]
    assert not Campaign.objects.filter(kind=Campaign.Kind.MESSAGE).exists()


def test_a_scheduled_campaign_of_a_held_organisation_goes_back_to_draft_at_its_time(club):
    contact_list = list_with_contacts(2, organisation=club)
    campaign = campaign_to(contact_list, organisation=club)
    campaign_schedule(campaign_id=campaign.pk, when=NOW + datetime.timedelta(hours=1))
    held(club)

    with time_machine.travel(NOW + datetime.timedelta(hours=2), tick=False):
        assert campaign_start_due(campaign_id=campaign.pk) is None

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT
    assert campaign.status_reason.startswith("Not sent at its time. Sending is on hold for Riverside Rowing")


# --- what people see ------------------------------------------------------------------------------


def test_administrators_see_why_on_the_organisation_page_and_the_campaign_pages(club, admin_client):
    campaign = sending(club)
    held(club)

    for path in (reverse("organisations:detail"), reverse("campaigns:detail", args=[campaign.pk])):
        page = admin_client.get(path).content.decode()
        assert 'data-testid="hold-notice"' in page, path
        assert "Sending is on hold for Riverside Rowing" in page
        assert "100 hard bounces from 1,000 messages with an outcome (10.0%)" in page


def test_the_operators_table_lists_held_organisations_first_then_the_worst_rates(club, other_club, operator_client):
    quiet = Organisation.objects.create(name="Quiet Quilters", slug="quiet")
    usage_add(organisation_id=quiet.pk, day=TODAY, sent=500, delivered=500)
    usage_add(organisation_id=other_club.pk, day=TODAY, sent=500, delivered=490, bounced_hard=10)  # 2%: not held
    held(club)

    response = operator_client.get(reverse("organisations:reputation"))

    assert response.status_code == 200
    page = response.content.decode()
    order = re.findall(r'<tbody data-organisation="([^"]+)"', page)
    assert order == ["riverside", "hilltop", "quiet"]
    assert "10.0%" in page and "2.0%" in page
    assert "Lift the hold" in page


def test_only_site_operators_see_the_table_and_lift_a_hold(club, admin_client, operator_client):
    campaign = sending(club)
    held(club)
    lift = reverse("organisations:reputation") + f"?lift={club.pk}"

    assert admin_client.get(reverse("organisations:reputation")).status_code == 403
    assert admin_client.post(lift).status_code == 403
    club.refresh_from_db()
    assert club.held_at is not None

    confirm = operator_client.get(lift)
    assert confirm.status_code == 200 and "Lift the sending hold on Riverside Rowing?" in confirm.content.decode()
    done = operator_client.post(lift, follow=True)

    assert "Its staff can now resume its paused campaigns" in done.content.decode()
    club.refresh_from_db()
    assert club.held_at is None and club.held_reason == ""
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.PAUSED  # staff resume it
    assert AuditEntry.objects.filter(organisation=club, summary__startswith="Lifted the sending hold").exists()
    # The evidence just reviewed does not hold it again; new bounces are judged afresh.
    assert organisation_reputation_enforce(organisation_id=club.pk) is False
    club.refresh_from_db()
    assert club.held_at is None
    campaign_resume(campaign_id=campaign.pk)


def test_after_a_lift_new_bounces_hold_again(club):
    held(club)

    assert organisation_hold_lift(organisation=club) is True
    usage_add(organisation_id=club.pk, day=TODAY, sent=300, delivered=270, bounced_hard=30)

    assert organisation_reputation_enforce(organisation_id=club.pk) is False  # nothing was sending
    club.refresh_from_db()
    assert club.held_at is not None
    assert club.held_reason.startswith("30 hard bounces from 300 messages with an outcome (10.0%)")
