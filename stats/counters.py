"""Every write to a campaign's counters (``CampaignStats``), its recipients' markers (``RecipientActivity``)
and the organisations' daily usage (``OrganisationDay``).

The callers (the snapshot, the engine, cancel and resume, the webhook's event batches, the
unsubscribe page, the recount) pass ids and values; each write is one statement, made inside the
caller's transaction so that the figures move with the work that moves them.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import F, Sum
from django.utils import timezone

from stats.breakdowns import recipient_domains_write
from stats.models import CampaignStats, OrganisationDay, RecipientActivity


def snapshot_recorded(*, campaign_id: int, recipients: int, domains: dict[str, int] | None = None) -> None:
    """The audience is frozen: create the counter row with the recipient total, and count the domains.

    ``domains`` maps each recipient domain to its number of recipients (the report divides the
    per-domain outcomes by it).
    """
    with transaction.atomic():
        CampaignStats.objects.update_or_create(campaign_id=campaign_id, defaults={"recipients": recipients})
        if domains is not None:
            recipient_domains_write(campaign_id=campaign_id, domains=domains)


def outcomes_add(*, campaign_id: int, sent: int = 0, failed: int = 0, skipped: int = 0) -> None:
    """Add to ``sent``/``failed``/``skipped``; call inside the transaction that moved the recipients."""
    counts = {"sent": sent, "failed": failed, "skipped": skipped}
    changes = {name: F(name) + count for name, count in counts.items() if count}
    if changes:
        CampaignStats.objects.filter(campaign_id=campaign_id).update(**changes)


def events_counted(*, campaign_id: int, counts: dict[str, int], received_at: datetime) -> bool:
    """Add an event batch's counts to the campaign's counters (one UPDATE); False if nothing moved."""
    updates = {name: F(name) + amount for name, amount in counts.items() if amount}
    if not updates:
        return False
    CampaignStats.objects.filter(campaign_id=campaign_id).update(last_event_at=received_at, **updates)
    return True


def markers_claim(*, rows: dict[tuple[int, str], datetime]) -> set[tuple[int, str]]:
    """INSERT the (recipient id, kind) markers ON CONFLICT DO NOTHING; returns the ones inserted.

    One statement for the batch, in key order (concurrent batches lock in the same order).
    """
    if not rows:
        return set()
    quote = connection.ops.quote_name
    keys = sorted(rows)
    params: list[Any] = []
    for recipient_id, kind in keys:
        params += [recipient_id, kind, connection.ops.adapt_datetimefield_value(rows[(recipient_id, kind)])]
    sql = (
        f"INSERT INTO {quote(RecipientActivity._meta.db_table)} "
        f"({quote('recipient_id')}, {quote('kind')}, {quote('occurred_at')}) "
        f"VALUES {', '.join(['(%s, %s, %s)'] * len(keys))} "
        f"ON CONFLICT ({quote('recipient_id')}, {quote('kind')}) DO NOTHING "
        f"RETURNING {quote('recipient_id')}, {quote('kind')}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {(recipient_id, kind) for recipient_id, kind in cursor.fetchall()}


def unsubscribe_recorded(*, recipient_id: int, campaign_id: int, occurred_at: datetime) -> bool:
    """Count a recipient who unsubscribed (through the email's link) once, however often they
    come back and leave again; call inside the unsubscribe's transaction. True if it counted.
    """
    if not markers_claim(rows={(recipient_id, RecipientActivity.Kind.UNSUBSCRIBED): occurred_at}):
        return False
    CampaignStats.objects.filter(campaign_id=campaign_id).update(unsubscribed=F("unsubscribed") + 1)
    return True


def reputation_guard_rebase(*, campaign_id: int) -> None:
    """A person resumed the campaign: from now on the reputation guard judges only what happens next.

    Call in the resume's transaction. The counters are copied in one UPDATE, so events committed
    concurrently land either before the baseline (reviewed) or after it (judged).
    """
    CampaignStats.objects.filter(campaign_id=campaign_id).update(
        guard_base_delivered=F("delivered"),
        guard_base_bounced_hard=F("bounced_hard"),
        guard_base_complained=F("complained"),
        guard_resumed_at=timezone.now(),
    )


def counters_locked(*, campaign_id: int) -> CampaignStats | None:
    """The campaign's counter row, locked to the end of the caller's transaction.

    Every event batch takes this lock before it touches breakdown rows, so a repair holding it
    makes them wait and then add to the repaired values.
    """
    return CampaignStats.objects.select_for_update().filter(campaign_id=campaign_id).first()


def counters_set(*, campaign_id: int, values: dict[str, int]) -> None:
    """Overwrite counters with recounted values (the repair; hold ``counters_locked``)."""
    if values:
        CampaignStats.objects.filter(campaign_id=campaign_id).update(**values)


# --- usage per organisation and day ---------------------------------------------------------------


def usage_day(moment: datetime | None = None) -> date:
    """The installation's local date (``TIME_ZONE``) of ``moment`` (default: now).

    Not the staff member's own time zone, which a request may have activated: a test send from
    Sydney and a campaign sent by a worker on the same instant count on the same day.
    """
    return timezone.localtime(moment or timezone.now(), timezone.get_default_timezone()).date()


def usage_add(*, organisation_id: int, day: date | None = None, **counts: int) -> None:
    """Add ``counts`` (``sent=``, ``test_sent=``, …) to the organisation's day (default: today)."""
    usage_rows_add(rows={(organisation_id, day or usage_day()): counts})


def usage_rows_add(*, rows: dict[tuple[int, date], dict[str, int]]) -> None:
    """Add to (organisation id, day) rows, creating the missing ones: one INSERT … ON CONFLICT DO UPDATE.

    Call inside the transaction of the work being counted, as its last statement: every writer
    takes these rows last and in key order, so two transactions that share a campaign counter row
    or recipients never wait for each other in opposite orders. All-zero rows are left out.
    """
    keys = sorted(key for key, counts in rows.items() if any(counts.values()))
    if not keys:
        return
    unknown = {name for key in keys for name in rows[key]} - set(OrganisationDay.COUNTER_FIELDS)
    if unknown:
        raise ValueError(f"Not a usage counter: {', '.join(sorted(unknown))}")
    quote = connection.ops.quote_name
    table = quote(OrganisationDay._meta.db_table)
    names = OrganisationDay.COUNTER_FIELDS
    params: list[Any] = []
    for organisation_id, day in keys:
        params += [organisation_id, connection.ops.adapt_datefield_value(day)]
        params += [rows[(organisation_id, day)].get(name, 0) for name in names]
    columns = ", ".join(quote(name) for name in ("organisation_id", "day", *names))
    row = f"({', '.join(['%s'] * (2 + len(names)))})"
    added = ", ".join(f"{quote(name)} = {table}.{quote(name)} + EXCLUDED.{quote(name)}" for name in names)
    sql = (
        f"INSERT INTO {table} ({columns}) VALUES {', '.join([row] * len(keys))} "
        f"ON CONFLICT ({quote('organisation_id')}, {quote('day')}) DO UPDATE SET {added}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def usage_sent(organisation_id: int, since_day: date) -> int:
    """Messages the organisation sent from ``since_day`` on, test messages included (what quotas count)."""
    total = OrganisationDay.objects.filter(organisation_id=organisation_id, day__gte=since_day).aggregate(
        total=Sum(F("sent") + F("test_sent"))
    )["total"]
    return total or 0
