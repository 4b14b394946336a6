"""Reputation per organisation: its bounce and complaint rates against SES's review levels, and the
hold that stops its sending when it reaches them.

The figures come from the usage counters (``stats.OrganisationDay``, recipients per local day), never
from recipients or events, in two windows:

- the last 7 local days (today included);
- "the last 1,000 delivered messages": the most recent days (at most a year back) whose rows hold
  at least 1,000 deliveries together. Day granularity: an exact per-message window would need a scan
  of recipients at 10,000,000 of them. A club with few messages reaches back several days; a large
  sender's window may be today alone.

Rates are as the campaign guard and the reports define them: hard bounces ÷ (deliveries + hard
bounces), complaints ÷ deliveries, never above 100%. An organisation reaches the levels as a
campaign reaches the guard's (``tracking.guard``): the Wilson 95% lower bound of the rate is above
``ORG_BOUNCE_RATE`` / ``ORG_COMPLAINT_RATE``, with ``GUARD_MIN_*`` as the minimum samples.

The hold (``Organisation.held_at``, ``held_reason``) refuses every start of sending (the check is
``campaigns.services.organisation_hold_check``; pausing its sending campaigns is
``campaigns.services.organisation_reputation_enforce``, as campaigns sit above this layer). Only a
site operator lifts it; from then on the figures count afresh (``hold_lifted_at`` and the counts of
that day at that moment, ``hold_lifted_base``), so the evidence just reviewed does not hold it again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from common.rates import wilson_lower_bound
from organisations import audit
from organisations.models import Organisation
from stats.counters import usage_day
from stats.models import OrganisationDay

WEEK_DAYS = 7
RECENT_DELIVERED = 1000
RECENT_DAYS_AT_MOST = 366
COUNTED = ("sent", "delivered", "bounced_hard", "complained")


@dataclass
class Window:
    """Counted recipients over a range of local days."""

    label: str
    first_day: date | None = None
    last_day: date | None = None
    sent: int = 0
    delivered: int = 0
    bounced_hard: int = 0
    complained: int = 0

    def add(self, day: date, counts: dict[str, int]) -> None:
        self.first_day = min(self.first_day or day, day)
        self.last_day = max(self.last_day or day, day)
        for name in COUNTED:
            setattr(self, name, getattr(self, name) + counts[name])

    @property
    def outcomes(self) -> int:
        return self.delivered + self.bounced_hard

    @property
    def bounce_rate(self) -> float:
        return min(1.0, self.bounced_hard / self.outcomes) if self.outcomes else 0.0

    @property
    def complaint_rate(self) -> float:
        return min(1.0, self.complained / self.delivered) if self.delivered else 0.0

    @property
    def bounce_percent(self) -> str:
        return f"{self.bounce_rate:.1%}" if self.outcomes else "–"

    @property
    def complaint_percent(self) -> str:
        return f"{self.complaint_rate:.2%}" if self.delivered else "–"

    @property
    def days(self) -> str:
        if self.first_day is None or self.last_day is None:
            return "no messages"
        if self.first_day == self.last_day:
            return f"{self.first_day:%d %b}"
        return f"{self.first_day:%d %b}–{self.last_day:%d %b}"

    def severity(self) -> float:
        """How close to the levels (1.0: at one of them); orders the operators' table."""
        return max(self.bounce_rate / settings.ORG_BOUNCE_RATE, self.complaint_rate / settings.ORG_COMPLAINT_RATE)


@dataclass
class Reputation:
    organisation: Organisation
    week: Window
    recent: Window
    reason: str | None = None  # why it reaches the levels now, or None
    windows: list[Window] = field(default_factory=list)

    @property
    def severity(self) -> float:
        return max(self.week.severity(), self.recent.severity())


def levels() -> dict[str, str]:
    return {"bounce": f"{settings.ORG_BOUNCE_RATE:.1%}", "complaint": f"{settings.ORG_COMPLAINT_RATE:.1%}"}


def reputations_of(organisations: list[Organisation], *, today: date | None = None) -> list[Reputation]:
    """Both windows and the judgement for each organisation: one query of their rows of the last year."""
    today = today or usage_day()
    since = today - timedelta(days=RECENT_DAYS_AT_MOST - 1)
    rows: dict[int, list[tuple[date, dict[str, int]]]] = {organisation.pk: [] for organisation in organisations}
    found = (
        OrganisationDay.objects.filter(organisation_id__in=list(rows), day__gte=since, day__lte=today)
        .order_by("organisation_id", "-day")
        .values_list("organisation_id", "day", *COUNTED)
    )
    for organisation_id, day, *counts in found.iterator(chunk_size=2000):
        rows[organisation_id].append((day, dict(zip(COUNTED, counts, strict=True))))
    found_reputations = []
    for organisation in organisations:
        week, recent = _windows(_since_lift(organisation, rows[organisation.pk]), today)
        reason = reputation_reason(week) or reputation_reason(recent)
        found_reputations.append(Reputation(organisation, week, recent, reason, [week, recent]))
    return found_reputations


def reputation_of(organisation: Organisation) -> Reputation:
    return reputations_of([organisation])[0]


def _since_lift(organisation: Organisation, rows: list[tuple[date, dict[str, int]]]) -> list:
    """The rows counted since a site operator last lifted a hold (that day's row minus its counts then)."""
    if organisation.hold_lifted_at is None:
        return rows
    lift_day = usage_day(organisation.hold_lifted_at)
    base = organisation.hold_lifted_base or {}
    kept = []
    for day, counts in rows:
        if day == lift_day:
            counts = {name: max(0, counts[name] - int(base.get(name, 0))) for name in COUNTED}
        if day >= lift_day:
            kept.append((day, counts))
    return kept


def _windows(rows: list[tuple[date, dict[str, int]]], today: date) -> tuple[Window, Window]:
    """(last 7 days, last 1,000 delivered) from the rows, newest first."""
    week = Window("the last 7 days")
    recent = Window(f"the last {RECENT_DELIVERED:,} delivered messages")
    week_start = today - timedelta(days=WEEK_DAYS - 1)
    for day, counts in rows:
        if day >= week_start:
            week.add(day, counts)
        if recent.delivered < RECENT_DELIVERED:
            recent.add(day, counts)
    return week, recent


def reputation_reason(window: Window) -> str | None:
    """Why the window reaches SES's review levels, in words with its figures; None while the evidence
    does not show it (too few outcomes, bounces or complaints, or a lower bound under the level)."""
    if window.outcomes < settings.GUARD_MIN_DELIVERIES:
        return None
    bounce_floor = wilson_lower_bound(window.bounced_hard, window.outcomes)
    if window.bounced_hard >= settings.GUARD_MIN_BOUNCES and bounce_floor > settings.ORG_BOUNCE_RATE:
        return (
            f"{window.bounced_hard:,} hard bounces from {window.outcomes:,} messages with an outcome "
            f"({window.bounce_rate:.1%}) in {window.label} ({window.days}). Even the low end of the 95% range "
            f"of the true rate ({bounce_floor:.1%}) is above SES's review level of {settings.ORG_BOUNCE_RATE:.1%}: "
            "remove the addresses that bounce before sending again."
        )
    complaint_floor = wilson_lower_bound(window.complained, window.delivered)
    if window.complained >= settings.GUARD_MIN_COMPLAINTS and complaint_floor > settings.ORG_COMPLAINT_RATE:
        return (
            f"{window.complained:,} complaints from {window.delivered:,} deliveries ({window.complaint_rate:.2%}) "
            f"in {window.label} ({window.days}). Even the low end of the 95% range of the true rate "
            f"({complaint_floor:.2%}) is above SES's review level of {settings.ORG_COMPLAINT_RATE:.2%}: "
            "find out why people complain (who is on the lists, and did they ask for it) before sending again."
        )
    return None


# --- the hold -------------------------------------------------------------------------------------


def hold_refusal(organisation_id: int) -> str | None:
    """Why nothing of the organisation may start sending now, in words for staff; None if it may."""
    held = Organisation.objects.filter(pk=organisation_id, held_at__isnull=False).values("name", "held_reason").first()
    if held is None:
        return None
    return (
        f"Sending is on hold for {held['name']}: {held['held_reason']} A site operator must review and lift the hold."
    )


def organisation_hold(*, organisation_id: int, reason: str) -> bool:
    """Put the organisation's sending on hold (audited). False if it was already held."""
    with transaction.atomic():
        held = Organisation.objects.filter(pk=organisation_id, held_at__isnull=True).update(
            held_at=timezone.now(), held_reason=reason
        )
        if held:
            organisation = Organisation.objects.get(pk=organisation_id)
            audit.record(
                None,
                audit.Action.ORGANISATION,
                f"Sending put on hold for {organisation.name} (reputation): {reason}",
                organisation=organisation,
                object_type="organisation",
                object_id=organisation.pk,
            )
    return bool(held)


def organisation_hold_lift(*, organisation: Organisation, request: HttpRequest | None = None) -> bool:
    """A site operator lifts the hold (audited): starts are allowed again, campaigns stay paused until
    staff resume them, and the figures count afresh from now. False if it was not held."""
    with transaction.atomic():
        locked = Organisation.objects.select_for_update().get(pk=organisation.pk)
        if locked.held_at is None:
            return False
        today = OrganisationDay.objects.filter(organisation_id=locked.pk, day=usage_day()).values(*COUNTED).first()
        reason = locked.held_reason
        locked.held_at, locked.held_reason = None, ""
        locked.hold_lifted_at, locked.hold_lifted_base = timezone.now(), today or {}
        locked.save(update_fields=["held_at", "held_reason", "hold_lifted_at", "hold_lifted_base"])
        audit.record(
            request,
            audit.Action.ORGANISATION,
            f"Lifted the sending hold on {locked.name} (it was: {reason})",
            organisation=locked,
            object_type="organisation",
            object_id=locked.pk,
        )
    return True


def organisations_to_judge() -> list[Organisation]:
    """Organisations not on hold with a hard bounce or complaint in the last year: only these can
    reach the levels (the engine tick judges them again as days leave the windows)."""
    since = usage_day() - timedelta(days=RECENT_DAYS_AT_MOST - 1)
    with_problems = OrganisationDay.objects.filter(day__gte=since, bounced_hard__gt=0) | OrganisationDay.objects.filter(
        day__gte=since, complained__gt=0
    )
    ids = with_problems.values_list("organisation_id", flat=True).distinct()
    return list(Organisation.objects.filter(pk__in=ids, held_at__isnull=True))
