"""Quotas per organisation: refused before anything is sent when a campaign cannot fit, a pause with
the reason when the quota is reached while sending (resumed by itself when it renews), test sends and
single messages counted and refused, and who sets them.

In-process against the local SES; ``test_a_quota_holds_exactly_with_several_worker_clusters`` with
real ``qcluster`` processes.
"""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.db import transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from api.keys import api_key_create
from campaigns import tasks
from campaigns.delivery.engine import campaign_dispatch
from campaigns.models import Campaign, CampaignTemplate, Recipient
from campaigns.quotas import claim_within_quota, quota_room
from campaigns.services import CampaignError, campaign_resume, campaign_schedule, campaign_send_now
from campaigns.snapshot import audience_snapshot
from organisations.models import AuditEntry, Membership, Organisation, Role
from stats.counters import usage_add
from tests.conftest import wait_until
from tests.factories import CampaignFactory, campaign_to, list_with_contacts

# 20 November 2026, noon (TIME_ZONE is UTC in the tests): the monthly quota renews on 1 December.
NOON = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)


def with_quotas(organisation: Organisation, *, daily: int | None = None, monthly: int | None = None) -> Organisation:
    Organisation.objects.filter(pk=organisation.pk).update(daily_quota=daily, monthly_quota=monthly)
    organisation.refresh_from_db()
    return organisation


@pytest.fixture
def frozen():
    with time_machine.travel(NOON, tick=True):
        yield


def sending(campaign: Campaign) -> Campaign:
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.SENDING, started_at=timezone.now())
    audience_snapshot(campaign_id=campaign.pk)
    return Campaign.objects.get(pk=campaign.pk)


def sent(campaign: Campaign) -> int:
    return Recipient.objects.filter(campaign=campaign, status=Recipient.Status.SENT).count()


# --- before anything is sent --------------------------------------------------------------------


@pytest.mark.django_db
def test_a_campaign_that_cannot_fit_this_month_is_refused_with_the_numbers(organisation, frozen):
    with_quotas(organisation, monthly=10)
    usage_add(organisation_id=organisation.pk, sent=6, test_sent=1)  # 3 left
    campaign = campaign_to(list_with_contacts(5))

    with pytest.raises(CampaignError) as refusal:
        campaign_send_now(campaign_id=campaign.pk)

    assert str(refusal.value).startswith(
        "Not sent: 5 recipients; 3 messages left this month; the quota renews on 1 December."
    )
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.DRAFT


@pytest.mark.django_db
def test_the_tighter_quota_speaks_and_a_campaign_that_fits_goes(
    organisation, frozen, django_capture_on_commit_callbacks
):
    with_quotas(organisation, daily=4, monthly=1_000)
    campaign = campaign_to(list_with_contacts(5))

    with pytest.raises(CampaignError, match="5 recipients; 4 messages left today; the quota renews at midnight"):
        campaign_send_now(campaign_id=campaign.pk)

    with_quotas(organisation, daily=5, monthly=1_000)
    with django_capture_on_commit_callbacks(execute=False):
        campaign_send_now(campaign_id=campaign.pk)
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.SENDING


@pytest.mark.django_db
def test_scheduling_is_refused_only_for_a_campaign_larger_than_the_quota_itself(organisation, frozen):
    with_quotas(organisation, monthly=4)
    usage_add(organisation_id=organisation.pk, sent=4)  # used up now, but the quota renews before the send
    campaign = campaign_to(list_with_contacts(4))
    when = timezone.now() + dt.timedelta(days=15)

    campaign_schedule(campaign_id=campaign.pk, when=when)
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.SCHEDULED

    larger = campaign_to(list_with_contacts(5, name="Everyone"))
    with pytest.raises(CampaignError, match="5 recipients, but the organisation may send 4 messages a month"):
        campaign_schedule(campaign_id=larger.pk, when=when)


@pytest.mark.django_db
def test_test_messages_count_and_are_refused_when_they_do_not_fit(organisation, staff_client, ses, frozen):
    with_quotas(organisation, daily=3)
    campaign = CampaignFactory(organisation=organisation)
    url = reverse("compose:test_send", args=[campaign.pk])

    staff_client.post(url, {"addresses": "a@example.org, b@example.org"})
    assert quota_room(organisation.pk).left == 1  # the two test messages counted

    response = staff_client.post(url, {"addresses": "c@example.org, d@example.org"}, follow=True)

    assert "Nothing was sent: 2 test messages; 1 messages left today" in response.content.decode()
    assert len(ses.sent()) == 2


@pytest.mark.django_db
def test_a_single_message_beyond_the_quota_answers_429_until_it_renews(organisation, frozen):
    with_quotas(organisation, daily=2)
    usage_add(organisation_id=organisation.pk, sent=2)
    template = CampaignTemplate.objects.create(
        organisation=organisation, name="Receipt", subject="Receipt", html_body="<p>x</p>"
    )
    _, raw = api_key_create(organisation=organisation, role=Role.SENDER, name="Site")

    response = Client().post(
        "/api/v1/messages",
        {"template": template.pk, "to": "ann@example.org"},
        content_type="application/json",
        headers={"Authorization": f"Bearer {raw}", "Idempotency-Key": "receipt-1"},
    )

    assert response.status_code == 429
    assert int(response["Retry-After"]) == 12 * 3600  # midnight
    assert "quota of 2 messages a day is used up" in response.json()["detail"]
    assert not Campaign.objects.filter(kind=Campaign.Kind.MESSAGE).exists()


# --- while sending ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_claim_never_takes_more_than_the_room_left(organisation, frozen):
    with_quotas(organisation, monthly=7)
    usage_add(organisation_id=organisation.pk, sent=3)
    campaign = sending(campaign_to(list_with_contacts(10)))

    first = claim_within_quota(campaign_id=campaign.pk, organisation_id=organisation.pk, limit=3)
    second = claim_within_quota(campaign_id=campaign.pk, organisation_id=organisation.pk, limit=10)
    third = claim_within_quota(campaign_id=campaign.pk, organisation_id=organisation.pk, limit=10)

    assert (len(first.ids), len(second.ids)) == (3, 1)  # the 3 in flight count as sent
    assert third.left == 0 and third.period == "this month"


@pytest.mark.django_db
def test_a_campaign_reaching_the_quota_pauses_and_resumes_by_itself_when_it_renews(organisation, ses, frozen):
    with_quotas(organisation, daily=4)
    campaign = sending(campaign_to(list_with_contacts(6)))

    assert campaign_dispatch(campaign_id=campaign.pk, seconds=20) == "stopped"

    campaign.refresh_from_db()
    assert sent(campaign) == 4 and len(ses.sent()) == 4
    assert campaign.status == Campaign.Status.PAUSED
    assert "quota of 4 messages a day is used up" in campaign.status_reason
    assert campaign.resume_at == dt.datetime(2026, 11, 21, tzinfo=dt.UTC)
    with pytest.raises(CampaignError, match="still used up"):
        campaign_resume(campaign_id=campaign.pk)

    assert tasks.engine_tick()["quota_resumed"] == 0  # not yet
    with time_machine.travel(dt.datetime(2026, 11, 21, 0, 0, 30, tzinfo=dt.UTC), tick=True):
        with transaction.atomic():
            assert tasks.engine_tick()["quota_resumed"] == 1
        assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.SENDING
        assert campaign_dispatch(campaign_id=campaign.pk, seconds=20) == "finished"
    assert sent(campaign) == 6


@pytest.mark.django_db
def test_raising_the_quota_lets_staff_resume_by_hand(organisation, ses, frozen, django_capture_on_commit_callbacks):
    with_quotas(organisation, monthly=2)
    campaign = sending(campaign_to(list_with_contacts(3)))
    assert campaign_dispatch(campaign_id=campaign.pk, seconds=20) == "stopped"

    with_quotas(organisation, monthly=10)
    with django_capture_on_commit_callbacks(execute=False):
        campaign_resume(campaign_id=campaign.pk)

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SENDING and campaign.resume_at is None


# --- who sets them ------------------------------------------------------------------------------


@pytest.fixture
def family(django_user_model, organisation):
    club = Organisation.objects.create(name="Riverside Rowing", slug="riverside", parent=organisation)
    users = {}
    for name, where in (("parent.admin", organisation), ("club.admin", club)):
        users[name] = django_user_model.objects.create_user(username=name, password="correct-horse-battery")
        Membership.objects.create(user=users[name], organisation=where, role=Role.ADMINISTRATOR)
    return club, users


@pytest.mark.django_db
def test_the_parents_administrators_set_a_clubs_quotas_and_it_is_audited(client, family):
    club, users = family
    client.force_login(users["parent.admin"])
    url = reverse("organisations:quota", args=[club.pk])

    assert client.get(url).status_code == 200
    response = client.post(url, {"daily_quota": "500", "monthly_quota": "8000"})

    assert response.status_code == 302
    club.refresh_from_db()
    assert (club.daily_quota, club.monthly_quota) == (500, 8000)
    entry = AuditEntry.objects.filter(action=AuditEntry.Action.ORGANISATION, organisation=club).latest("pk")
    assert "Messages per day" in entry.summary and "Messages per month" in entry.summary
    usage = client.get(reverse("organisations:usage")).content.decode()
    assert "500 a day (500 left today); 8,000 a month (8,000 left this month)" in usage


@pytest.mark.django_db
def test_a_club_cannot_set_its_own_quotas_nor_its_parents(client, family, organisation):
    club, users = family
    client.force_login(users["club.admin"])
    client.post(reverse("organisations:switch"), {"organisation": club.pk})

    assert client.post(reverse("organisations:quota", args=[club.pk]), {"daily_quota": "9"}).status_code == 404
    assert client.get(reverse("organisations:quota", args=[organisation.pk])).status_code == 404
    club.refresh_from_db()
    assert club.daily_quota is None
    assert "Change the quotas" not in client.get(reverse("organisations:usage")).content.decode()


@pytest.mark.django_db
def test_a_site_operator_sets_any_organisations_quotas(client, django_user_model, organisation):
    operator = django_user_model.objects.create_superuser(username="op", password="correct-horse-battery")
    client.force_login(operator)

    response = client.post(reverse("organisations:quota", args=[organisation.pk]), {"monthly_quota": "100"})

    assert response.status_code == 302
    organisation.refresh_from_db()
    assert organisation.monthly_quota == 100
    refused = client.post(reverse("organisations:quota", args=[organisation.pk]), {"monthly_quota": "-1"})
    assert refused.status_code == 400


# --- with real workers ----------------------------------------------------------------------------


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_quota_holds_exactly_with_several_worker_clusters(workers, ses, organisation):
    with_quotas(organisation, daily=150)
    other = campaign_to(list_with_contacts(100, name="Juniors"))
    campaign = campaign_to(list_with_contacts(200, name="Seniors"))
    # Two clusters, two campaigns of one organisation: every dispatcher claims against the same quota.
    workers.start(2, Q_WORKERS="2", SEND_DISPATCHERS="2", SEND_RATE="200")
    for each in (campaign, other):
        Campaign.objects.filter(pk=each.pk).update(status=Campaign.Status.SENDING, started_at=timezone.now())
        tasks.campaign_start(each.pk)  # the snapshot here, the dispatchers in the workers

    wait_until(
        lambda: not Campaign.objects.filter(pk__in=[campaign.pk, other.pk], status=Campaign.Status.SENDING).exists(),
        timeout=60,
        message="both campaigns to stop sending",
    )

    assert sent(campaign) + sent(other) == 150
    assert len(ses.sent()) == 150
    assert not Recipient.objects.filter(status=Recipient.Status.SENDING).exists()
    for each in (campaign, other):
        each.refresh_from_db()
        if sent(each) < Recipient.objects.filter(campaign=each).count():  # the rest waits for the quota
            assert each.status == Campaign.Status.PAUSED and "quota of 150 messages a day" in each.status_reason
            assert Recipient.objects.filter(campaign=each, status=Recipient.Status.QUEUED).exists()
        else:
            assert each.status == Campaign.Status.SENT
