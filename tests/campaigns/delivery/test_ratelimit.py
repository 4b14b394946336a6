"""One send rate for the whole installation, enforced across processes (database or Redis clock)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import pytest

from campaigns.delivery import ratelimit
from campaigns.models import Campaign
from campaigns.services import campaign_send_now
from tests.conftest import ROOT, database_url_for_subprocess, wait_until
from tests.factories import campaign_to, list_with_contacts

HAMMER = """
import json, django
django.setup()
from campaigns.delivery import ratelimit
print(json.dumps([ratelimit.reserve(1, rate={rate}) for _ in range({count})]))
"""


@pytest.mark.django_db(transaction=True)
def test_reservations_from_several_processes_never_overlap(settings):
    import os

    ratelimit.limiter_reset()
    rate, count = 200.0, 150
    env = {**os.environ, "COBALT_TESTING": "1", "DATABASE_URL": database_url_for_subprocess()}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", HAMMER.format(rate=rate, count=count)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    starts = sorted(start for process in processes for start in json.loads(process.communicate(timeout=60)[0]))

    assert len(starts) == 3 * count
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    # Every slot is 1/rate long and no two processes were handed the same or overlapping slots.
    assert min(gaps) >= 1 / rate - 1e-6


@pytest.mark.django_db
def test_the_rate_defaults_to_the_ses_max_send_rate(stub_ses, settings):
    settings.SEND_RATE = None
    stub_ses.state.max_send_rate = 14
    ratelimit._quota_cache = None
    try:
        assert ratelimit.send_rate() == 14
        assert ratelimit.chunk_size(14, 200) == 1
    finally:
        ratelimit._quota_cache = None


def test_chunks_stay_a_tenth_of_a_second_so_bursts_stay_small():
    assert ratelimit.chunk_size(1000, 200) == 100
    assert ratelimit.chunk_size(100000, 200) == 200
    assert ratelimit.chunk_size(5, 200) == 1


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_four_worker_processes_never_exceed_the_global_rate(clusters, stub_ses):
    # The issue's own measure: no 10-second window above the rate by more than 5%.
    rate, total, window = 60, 700, 10.0
    campaign = campaign_to(list_with_contacts(total))
    # Two clusters of two worker processes: four senders share one limiter.
    clusters.start(2, AWS_SES_ENDPOINT_URL=stub_ses.url, SEND_RATE=str(rate), SEND_DISPATCHERS="4")

    campaign_send_now(campaign_id=campaign.pk)
    wait_until(
        lambda: Campaign.objects.filter(pk=campaign.pk, status=Campaign.Status.SENT).exists(),
        timeout=60,
        message="the campaign to be sent",
    )

    arrivals = sorted(message.at for message in stub_ses.received)
    assert len(arrivals) == total
    busiest = max(
        sum(1 for later in arrivals[index:] if later - start <= window) for index, start in enumerate(arrivals)
    )
    assert busiest <= rate * window * 1.05, f"{busiest} messages in a {window:g} s window at {rate}/s"
    # ...and the limiter does not starve the senders either: the busy windows run at the rate.
    assert busiest >= rate * window * 0.9
