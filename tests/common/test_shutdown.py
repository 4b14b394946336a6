"""Stopping a real ``qcluster`` the way systemd does: SIGTERM to every process of its group."""

from __future__ import annotations

import collections
import os
import signal
import time
from pathlib import Path

import pytest
from django.db.models import Count

from campaigns.models import Campaign, Recipient
from campaigns.services import campaign_send_now
from tests.conftest import wait_until
from tests.factories import campaign_to, list_with_contacts

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

SEND_TASK_SECONDS = 10  # what the workers fixture gives the clusters


def group_members(group: int) -> list[int]:
    """Live (not zombie) processes of a process group, from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, _parent, process_group = stat.rpartition(")")[2].split()[:3]
        if int(process_group) == group and state != "Z":
            members.append(int(entry.name))
    return members


def statuses(campaign: Campaign) -> dict[str, int]:
    rows = Recipient.objects.filter(campaign=campaign).values("status").annotate(n=Count("id"))
    return {row["status"]: row["n"] for row in rows}


def test_it_stops_on_a_group_sigterm_within_the_task_time_and_another_cluster_carries_on(workers, ses):
    total = 80
    campaign = campaign_to(list_with_contacts(total))
    env = {"SEND_RATE": "8", "SEND_DISPATCHERS": "2"}
    (first,) = workers.start(1, **env)
    campaign_send_now(campaign_id=campaign.pk)
    wait_until(lambda: statuses(campaign).get("sent", 0) >= 8, timeout=60, message="sending to get going")
    assert len(group_members(first.pid)) >= 5  # main, sentinel, pusher, monitor, workers

    os.killpg(first.pid, signal.SIGTERM)  # what systemd's stop does
    stopping = time.monotonic()
    wait_until(
        lambda: not group_members(first.pid),
        timeout=SEND_TASK_SECONDS + 5,
        interval=0.1,
        message="every process of the cluster to exit",
    )
    stopped_in = time.monotonic() - stopping
    first.wait(timeout=5)

    print(f"group SIGTERM to exit: {stopped_in:.1f} s")
    assert stopped_in <= SEND_TASK_SECONDS
    held = statuses(campaign)
    assert held.get("sending", 0) == 0, f"claims left behind by the stopped cluster: {held}"
    assert 0 < held.get("sent", 0) < total, f"the campaign was not mid-send: {held}"

    # Another cluster takes the rest at once: no waiting for a stale reclaim or the engine tick.
    workers.start(1, **env)
    wait_until(
        lambda: Campaign.objects.filter(pk=campaign.pk, status=Campaign.Status.SENT).exists(),
        timeout=total / 8 + 20,
        message="the second cluster to finish the campaign",
    )
    received = collections.Counter(address for message in ses.sent() for address in set(message["destinations"]))
    emails = set(Recipient.objects.filter(campaign=campaign).values_list("email", flat=True))
    assert set(received) == emails, "a recipient was lost"
    assert sum(count - 1 for count in received.values()) == 0, "a recipient got the campaign twice"
    assert statuses(campaign) == {"sent": total}


def test_it_stops_within_the_task_time_even_inside_a_task_that_never_checks(workers):
    from django_q.tasks import async_task

    (cluster,) = workers.start(1)
    wait_until(lambda: len(group_members(cluster.pid)) >= 5, timeout=30, message="the cluster to start")
    async_task("time.sleep", 120)  # stands for a long task that does not look at stop_requested()
    time.sleep(3)  # picked up by a worker

    os.killpg(cluster.pid, signal.SIGTERM)
    stopping = time.monotonic()
    wait_until(
        lambda: not group_members(cluster.pid),
        timeout=SEND_TASK_SECONDS + 5,
        interval=0.1,
        message="every process of the cluster to exit",
    )
    stopped_in = time.monotonic() - stopping
    print(f"group SIGTERM to exit, inside a task that never checks: {stopped_in:.1f} s")
    assert stopped_in <= SEND_TASK_SECONDS
