"""Claims and faults with real ``manage.py qcluster`` workers sending to the SES stub.

The stub logs every message it accepts, so duplicates are counted, not guessed. Where a test runs
the engine tick itself it stands in for the tick of another machine, run more often than the
real schedules (twice a minute) so that the test stays short; ``recovery_seconds`` adds their
spacing and ``test_claims.py`` checks it at the defaults.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time

import pytest
from django.db import connection
from django.db.models import Count

from campaigns import tasks
from campaigns.models import Campaign, Recipient
from campaigns.services import campaign_send_now, dispatchers_start
from stats.models import CampaignStats
from tests.conftest import wait_until
from tests.factories import campaign_to, list_with_contacts

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def statuses(campaign: Campaign) -> dict[str, int]:
    rows = Recipient.objects.filter(campaign=campaign).values("status").annotate(n=Count("id"))
    return {row["status"]: row["n"] for row in rows}


def counters(campaign: Campaign) -> dict[str, int]:
    stats = CampaignStats.objects.get(campaign=campaign)
    return {"sent": stats.sent, "failed": stats.failed, "skipped": stats.skipped}


def is_sent(campaign: Campaign) -> bool:
    return Campaign.objects.filter(pk=campaign.pk, status=Campaign.Status.SENT).exists()


def duplicates(received: collections.Counter) -> int:
    return sum(count - 1 for count in received.values())


@contextlib.contextmanager
def engine_ticking(every: float = 1.0):
    """Run the engine tick every ``every`` seconds in a thread, as another machine's would."""
    stop = threading.Event()

    def tick() -> None:
        try:
            while not stop.wait(every):
                tasks.engine_tick()
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=tick, name="engine-tick", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=60)


def test_slow_calls_past_the_stale_limit_are_sent_once_and_counted_once(clusters, stub_ses, settings):
    total, stale = 200, 10
    settings.SEND_STALE_SECONDS = stale  # the tick run below requeues any claim 10 s without a heartbeat
    stub_ses.set_timing(slow_fraction=0.1, slow_seconds=stale + 2)  # SES accepts them, 12 s later
    campaign = campaign_to(list_with_contacts(total))
    clusters.start(
        2, AWS_SES_ENDPOINT_URL=stub_ses.url, SEND_RATE="50", SEND_STALE_SECONDS=str(stale), SEND_DISPATCHERS="4"
    )

    campaign_send_now(campaign_id=campaign.pk)
    with engine_ticking():
        wait_until(lambda: is_sent(campaign), timeout=45, message="the campaign to be sent")

    assert len(stub_ses.slow) >= total // 10
    received = stub_ses.per_address()
    assert len(received) == total, "a recipient was lost"
    assert duplicates(received) == 0, f"{duplicates(received)} messages sent twice without any crash"
    assert statuses(campaign) == {"sent": total}
    assert counters(campaign) == {"sent": total, "failed": 0, "skipped": 0}


def test_two_percent_of_calls_hanging_keep_the_rate_above_80_percent(clusters, stub_ses):
    rate, total, read_timeout = 50, 500, 5
    # Hanging past the read timeout: the engine abandons the call and retries, SES accepts both.
    stub_ses.set_timing(hang_fraction=0.02, hang_seconds=read_timeout + 1)
    campaign = campaign_to(list_with_contacts(total))
    clusters.start(
        1,
        AWS_SES_ENDPOINT_URL=stub_ses.url,
        SEND_RATE=str(rate),
        SES_READ_TIMEOUT=str(read_timeout),  # 15 s by default; shorter keeps the test short
        SEND_TASK_SECONDS="60",
    )

    campaign_send_now(campaign_id=campaign.pk)
    wait_until(lambda: is_sent(campaign), timeout=45, message="the campaign to be sent")
    hung = [address for destinations in stub_ses.hung for address in destinations]
    wait_until(lambda: stub_ses.state.accepted >= total + len(hung), timeout=10, message="the hung calls to end")

    arrivals = sorted(message.at for message in stub_ses.received)
    start = arrivals[0] + 1.0  # the steady state: past the first second, before the last
    window = [at for at in arrivals if start <= at < start + 8.0]
    measured = len(window) / 8.0
    per_second = sorted(collections.Counter(int(at - arrivals[0]) for at in arrivals).items())
    print(f"rate with 2% of calls hanging: {measured:.1f} msg/s of {rate}; abandoned calls: {len(hung)}")
    assert measured >= 0.8 * rate, f"{measured:.1f} msg/s; calls per second: {per_second}"
    assert len(hung) >= total // 50
    # Each abandoned call is a duplicate by nature (SES accepted it after the client gave up);
    # nothing else is.
    received = stub_ses.per_address()
    assert len(received) == total
    assert {address for address, count in received.items() if count > 1} == set(hung)
    assert duplicates(received) == len(hung)
    assert statuses(campaign) == {"sent": total}
    assert counters(campaign) == {"sent": total, "failed": 0, "skipped": 0}


def test_a_killed_workers_claims_are_requeued_once_their_heartbeats_are_stale(clusters, stub_ses):
    # The workers' SEND_STALE_SECONDS comes from its default formula (connect + read timeout
    # + 10 s), with short timeouts so that the test stays short: 15 s instead of 30 s.
    connect, read = 1, 4
    stale = connect + read + 10
    heartbeat = stale / 8
    total = 300
    campaign = campaign_to(list_with_contacts(total))
    env = {
        "AWS_SES_ENDPOINT_URL": stub_ses.url,
        "SEND_RATE": "30",
        "SES_CONNECT_TIMEOUT": str(connect),
        "SES_READ_TIMEOUT": str(read),
    }
    (first,) = clusters.start(1, **env)
    campaign_send_now(campaign_id=campaign.pk)
    wait_until(lambda: statuses(campaign).get("sent", 0) >= 30, timeout=60, message="sending to get going")

    clusters.kill(first)  # SIGKILL to the whole process group, mid-send
    killed = time.monotonic()
    time.sleep(0.5)  # calls the dead cluster made may still be answered
    held = set(Recipient.objects.filter(campaign=campaign, status="sending").values_list("email", flat=True))
    answered_not_recorded = stub_ses.state.accepted - statuses(campaign).get("sent", 0)
    assert held, "the killed cluster held no claim"
    # Another cluster, with a dispatcher working on the campaign (the engine tick starts one when
    # it finds claims that missed their heartbeats): it requeues them once they are stale.
    clusters.start(1, **env)
    dispatchers_start(campaign_id=campaign.pk, count=1)

    wait_until(
        lambda: not Recipient.objects.filter(campaign=campaign, email__in=held, status="sending").exists(),
        timeout=stale + 15,
        interval=0.1,
        message="the dead cluster's claims to be requeued",
    )
    recovered_in = time.monotonic() - killed
    print(f"claims of a killed cluster requeued after {recovered_in:.1f} s (SEND_STALE_SECONDS={stale})")
    assert stale - heartbeat - 1 <= recovered_in <= stale + 2 * heartbeat + 1
    wait_until(lambda: is_sent(campaign), timeout=30, message="the campaign to be sent")

    received = stub_ses.per_address()
    assert len(received) == total, "a recipient was lost"
    # Only messages SES accepted that the dead cluster had not recorded yet are sent twice.
    twice = {address for address, count in received.items() if count > 1}
    assert twice <= held
    assert duplicates(received) <= answered_not_recorded
    assert statuses(campaign) == {"sent": total}
    assert counters(campaign) == {"sent": total, "failed": 0, "skipped": 0}


def cut_the_workers_off() -> str:
    """PostgreSQL: end every other session on the test database (the workers'). SQLite cannot end
    another process's connection: hold its write lock for a few seconds instead."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            return f"{cursor.fetchone()[0]} sessions ended"
    with connection.cursor() as cursor:
        cursor.execute("BEGIN IMMEDIATE")
        time.sleep(3)
        cursor.execute("COMMIT")
    return "write lock held for 3 s"


def test_a_dropped_database_connection_loses_no_answer_and_resends_nothing(clusters, stub_ses):
    total = 150
    stub_ses.set_timing(latency=0.2)  # calls are in flight at any moment
    campaign = campaign_to(list_with_contacts(total))
    clusters.start(1, AWS_SES_ENDPOINT_URL=stub_ses.url, SEND_RATE="20")
    campaign_send_now(campaign_id=campaign.pk)
    wait_until(lambda: statuses(campaign).get("sent", 0) >= 40, timeout=60, message="sending to get going")

    print(f"cut: {cut_the_workers_off()}")
    wait_until(lambda: is_sent(campaign), timeout=60, message="the campaign to be sent")

    received = stub_ses.per_address()
    assert len(received) == total, "a recipient was lost"
    assert duplicates(received) == 0, "messages SES had accepted were sent again"
    by_address = {message.destinations[0]: message.message_id for message in stub_ses.received}
    recorded = dict(Recipient.objects.filter(campaign=campaign).values_list("email", "ses_message_id"))
    assert recorded == by_address, "an SES message id was lost"
    assert statuses(campaign) == {"sent": total}
    assert counters(campaign) == {"sent": total, "failed": 0, "skipped": 0}


def busiest_window(arrivals: list[float], seconds: float) -> int:
    """The most messages that reached SES within any ``seconds`` (windows start at an arrival)."""
    busiest, end = 0, 0
    for start_index, start in enumerate(arrivals):
        while end < len(arrivals) and arrivals[end] < start + seconds:
            end += 1
        busiest = max(busiest, end - start_index)
    return busiest


def test_what_reaches_ses_from_a_cold_start_stays_within_the_rate_and_one_slot(clusters, stub_ses):
    # Two clusters of two dispatchers each start cold together: the first slots' messages used to
    # leave late (cold SES client, busy threads) and then catch up, 123-128 in one second at 100/s.
    rate, total = 100, 600
    stub_ses.set_timing(latency=0.02)
    campaign = campaign_to(list_with_contacts(total))
    clusters.start(2, AWS_SES_ENDPOINT_URL=stub_ses.url, SEND_RATE=str(rate), SEND_DISPATCHERS="4")

    campaign_send_now(campaign_id=campaign.pk)
    wait_until(lambda: is_sent(campaign), timeout=45, message="the campaign to be sent")

    arrivals = sorted(message.at for message in stub_ses.received)
    chunk = rate // 10  # the limiter's slot: a tenth of a second of the rate
    first_second = sum(at < arrivals[0] + 1.0 for at in arrivals)
    # The start is no burstier than the limiter's own bound (rate x W + one slot); any later
    # window may also hold messages that left up to a slot late (engine.LATE_SECONDS).
    assert first_second <= rate + chunk, f"{first_second} messages in the first second"
    assert busiest_window(arrivals, 1.0) <= rate + 2 * chunk
    assert busiest_window(arrivals, 5.0) <= 5 * rate + 2 * chunk
    assert len(stub_ses.per_address()) == total
