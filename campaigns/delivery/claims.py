"""Claims: which dispatcher holds which recipients, proved by a token and kept alive by heartbeats.

A recipient moves from ``queued`` to ``sending`` in one locked UPDATE under a fresh claim token,
so no two dispatchers ever hold the same one, and every later write is conditional on that
token. The owner renews its claims' heartbeat while it works; claims that miss their heartbeats
for ``SEND_STALE_SECONDS`` (a dead owner) are queued again.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from campaigns.models import Campaign, Recipient
from stats.counters import outcomes_add

logger = logging.getLogger(__name__)

# The engine tick runs twice a minute (two django-q2 schedules, see migration 0007).
TICK_SECONDS = 30


@dataclass
class Claim:
    """Recipients one claim moved to "sending", and the token every later write must match."""

    token: str
    ids: list[int]

    def __bool__(self) -> bool:
        return bool(self.ids)


def heartbeat_interval() -> float:
    """Seconds between a dispatcher's heartbeats: an eighth of ``SEND_STALE_SECONDS``.

    A dispatcher starts an SES call only within two intervals of its last successful heartbeat,
    so with the default ``SEND_STALE_SECONDS`` (connect + read timeout + 10 s) every call it made
    has ended before anyone may requeue its claims, even if it lost the database meanwhile.
    """
    return max(0.5, settings.SEND_STALE_SECONDS / 8)


def recovery_seconds() -> float:
    """The longest a dead dispatcher's claims wait before they are queued again.

    ``SEND_STALE_SECONDS`` of missed heartbeats, then the next engine tick (twice a minute); a
    dispatcher still working on the campaign requeues them sooner, within a heartbeat. 60 s at
    the defaults.
    """
    return settings.SEND_STALE_SECONDS + TICK_SECONDS


def claim(*, campaign_id: int, limit: int) -> Claim:
    """Move up to ``limit`` due recipients from queued to sending under a new claim token.

    Rows another dispatcher has locked are skipped, not waited for (PostgreSQL); the status
    condition in the UPDATE keeps the claim exclusive where row locks do not exist (SQLite
    serialises writers instead), and only the rows this UPDATE changed are returned.
    ``claimed_at`` is the claim's first heartbeat.
    """
    now = timezone.now()
    token = uuid.uuid4().hex
    with transaction.atomic():
        due = Recipient.objects.filter(campaign_id=campaign_id, status=Recipient.Status.QUEUED).exclude(
            not_before__gt=now
        )
        ids = list(due.order_by("id").select_for_update(skip_locked=True).values_list("id", flat=True)[:limit])
        if not ids:
            return Claim(token, [])
        updated = Recipient.objects.filter(id__in=ids, status=Recipient.Status.QUEUED).update(
            status=Recipient.Status.SENDING, claim_token=token, claimed_at=now, attempts=F("attempts") + 1
        )
        if updated != len(ids):  # someone else won some rows between our SELECT and UPDATE
            ids = list(
                Recipient.objects.filter(id__in=ids, status=Recipient.Status.SENDING, claim_token=token).values_list(
                    "id", flat=True
                )
            )
    return Claim(token, ids)


def heartbeat(*, tokens: list[str]) -> dict[str, set[int]]:
    """Renew these claims' heartbeat; returns, per token, the recipients it still holds.

    One UPDATE … RETURNING over the in-flight rows (partial index on the token). A recipient
    missing from the answer was taken away (requeued as stale); its owner must not send it.
    """
    held: dict[str, set[int]] = {token: set() for token in tokens}
    if not tokens:
        return held
    table = connection.ops.quote_name(Recipient._meta.db_table)
    marks = ", ".join(["%s"] * len(tokens))
    # The status is written out, not a parameter, so that the planner matches the partial index.
    sql = (
        f"UPDATE {table} SET claimed_at = %s WHERE status = 'sending' AND claim_token IN ({marks}) "
        "RETURNING id, claim_token"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [database_datetime(timezone.now()), *tokens])
        for pk, token in cursor.fetchall():
            held[token].add(pk)
    return held


def reclaim_stale(*, older_than: timedelta | None = None, campaign_id: int | None = None) -> dict[int, int]:
    """Claims whose owner stopped beating go back to the queue (sent again).

    A live owner renews its heartbeat every few seconds however slow its SES calls are, so only
    a dead owner (or one cut off from the database) misses ``SEND_STALE_SECONDS`` of them.
    Resending is chosen over "needs review" because a message that never reached SES must not be
    forgotten; the price is that a message in flight when the owner died may arrive twice. The
    token stays on the requeued rows: an owner that was only cut off can still record what SES
    accepted, as long as nobody has claimed the rows again. Returns {campaign id: requeued}.
    """
    cutoff = timezone.now() - (older_than or timedelta(seconds=settings.SEND_STALE_SECONDS))
    stale = Recipient.objects.filter(status=Recipient.Status.SENDING, claimed_at__lt=cutoff)
    if campaign_id is not None:
        stale = stale.filter(campaign_id=campaign_id)
    requeued: dict[int, int] = {}
    for stale_campaign_id in list(stale.order_by().values_list("campaign_id", flat=True).distinct()):
        with transaction.atomic():
            held = stale.filter(campaign_id=stale_campaign_id)
            if skipped_if_cancelled(stale_campaign_id, held):
                continue
            count = held.update(status=Recipient.Status.QUEUED, claimed_at=None)
        if count:
            requeued[stale_campaign_id] = count
            logger.warning(
                "campaign %s: %s recipients whose dispatcher stopped beating (it died?) requeued",
                stale_campaign_id,
                count,
            )
    return requeued


def campaigns_with_silent_claims() -> list[int]:
    """Sending campaigns with claims that missed two heartbeats and no dispatcher beating.

    Their dispatchers most likely died: the tick starts one dispatcher for each, which requeues
    the claims the moment they are stale instead of a tick later.
    """
    silent = timezone.now() - timedelta(seconds=2 * heartbeat_interval())
    campaign_ids = (
        Recipient.objects.filter(status=Recipient.Status.SENDING, claimed_at__lt=silent)
        .order_by()
        .values("campaign_id")
        .distinct()
    )
    return list(
        Campaign.objects.filter(pk__in=campaign_ids, status=Campaign.Status.SENDING)
        .filter(Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=silent))
        .values_list("pk", flat=True)
    )


def release(*, campaign_id: int, token: str, ids: list[int]) -> int:
    """Give claimed-but-unsent recipients back without counting an attempt; returns how many.

    If the campaign was cancelled meanwhile they are skipped instead: the cancel already skipped
    every queued recipient and nothing would ever pick these up.
    """
    if not ids:
        return 0
    with transaction.atomic():
        held = Recipient.objects.filter(id__in=ids, claim_token=token, status=Recipient.Status.SENDING)
        if skipped_if_cancelled(campaign_id, held):
            return 0
        return held.update(
            status=Recipient.Status.QUEUED, claimed_at=None, claim_token=None, attempts=F("attempts") - 1
        )


def skipped_if_cancelled(campaign_id: int, held) -> bool:
    """Call inside a transaction before giving in-flight recipients (``held``) back to the queue.

    Takes the campaign's row lock, as a cancel does; if the campaign was cancelled, ``held`` is
    skipped like the rest of its queue (nothing would ever send it) and True is returned.
    """
    status = Campaign.objects.select_for_update().values_list("status", flat=True).get(pk=campaign_id)
    if status != Campaign.Status.CANCELLED:
        return False
    skipped = held.update(
        status=Recipient.Status.SKIPPED, claimed_at=None, claim_token=None, error="Campaign cancelled"
    )
    outcomes_add(campaign_id=campaign_id, skipped=skipped)
    return True


def database_datetime(value):
    """A datetime as a raw-SQL parameter: SQLite stores the text Django writes, not a timestamp."""
    return value if connection.vendor != "sqlite" else connection.ops.adapt_datetimefield_value(value)


def heartbeat_grace() -> int:
    """Seconds without a dispatcher beating a campaign after which the tick starts new dispatchers.

    A live dispatcher beats every quarter second and hands over to its continuation every
    ``SEND_TASK_SECONDS``, so twice that is generous (dead dispatchers that held claims are
    noticed sooner: ``campaigns_with_silent_claims``).
    """
    return settings.SEND_TASK_SECONDS * 2 + 10
