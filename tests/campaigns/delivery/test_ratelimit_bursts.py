"""The limiter's bound, measured: concurrent senders in several processes, from an idle start and
through a lost clock (Redis key flushed, database row deleted), on each backend this run has."""

from __future__ import annotations

import bisect
import itertools
import json
import os
import subprocess
import sys
import time

import pytest

from campaigns.delivery import ratelimit
from campaigns.models import SendRateState
from tests.conftest import ROOT, database_url_for_subprocess

RATE = 200.0
CHUNK = ratelimit.chunk_size(RATE, 200)  # a tenth of a second's worth, as the engine reserves
PROCESSES, THREADS = 3, 2
RUN_SECONDS, CLOCK_LOST_AT = 10.6, 5.0

# A sender process: THREADS dispatchers that reserve a chunk, "send" it (a random SES-like pause)
# and reserve the next, from the moment the test says go until the run ends. It prints, for every
# chunk, the slot start the limiter granted and when wait_for_slot let the thread go.
SENDER = """
import json, random, sys, threading, time
import django
django.setup()
from django.db import connection
from campaigns.delivery import ratelimit

rate, chunk, threads, seconds = {rate}, {chunk}, {threads}, {seconds}
grants, lock = [], threading.Lock()


def dispatcher(until):
    while time.time() < until:
        start = ratelimit.wait_for_slot(chunk, rate=rate)
        woke = time.time()
        with lock:
            grants.append((start, woke))
        time.sleep(random.uniform(0.0, 0.06))
    connection.close()


print("ready", flush=True)
sys.stdin.readline()
until = time.time() + seconds
workers = [threading.Thread(target=dispatcher, args=(until,)) for _ in range(threads)]
for worker in workers:
    worker.start()
for worker in workers:
    worker.join()
print(json.dumps(grants), flush=True)
"""

BACKENDS = ["database"] + (["redis"] if os.environ.get("REDIS_URL") else [])


def busiest(starts: list[float], window: float) -> int:
    """The most messages whose slots start within any closed window of ``window`` seconds."""
    return max(bisect.bisect_right(starts, start + window) - index for index, start in enumerate(starts))


def lose_the_clock(backend: str) -> None:
    if backend == "redis":
        import redis
        from django.conf import settings

        redis.Redis.from_url(settings.REDIS_URL).delete(ratelimit.redis_key())  # what FLUSHDB does to it
    else:
        SendRateState.objects.filter(name=ratelimit.LIMITER_NAME).delete()


def run_senders(backend: str) -> tuple[list[float], list[tuple[float, float]], float]:
    env = {
        **os.environ,
        "COBALT_TESTING": "1",
        "DATABASE_URL": database_url_for_subprocess(),
        "RATE_LIMITER": backend,
    }
    script = SENDER.format(rate=RATE, chunk=CHUNK, threads=THREADS, seconds=RUN_SECONDS)
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script], cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for _ in range(PROCESSES)
    ]
    for process in processes:
        assert process.stdout.readline().strip() == "ready"
    go = time.time()
    for process in processes:  # every dispatcher meets the idle clock at once
        process.stdin.write("go\n")
        process.stdin.flush()
    time.sleep(CLOCK_LOST_AT)
    lost_at = time.time()
    lose_the_clock(backend)
    grants = [grant for process in processes for grant in json.loads(process.communicate(timeout=60)[0])]
    starts = sorted(start for start, _woke in grants for _ in range(CHUNK))
    assert starts[0] >= go - 0.5
    return starts, grants, lost_at


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.django_db(transaction=True)
def test_it_never_sends_more_than_the_rate_plus_one_chunk_in_any_window(backend, settings):
    settings.RATE_LIMITER = backend
    ratelimit.limiter_reset()

    starts, grants, lost_at = run_senders(backend)

    first_second = bisect.bisect_right(starts, starts[0] + 1.0)
    after_loss = [start for start in starts if start >= lost_at - 1.0]
    figures = {
        "first second": first_second,
        "busiest 1 s": busiest(starts, 1.0),
        "busiest 1 s around the lost clock": busiest(after_loss, 1.0),
        "busiest 10 s": busiest(starts, 10.0),
        "longest pause (s)": round(max(later - earlier for earlier, later in itertools.pairwise(starts)), 2),
    }
    print(f"{backend} limiter at {RATE:g}/s, chunks of {CHUNK}: {figures}")
    # The bound the README states: any window of W seconds holds at most RATE * W + one chunk
    # (+10% over 1 s, +1% over 10 s), from an idle start and after the clock is lost alike.
    assert figures["first second"] <= RATE + CHUNK, figures
    assert figures["busiest 1 s"] <= RATE + CHUNK, figures
    assert figures["busiest 1 s around the lost clock"] <= RATE + CHUNK, figures
    assert figures["busiest 10 s"] <= RATE * 10 * 1.01, figures
    # No thread went before its slot, and the senders were not starved: a lost clock pauses
    # sending for about a second (the horizon, less what was already granted), no more.
    assert all(woke >= start for start, woke in grants)
    assert figures["longest pause (s)"] <= ratelimit.HORIZON_SECONDS + 0.5, figures
    assert len(starts) >= RATE * (RUN_SECONDS - 1.0) * 0.95, figures
