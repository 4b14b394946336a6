"""Claims own the rows they finish: tokens, heartbeats, conditional writes, and what survives faults.

In-process, against the SES stub; ``test_claims_workers.py`` repeats the faults with real workers.
"""

from __future__ import annotations

import collections
import importlib
import threading
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone
from django_q.brokers import get_broker
from post_office.models import Email

from campaigns import tasks
from campaigns.delivery.claims import (
    TICK_SECONDS,
    campaigns_with_silent_claims,
    claim,
    heartbeat,
    heartbeat_interval,
    reclaim_stale,
    recovery_seconds,
)
from campaigns.delivery.engine import _record, campaign_dispatch, claim_size
from campaigns.delivery.errors import Outcome
from campaigns.models import Campaign, Recipient
from campaigns.snapshot import audience_snapshot
from common import shutdown
from stats.models import CampaignStats
from tests.conftest import wait_until
from tests.factories import campaign_to, list_with_contacts
from tracking.recount import stats_repair


def sending_campaign(size: int) -> Campaign:
    campaign = campaign_to(list_with_contacts(size))
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.SENDING, started_at=timezone.now())
    audience_snapshot(campaign_id=campaign.pk)
    return Campaign.objects.get(pk=campaign.pk)


def statuses(campaign: Campaign) -> dict[str, int]:
    return dict(collections.Counter(Recipient.objects.filter(campaign=campaign).values_list("status", flat=True)))


def counters(campaign: Campaign) -> dict[str, int]:
    stats = CampaignStats.objects.get(campaign=campaign)
    return {"sent": stats.sent, "failed": stats.failed, "skipped": stats.skipped}


def go_stale(ids: list[int]) -> None:
    """As if the claim's owner had stopped beating long ago."""
    Recipient.objects.filter(id__in=ids).update(claimed_at=timezone.now() - timedelta(hours=1))


def sent(recipient: Recipient, token: str, message_id: str) -> Outcome:
    return Outcome(recipient, "sent", message_id=message_id, token=token, context={})


@pytest.mark.django_db
def test_it_never_writes_a_result_over_a_recipient_whose_claim_moved_on(caplog):
    campaign = sending_campaign(1)
    slow = claim(campaign_id=campaign.pk, limit=1)
    go_stale(slow.ids)
    reclaim_stale()
    fresh = claim(campaign_id=campaign.pk, limit=1)
    recipient = Recipient.objects.get()
    assert fresh.ids == slow.ids and fresh.token != slow.token

    # The new owner's answer comes first; then the slow owner's, for the same recipient.
    assert _record(campaign, [sent(recipient, fresh.token, "new-owner-id")])
    assert _record(campaign, [sent(recipient, slow.token, "slow-owner-id")])

    recipient.refresh_from_db()
    assert (recipient.status, recipient.ses_message_id) == ("sent", "new-owner-id")
    assert counters(campaign)["sent"] == 1  # moved by the row written, not by the results handed in
    assert list(Email.objects.values_list("message_id", flat=True)) == ["new-owner-id"]
    assert "slow-owner-id" in caplog.text  # the duplicate's SES id is not lost
    assert stats_repair(campaign_id=campaign.pk) == {}


@pytest.mark.django_db
def test_it_records_what_ses_accepted_for_a_claim_requeued_but_not_claimed_again():
    campaign = sending_campaign(2)
    cut_off = claim(campaign_id=campaign.pk, limit=2)
    go_stale(cut_off.ids)
    reclaim_stale()  # the owner was only cut off from the database; nobody has claimed them since
    first, second = Recipient.objects.order_by("id")

    assert _record(campaign, [sent(first, cut_off.token, "late-id")])

    assert statuses(campaign) == {"sent": 1, "queued": 1}
    assert Recipient.objects.get(pk=first.pk).ses_message_id == "late-id"
    assert counters(campaign)["sent"] == 1
    again = claim(campaign_id=campaign.pk, limit=2)
    assert again.ids == [second.pk]  # the recorded one is not sent again


@pytest.mark.django_db
def test_a_heartbeat_renews_the_claim_and_reports_what_it_lost():
    campaign = sending_campaign(3)
    mine = claim(campaign_id=campaign.pk, limit=3)
    go_stale(mine.ids)

    assert heartbeat(tokens=[mine.token]) == {mine.token: set(mine.ids)}
    assert reclaim_stale(older_than=timedelta(minutes=5)) == {}  # renewed: not stale any more

    go_stale(mine.ids[:1])
    reclaim_stale(older_than=timedelta(minutes=5))
    assert heartbeat(tokens=[mine.token]) == {mine.token: set(mine.ids[1:])}


@pytest.mark.django_db
def test_the_defaults_requeue_a_dead_dispatchers_claims_within_a_minute(settings):
    # SEND_STALE_SECONDS defaults to one whole SES call (connect + read timeout) plus 10 s.
    assert (settings.SES_CONNECT_TIMEOUT, settings.SES_READ_TIMEOUT, settings.SEND_STALE_SECONDS) == (5, 15, 30)
    assert heartbeat_interval() * 3 <= settings.SEND_STALE_SECONDS
    assert recovery_seconds() <= 60


@pytest.mark.django_db
def test_the_engine_tick_runs_twice_a_minute_half_a_minute_apart(engine_tick_schedule):
    from django.apps import apps
    from django_q.models import Schedule

    migration = importlib.import_module("campaigns.migrations.0007_recipient_claim_token")
    migration.create_half_minute_tick(apps, None)

    first, second = Schedule.objects.filter(func="campaigns.tasks.engine_tick").order_by("next_run")
    assert (first.name, second.name) == ("engine-tick", "engine-tick-2")
    assert (first.minutes, second.minutes) == (1, 1)
    assert second.next_run - first.next_run == timedelta(seconds=TICK_SECONDS) == timedelta(seconds=30)


@pytest.mark.django_db
def test_the_tick_starts_a_dispatcher_for_claims_that_missed_their_heartbeats():
    campaign = sending_campaign(2)
    held = claim(campaign_id=campaign.pk, limit=2)
    silent_since = timezone.now() - timedelta(seconds=3 * heartbeat_interval())
    Recipient.objects.filter(id__in=held.ids).update(claimed_at=silent_since)
    Campaign.objects.filter(pk=campaign.pk).update(heartbeat_at=timezone.now())
    assert campaigns_with_silent_claims() == []  # the campaign's dispatcher is beating: it requeues them
    Campaign.objects.filter(pk=campaign.pk).update(heartbeat_at=silent_since)
    broker = get_broker()
    broker.purge_queue()

    assert campaigns_with_silent_claims() == [campaign.pk]
    tasks.engine_tick()

    assert broker.queue_size() == 1  # one dispatcher, which requeues them the moment they are stale
    assert statuses(campaign) == {"sending": 2}  # not stale yet: their owner may still be alive
    broker.purge_queue()


@pytest.mark.django_db(transaction=True)
def test_one_hung_call_does_not_hold_up_the_others_and_its_duplicate_is_counted(stub_ses, settings):
    settings.SES_READ_TIMEOUT = 2  # short, to keep the test short; the hung call outlives it
    settings.SEND_RATE = 50  # the limiter lets five messages go at a time
    stub_ses.set_timing(hang_fraction=1 / 20, hang_seconds=3)
    campaign = sending_campaign(20)

    assert campaign_dispatch(campaign_id=campaign.pk, seconds=30) == "finished"

    hung = [address for destinations in stub_ses.hung for address in destinations]
    assert len(hung) == 1
    others = [message for message in stub_ses.received if message.destinations != hung]
    assert len(others) == 19
    first_call = min(message.at for message in stub_ses.received)
    assert max(message.accepted_at for message in others) - first_call < 1.0, "the others waited for the hung call"
    assert statuses(campaign) == {"sent": 20}
    assert counters(campaign)["sent"] == 20
    # The abandoned call: SES accepted it after the client gave up, so that recipient has it twice.
    wait_until(lambda: stub_ses.per_address()[hung[0]] == 2, timeout=5, message="the hung call to end")
    received = stub_ses.per_address()
    assert {address for address, count in received.items() if count > 1} == set(hung)
    assert sum(received.values()) == 20 + len(hung)


def break_the_connection(backend_pid: int | None, sqlite_cut: threading.Event) -> None:
    """Cut the dispatcher's own database connection from outside, as a failover would."""
    if backend_pid is not None:  # PostgreSQL: the server ends the session
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [backend_pid])
        connections["default"].close()
    else:  # SQLite has no server: the dispatcher's next query finds its connection closed
        sqlite_cut.set()


def close_when_cut(sqlite_cut: threading.Event):
    """An execute wrapper that closes the SQLite connection under the query, in the query's own thread.

    Closing a sqlite3 connection from another thread while its owner is inside a call is a
    use-after-free in CPython's sqlite3 module (a segmentation fault, not an error), so the cut is
    made by the thread that owns the connection, just before its next statement.
    """

    def wrapper(execute, sql, params, many, context):
        if sqlite_cut.is_set():
            sqlite_cut.clear()
            context["connection"].connection.close()
        return execute(sql, params, many, context)

    return wrapper


@pytest.mark.django_db(transaction=True)
def test_it_records_every_answer_when_the_database_drops_its_connection_mid_send(stub_ses, caplog):
    total = 30
    campaign = sending_campaign(total)
    connection.ensure_connection()
    backend_pid = None
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            backend_pid = cursor.fetchone()[0]
    broken = threading.Event()
    sqlite_cut = threading.Event()

    def on_call(number: int) -> None:
        if number == 10 and not broken.is_set():  # SES has answered nine: their results are not written yet
            break_the_connection(backend_pid, sqlite_cut)
            broken.set()

    stub_ses.state.on_call = on_call

    with connection.execute_wrapper(close_when_cut(sqlite_cut)):
        assert campaign_dispatch(campaign_id=campaign.pk, seconds=60) == "finished"

    assert broken.is_set()
    assert "the database connection failed" in caplog.text
    received = stub_ses.per_address()
    assert len(received) == total and set(received.values()) == {1}, "a message was sent twice"
    by_address = {message.destinations[0]: message.message_id for message in stub_ses.received}
    recorded = dict(Recipient.objects.filter(campaign=campaign).values_list("email", "ses_message_id"))
    assert recorded == by_address  # every SES message id kept
    assert statuses(campaign) == {"sent": total}
    assert counters(campaign) == {"sent": total, "failed": 0, "skipped": 0}
    assert Email.objects.count() == total


@pytest.mark.django_db(transaction=True)
def test_a_stopping_worker_records_its_calls_releases_the_rest_and_hands_over(stub_ses, settings):
    settings.SEND_RATE = 20  # a claim holds two seconds of it: most of it is unsent at the stop
    campaign = sending_campaign(40)
    broker = get_broker()
    broker.purge_queue()
    stub_ses.state.on_call = lambda number: number == 5 and shutdown.request_stop()
    try:
        assert campaign_dispatch(campaign_id=campaign.pk, seconds=30) == "stopped"
    finally:
        shutdown._stop.clear()

    counts = statuses(campaign)
    assert counts.get("sending", 0) == 0, "claims left behind"
    assert counts["sent"] == stub_ses.calls >= 5  # the call in hand finished and was recorded
    assert counts["queued"] == 40 - counts["sent"]
    assert set(Recipient.objects.filter(status="queued").values_list("attempts", flat=True)) == {0}
    assert counters(campaign)["sent"] == counts["sent"]
    assert broker.queue_size() == 1  # a new dispatch task takes its place, for another cluster
    broker.purge_queue()


@pytest.mark.django_db
def test_a_claim_never_hands_out_a_recipient_twice():
    campaign = sending_campaign(5)

    first = claim(campaign_id=campaign.pk, limit=3)
    second = claim(campaign_id=campaign.pk, limit=3)

    assert len(first.ids) == 3 and len(second.ids) == 2
    assert not set(first.ids) & set(second.ids)
    assert first.token != second.token
    assert not claim(campaign_id=campaign.pk, limit=3)


@pytest.mark.django_db
def test_stale_in_flight_recipients_are_requeued_but_fresh_ones_are_not():
    campaign = sending_campaign(4)
    claimed = claim(campaign_id=campaign.pk, limit=4).ids
    Recipient.objects.filter(pk__in=claimed[:2]).update(claimed_at=timezone.now() - timedelta(minutes=10))

    assert reclaim_stale(older_than=timedelta(minutes=5)) == {campaign.pk: 2}

    assert statuses(campaign) == {"queued": 2, "sending": 2}


def test_a_claim_holds_at_most_two_seconds_of_the_global_rate(settings):
    settings.SEND_BATCH_SIZE = 200
    assert claim_size(1.0) == 2  # SES sandbox: two dispatchers still share the work
    assert claim_size(14.0) == 28
    assert claim_size(5000.0) == 200
