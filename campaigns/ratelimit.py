"""One send rate for the whole installation, shared by every worker on every machine.

The limiter is a shared clock, ``next_free``: the earliest moment the next message may leave.
A worker reserves a slot for ``n`` messages by moving the clock ``n / rate`` seconds forward
atomically (a locked database row, or a Lua script in Redis), then sleeps until the slot's start
and sends. Slots never overlap, so over any window W at most ``rate * W + n`` messages leave;
``chunk_size`` keeps ``n`` at a tenth of a second's worth, i.e. within 1% over 10 s, leaving the
rest of the 5% budget for a sender that starts its slot late.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from functools import lru_cache

from django.conf import settings
from django.db import connection

from campaigns.models import SendRateState

logger = logging.getLogger(__name__)

LIMITER_NAME = "ses"
_QUOTA_CACHE_SECONDS = 600
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


def ses_send_quota() -> dict | None:
    """SES GetSendQuota (``Max24HourSend``, ``MaxSendRate``, ``SentLast24Hours``); None, logged,
    when SES cannot be reached. Callers cache it for as long as suits them."""
    from campaigns.engine import ses_client

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


def reserve(count: int, *, rate: float | None = None) -> float:
    """Reserve ``count`` sends; returns the wall-clock time (``time.time()``) they may start."""
    rate = rate or send_rate()
    if settings.RATE_LIMITER == "redis":
        return _reserve_redis(count, rate)
    return _reserve_database(count, rate)


def wait_for_slot(count: int, *, rate: float | None = None) -> None:
    start = reserve(count, rate=rate)
    delay = start - time.time()
    if delay > 0:
        time.sleep(delay)


def _reserve_database(count: int, rate: float) -> float:
    """One atomic UPDATE … RETURNING moves the clock (PostgreSQL, SQLite >= 3.35)."""
    now = time.time()
    table = connection.ops.quote_name(SendRateState._meta.db_table)
    # An idle clock is not banked: a slot never starts in the past.
    sql = (
        f"UPDATE {table} SET next_free = (CASE WHEN next_free > %s THEN next_free ELSE %s END) + %s "
        "WHERE name = %s RETURNING next_free"
    )
    span = count / rate
    with connection.cursor() as cursor:
        cursor.execute(sql, [now, now, span, LIMITER_NAME])
        row = cursor.fetchone()
    if row is None:  # first use: create the row, then reserve through it
        SendRateState.objects.get_or_create(name=LIMITER_NAME)
        return _reserve_database(count, rate)
    return float(row[0]) - span


_REDIS_SCRIPT = """
local now = tonumber(ARGV[1])
local span = tonumber(ARGV[2])
local next_free = tonumber(redis.call('GET', KEYS[1]) or '0')
local start = math.max(next_free, now)
redis.call('SET', KEYS[1], tostring(start + span), 'EX', 3600)
return tostring(start)
"""


@lru_cache(maxsize=1)
def _redis_script():
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    return client.register_script(_REDIS_SCRIPT)


def _reserve_redis(count: int, rate: float) -> float:
    # The Redis server's clock would be safer across machines, but TIME is not allowed before a
    # write in old Redis scripts; machines here run NTP and slots are a fraction of a second.
    key = f"cobalt:ratelimit:{LIMITER_NAME}"
    return float(_redis_script()(keys=[key], args=[repr(time.time()), repr(count / rate)]))


def limiter_reset() -> None:
    """Forget the clock (tests and benchmarks start from an idle limiter)."""
    SendRateState.objects.filter(name=LIMITER_NAME).delete()
    if settings.RATE_LIMITER == "redis":
        import redis

        redis.Redis.from_url(settings.REDIS_URL).delete(f"cobalt:ratelimit:{LIMITER_NAME}")
