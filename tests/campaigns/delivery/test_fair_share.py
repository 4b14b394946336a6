"""A fair share of the send rate: organisations sending at once split it by their weights, their
campaigns split their part, and a share nobody uses goes back at once.

The split itself in-process; the pacing with two real ``qcluster`` processes against the local SES.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from audiences.models import Contact, ContactList, Subscription
from campaigns.delivery.shares import campaign_share, campaign_waiting_for_worker, share_split
from campaigns.models import Campaign, Recipient
from campaigns.services import campaign_send_now
from organisations.models import Organisation
from tests.conftest import wait_until
from tests.factories import CampaignFactory


def test_two_organisations_split_the_rate_equally_and_each_splits_its_part_between_its_campaigns():
    shares = share_split([(1, 10, 1), (2, 20, 1), (3, 20, 1)])

    assert shares == {1: 0.5, 2: 0.25, 3: 0.25}


def test_weights_set_by_operators_split_the_rate_in_proportion():
    shares = share_split([(1, 10, 3), (2, 20, 1)])

    assert shares == {1: 0.75, 2: 0.25}
    assert sum(share_split([(n, n, n % 4 + 1) for n in range(1, 50)]).values()) == pytest.approx(1.0)


@pytest.mark.django_db
def test_only_campaigns_that_want_to_send_now_take_a_share(organisation):
    other = Organisation.objects.create(name="Hilltop Chess", slug="hilltop")
    mine = CampaignFactory(organisation=organisation, status=Campaign.Status.SENDING)
    now = timezone.now()
    wanting = CampaignFactory(organisation=other, status=Campaign.Status.SENDING, demand_at=now)
    CampaignFactory(organisation=other, status=Campaign.Status.SENDING, demand_at=now - timedelta(seconds=5))
    CampaignFactory(organisation=other, status=Campaign.Status.PAUSED, demand_at=now)
    CampaignFactory(organisation=other, status=Campaign.Status.SENDING, demand_at=now, kind=Campaign.Kind.MESSAGE)

    assert campaign_share(mine, weight=1) == 0.5

    Campaign.objects.filter(pk=wanting.pk).update(status=Campaign.Status.SENT)
    assert campaign_share(mine, weight=1) == 1.0  # alone again: the whole rate


# --- with real workers -------------------------------------------------------------------------

SEND_RATE = 100
BIG, SMALL = 4000, 300


def campaign_of(organisation: Organisation, size: int, name: str) -> Campaign:
    contact_list = ContactList.objects.create(organisation=organisation, name=name)
    contacts = Contact.objects.bulk_create(
        Contact(organisation=organisation, email=f"{name.lower()}{n}@example.org") for n in range(size)
    )
    Subscription.objects.bulk_create(Subscription(contact=contact, contact_list=contact_list) for contact in contacts)
    campaign = CampaignFactory(organisation=organisation, name=name)
    campaign.include_lists.add(contact_list)
    return campaign


def sent_times(campaign: Campaign) -> list:
    return sorted(
        Recipient.objects.filter(campaign=campaign, status=Recipient.Status.SENT).values_list("sent_at", flat=True)
    )


def rate_between(times: list, start, end) -> float:
    return sum(start <= t < end for t in times) / (end - start).total_seconds()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_small_campaign_beside_a_large_one_gets_half_the_rate_and_the_large_one_recovers_at_once(
    workers, ses, organisation
):
    club = Organisation.objects.create(name="Riverside Rowing", slug="riverside")
    big = campaign_of(organisation, BIG, "National")
    small = campaign_of(club, SMALL, "Club")
    # Two clusters of three workers: every campaign's dispatchers find a worker at once.
    workers.start(2, Q_WORKERS="3", SEND_DISPATCHERS="2", SEND_RATE=str(SEND_RATE), SEND_TASK_SECONDS="90")
    campaign_send_now(campaign_id=big.pk)
    wait_until(lambda: len(sent_times(big)) >= 500, timeout=60, message="the large campaign to send 500")

    small_started = timezone.now()
    campaign_send_now(campaign_id=small.pk)
    wait_until(
        lambda: Campaign.objects.filter(pk=small.pk, status=Campaign.Status.SENT).exists(),
        timeout=60,
        message="the small campaign to finish",
    )
    small_times = sent_times(small)
    small_end = small_times[-1]
    wait_until(lambda: timezone.now() > small_end + timedelta(seconds=5), timeout=10, message="5 s more")
    big_times = sent_times(big)
    assert Campaign.objects.get(pk=big.pk).status == Campaign.Status.SENDING, "the large one must still be sending"

    # Ratios against the large campaign's own rate just before (the machine's pace in this run, not a
    # figure that a loaded machine misses).
    alone_rate = rate_between(big_times, small_started - timedelta(seconds=4), small_started)
    assert alone_rate <= 1.1 * SEND_RATE
    # While both send (the small one's middle, away from its start-up and its tail): about half each.
    start, end = small_times[len(small_times) // 5], small_times[len(small_times) * 4 // 5]
    small_rate, big_rate = rate_between(small_times, start, end), rate_between(big_times, start, end)
    assert 0.35 <= small_rate / (small_rate + big_rate) <= 0.65, (small_rate, big_rate)
    assert small_rate + big_rate <= 1.1 * SEND_RATE
    # The small one took about twice as long as alone (equal split: 2.0x), not a queue's wait.
    assert (small_end - small_times[0]).total_seconds() <= 2.6 * SMALL / alone_rate
    # Within 2 s of the small one's end the large one is back at its pace before it.
    recovered = rate_between(big_times, small_end + timedelta(seconds=2), small_end + timedelta(seconds=4))
    assert recovered >= 0.8 * alone_rate, (recovered, alone_rate)


@pytest.mark.django_db
def test_a_sending_campaign_nobody_works_on_is_waiting_for_a_worker(organisation):
    now = timezone.now()
    mine = CampaignFactory(organisation=organisation, status=Campaign.Status.SENDING, heartbeat_at=now)
    starting = CampaignFactory(
        organisation=organisation, status=Campaign.Status.SENDING, started_at=now - timedelta(seconds=1)
    )
    assert not campaign_waiting_for_worker(exclude=mine.pk)  # just started: its start task may be running

    Campaign.objects.filter(pk=starting.pk).update(started_at=now - timedelta(seconds=5))
    assert campaign_waiting_for_worker(exclude=mine.pk)

    Campaign.objects.filter(pk=starting.pk).update(heartbeat_at=now)  # its dispatcher beats
    assert not campaign_waiting_for_worker(exclude=mine.pk)

    Campaign.objects.filter(pk=starting.pk).update(heartbeat_at=now - timedelta(hours=1))
    assert not campaign_waiting_for_worker(exclude=mine.pk)  # lost long ago: the engine tick's to restart


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_small_campaign_does_not_wait_for_the_workers_a_large_one_holds(workers, ses, organisation):
    club = Organisation.objects.create(name="Riverside Rowing", slug="riverside")
    big = campaign_of(organisation, BIG, "National")
    small = campaign_of(club, SMALL, "Club")
    # One cluster of two workers, both running the large campaign's dispatchers, whose tasks last
    # longer than the test: only handing a worker over lets the small one start.
    workers.start(1, Q_WORKERS="2", SEND_DISPATCHERS="2", SEND_RATE=str(SEND_RATE), SEND_TASK_SECONDS="120")
    campaign_send_now(campaign_id=big.pk)
    wait_until(lambda: len(sent_times(big)) >= 300, timeout=60, message="the large campaign to send 300")

    started = timezone.now()
    campaign_send_now(campaign_id=small.pk)
    wait_until(
        lambda: Campaign.objects.filter(pk=small.pk, status=Campaign.Status.SENT).exists(),
        timeout=40,
        message="the small campaign to finish",
    )

    small_times = sent_times(small)
    waited = (small_times[0] - started).total_seconds()
    assert waited < 15, waited  # not SEND_TASK_SECONDS (120 s) behind the large one (about 5 s here)
    assert Campaign.objects.get(pk=big.pk).status == Campaign.Status.SENDING
