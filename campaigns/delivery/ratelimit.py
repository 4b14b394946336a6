"""One send rate for the whole installation, shared by every worker on every machine.

The limiter is a shared clock, ``next_free``: the earliest moment the next message may leave.
A worker reserves a slot for ``n`` messages by moving the clock ``n / rate`` seconds forward
atomically (a conditional database UPDATE, or a Lua script in Redis), then sleeps until the slot's
start and sends. Slots never overlap and an idle clock is not banked (a slot never starts in the
past), so any window of W seconds holds the starts of at most ``rate * W + n`` messages, from an
idle start as in steady state. ``chunk_size`` keeps ``n`` at a tenth of a second's worth: +1% over
10 s, +10% over 1 s.

A lost clock (Redis flushed, the key expired, the row deleted) must not start again at "now":
slots granted before it may still lie ahead, and new ones would overlap them (at 200/s with six
senders, 320 messages in one second). So the clock never runs more than ``HORIZON_SECONDS`` ahead
of the moment a slot is granted (a worker that would reserve further waits and asks again), and a
missing clock is recreated that far ahead: sending pauses for up to a second instead of bursting.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from functools import lru_cache

from django.conf import settings
from django.db import connection

from campaigns.delivery.ses import ses_client
from campaigns.models import SendRateState

logger = logging.getLogger(__name__)

LIMITER_NAME = "ses"
_QUOTA_CACHE_SECONDS = 600
# How far ahead of now the clock may run; after a lost clock, how long sending pauses.
HORIZON_SECONDS = 1.0
_quota_lock = threading.Lock()
_quota_cache: tuple[float, float] | None = None


def send_rate() -> float:
    """Messages per second: ``SEND_RATE`` if set, else SES's MaxSendRate (cached 10 minutes)."""
    if settings.SEND_RATE:
        return float(settings.SEND_RATE)
    global _quota_cache
    with _quota_lock:
        if _quota_cache and time.monotonic() - _quota_cache[1] < _QUOTA_CACHE_SECONDS:
            return _quota_cache[0]
        rate = _ses_max_send_rate()
        _quota_cache = (rate, time.monotonic())
        return rate


def send_rate_known() -> float | None:
    """The send rate in force without asking SES: ``SEND_RATE``, else this process's cached
    MaxSendRate, else None (for /metrics, which must not wait on SES)."""
    if settings.SEND_RATE:
        return float(settings.SEND_RATE)
    return _quota_cache[0] if _quota_cache else None


def ses_send_quota() -> dict | None:
    """SES GetSendQuota (``Max24HourSend``, ``MaxSendRate``, ``SentLast24Hours``); None, logged,
    when SES cannot be reached. Callers cache it for as long as suits them."""
    try:
        return ses_client().get_send_quota()
    except Exception:
        logger.warning("GetSendQuota failed", exc_info=True)
        return None


def _ses_max_send_rate() -> float:
    quota = ses_send_quota()
    if quota is None:  # SES unreachable: be conservative rather than stop
        logger.warning("Sending at 1 message/s until SES answers GetSendQuota")
        return 1.0
    return max(float(quota["MaxSendRate"]), 1.0)


def chunk_size(rate: float, batch: int) -> int:
    return max(1, min(batch, math.floor(rate / 10)))


def reserve(count: int, *, rate: float | None = None, name: str = LIMITER_NAME) -> float:
    """Reserve ``count`` sends; returns the wall-clock time (``time.time()``) they may start.

    Blocks while the clock is more than a horizon ahead (see the module docstring). ``name``: the
    installation's clock (the default), or a campaign's share clock (``share_clock``).
    """
    rate = rate or send_rate()
    span = count / rate
    horizon = max(HORIZON_SECONDS, span)
    attempt = _attempt_redis if settings.RATE_LIMITER == "redis" else _attempt_database
    while True:
        granted, when = attempt(span, horizon, name)
        if granted:
            return when
        time.sleep(min(horizon, max(0.001, when - time.time())))


def wait_for_slot(count: int, *, rate: float | None = None, name: str = LIMITER_NAME) -> float:
    """Wait until ``count`` messages may leave; returns the start of their slot."""
    start = reserve(count, rate=rate, name=name)
    delay = start - time.time()
    if delay > 0:
        time.sleep(delay)
    return start


def share_clock(campaign_id: int) -> str:
    """The name of a campaign's own clock, which paces it at its share of the rate (``engine.py``).

    Only the installation's clock guards SES's limit; a lost share clock restarts at once."""
    return f"share:{campaign_id}"


def _attempt_database(span: float, horizon: float, name: str = LIMITER_NAME) -> tuple[bool, float]:
    """One conditional UPDATE … RETURNING moves the clock (PostgreSQL, SQLite >= 3.35).

    Returns (True, slot start) or (False, when to ask again).
    """
    now = time.time()
    table = connection.ops.quote_name(SendRateState._meta.db_table)
    # An idle clock is not banked: a slot never starts in the past.
    start = "(CASE WHEN next_free > %s THEN next_free ELSE %s END)"
    sql = f"UPDATE {table} SET next_free = {start} + %s WHERE name = %s AND {start} + %s <= %s RETURNING next_free"
    with connection.cursor() as cursor:
        cursor.execute(sql, [now, now, span, name, now, now, span, now + horizon])
        row = cursor.fetchone()
    if row is not None:
        return True, float(row[0]) - span
    next_free = SendRateState.objects.filter(name=name).values_list("next_free", flat=True).first()
    if next_free is None:  # first use, or the row was deleted
        restart = now + horizon if name == LIMITER_NAME else now
        if name == LIMITER_NAME:
            _log_lost_clock(horizon)
        state, _ = SendRateState.objects.get_or_create(name=name, defaults={"next_free": restart})
        next_free = state.next_free
    return False, next_free + span - horizon


def _log_lost_clock(horizon: float) -> None:
    logger.warning(
        "Rate limiter clock missing (first use, expired, Redis flushed or its row deleted): "
        "restarting it %.1f s ahead so that slots granted before cannot overlap new ones",
        horizon,
    )


# KEYS[1]: the clock; ARGV: now, span, horizon (seconds), and how far ahead a missing clock restarts.
# Returns {1, slot start} or {0, when to ask again}, and 1 as a third item if the clock was missing.
# Numbers travel as strings with microseconds: Lua's tostring keeps only 14 digits (0.1 ms).
_REDIS_SCRIPT = """
local now = tonumber(ARGV[1])
local span = tonumber(ARGV[2])
local horizon = tonumber(ARGV[3])
local stored = redis.call('GET', KEYS[1])
local lost = 0
local next_free
if stored then
  next_free = tonumber(stored)
else
  next_free = now + tonumber(ARGV[4])
  lost = 1
  redis.call('SET', KEYS[1], string.format('%.6f', next_free), 'EX', 86400)
end
local start = math.max(next_free, now)
if start + span > now + horizon then
  return {0, string.format('%.6f', start + span - horizon), lost}
end
redis.call('SET', KEYS[1], string.format('%.6f', start + span), 'EX', 86400)
return {1, string.format('%.6f', start), lost}
"""


@lru_cache(maxsize=1)
def _redis():
    import redis

    return redis.Redis.from_url(settings.REDIS_URL)


@lru_cache(maxsize=1)
def _redis_script():
    return _redis().register_script(_REDIS_SCRIPT)


def redis_key(name: str = LIMITER_NAME) -> str:
    if settings.TESTING:  # test runs share one Redis: each run (its queue name has its suffix) has its own clock
        return f"cobalt:ratelimit:{settings.Q_CLUSTER['name']}:{name}"
    return f"cobalt:ratelimit:{name}"


def _attempt_redis(span: float, horizon: float, name: str = LIMITER_NAME) -> tuple[bool, float]:
    # The Redis server's clock would be safer across machines, but TIME is not allowed before a
    # write in old Redis scripts; machines here run NTP and slots are a fraction of a second.
    restart = horizon if name == LIMITER_NAME else 0.0  # a share clock may restart at once
    granted, when, lost = _redis_script()(
        keys=[redis_key(name)], args=[repr(time.time()), repr(span), repr(horizon), repr(restart)]
    )
    if int(lost) and name == LIMITER_NAME:
        _log_lost_clock(horizon)
    return bool(int(granted)), float(when)


def limiter_reset() -> None:
    """Set the clock idle, so that the next slot starts at once (tests and benchmarks, between runs:
    done while slots are still being used, it lets new slots overlap theirs)."""
    SendRateState.objects.update_or_create(name=LIMITER_NAME, defaults={"next_free": 0.0})
    if settings.RATE_LIMITER == "redis":
        _redis().set(redis_key(), "0", ex=86400)
