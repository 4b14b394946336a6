"""Quotas: how many messages an organisation may send per local day and per calendar month.

Site operators or the parent organisation's administrators set them (``Organisation.daily_quota``,
``monthly_quota``; empty means no limit). What counts is what SES accepted, from the usage counters
(``stats.OrganisationDay``: campaigns, single messages and test sends), plus the messages in
flight now: so the room left is exact at any moment, and a claim of the engine never takes more
(``claim_within_quota`` holds the organisation's row while it claims, so two dispatchers cannot both
take the last messages).

- Starting a campaign that cannot fit today and this month is refused before anything is sent,
  with the numbers ("12,000 recipients; 8,000 messages left this month; the quota renews on
  1 December").
- A campaign that reaches the quota while sending (other campaigns of the organisation sent too)
  pauses with the reason and ``resume_at`` = when the quota renews: the engine tick resumes it then
  (``campaigns.services.campaigns_resume_due``). Staff may resume it by hand once the quota is raised.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.db import transaction
from django.utils import timezone

from campaigns.delivery.claims import Claim, claim
from campaigns.models import Recipient
from organisations.models import Organisation
from stats.counters import usage_day, usage_sent


@dataclass(frozen=True)
class QuotaRoom:
    """The binding quota: messages left now (in flight counted as sent), and when it renews."""

    left: int
    period: str  # "today" or "this month"
    quota: int
    renews_at: datetime
    in_flight: int = 0  # counted in ``left``: claimed by dispatchers, not answered by SES yet

    @property
    def used_up(self) -> bool:
        """Sent messages alone fill the quota (not just claims that may still be given back)."""
        return self.left + self.in_flight <= 0

    @property
    def renews(self) -> str:
        local = timezone.localtime(self.renews_at, timezone.get_default_timezone())
        if self.period == "today":
            return "the quota renews at midnight"
        return f"the quota renews on {local.day} {local:%B}"

    def refusal(self, count: int, *, what: str = "recipients") -> str:
        return (
            f"{count:,} {what}; {self.left:,} messages left {self.period}; {self.renews}. "
            "Send to fewer people, wait, or ask a site operator or your parent organisation's administrators "
            "to raise the quota."
        )

    def pause_reason(self, organisation_name: str) -> str:
        local = timezone.localtime(self.renews_at, timezone.get_default_timezone())
        return (
            f"Paused: {organisation_name}'s quota of {self.quota:,} messages {_per(self.period)} is used up. "
            f"Sending resumes by itself at {local:%H:%M} on {local.day} {local:%B}; or press Resume once a site "
            "operator or the parent organisation's administrators have raised the quota."
        )


def _per(period: str) -> str:
    return "a day" if period == "today" else "a month"


def _next_local_midnight(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day + timedelta(days=1), time()), timezone.get_default_timezone())


def _next_month(day: date) -> datetime:
    first = (day.replace(day=1) + timedelta(days=32)).replace(day=1)
    return timezone.make_aware(datetime.combine(first, time()), timezone.get_default_timezone())


def in_flight(organisation_id: int) -> int:
    """The organisation's messages handed to a dispatcher and not yet answered by SES."""
    return Recipient.objects.filter(status=Recipient.Status.SENDING, campaign__organisation_id=organisation_id).count()


def quota_room(organisation_id: int, *, quotas: tuple[int | None, int | None] | None = None) -> QuotaRoom | None:
    """The room left under the organisation's quotas now (the tighter of the two), or None without any."""
    daily, monthly = quotas or Organisation.objects.values_list("daily_quota", "monthly_quota").get(pk=organisation_id)
    if daily is None and monthly is None:
        return None
    today = usage_day()
    flying = in_flight(organisation_id)
    rooms = []
    if daily is not None:
        used = usage_sent(organisation_id, today)
        rooms.append(QuotaRoom(daily - used - flying, "today", daily, _next_local_midnight(today)))
    if monthly is not None:
        used = usage_sent(organisation_id, today.replace(day=1))
        rooms.append(QuotaRoom(monthly - used - flying, "this month", monthly, _next_month(today)))
    tightest = min(rooms, key=lambda room: room.left)
    left = max(tightest.left, 0)
    return QuotaRoom(
        left, tightest.period, tightest.quota, tightest.renews_at, in_flight=min(flying, tightest.left + flying)
    )


def quota_refusal(organisation_id: int, count: int, *, what: str = "recipients") -> str | None:
    """Why ``count`` messages cannot go out now under the organisation's quotas, or None."""
    room = quota_room(organisation_id)
    if room is None or count <= room.left:
        return None
    return room.refusal(count, what=what)


def quota_never_fits(organisation_id: int, count: int) -> str | None:
    """Why a campaign of ``count`` recipients can never go out, whenever it is scheduled, or None."""
    daily, monthly = Organisation.objects.values_list("daily_quota", "monthly_quota").get(pk=organisation_id)
    for quota, per in ((daily, "a day"), (monthly, "a month")):
        if quota is not None and count > quota:
            return (
                f"{count:,} recipients, but the organisation may send {quota:,} messages {per}. Send to fewer "
                "people, or ask a site operator or your parent organisation's administrators to raise the quota."
            )
    return None


def claim_within_quota(*, campaign_id: int, organisation_id: int, limit: int) -> Claim | QuotaRoom:
    """The engine's claim, never beyond the organisation's quotas: a Claim, or the used-up QuotaRoom.

    Without quotas it is the plain claim. With them, the organisation's row is locked while the room
    is read and the recipients claimed, so the dispatchers of all its campaigns take turns.
    """
    quotas = Organisation.objects.values_list("daily_quota", "monthly_quota").get(pk=organisation_id)
    if quotas == (None, None):
        return claim(campaign_id=campaign_id, limit=limit)
    with transaction.atomic():
        quotas = (
            Organisation.objects.select_for_update().values_list("daily_quota", "monthly_quota").get(pk=organisation_id)
        )
        room = quota_room(organisation_id, quotas=quotas)
        if room is None:
            return claim(campaign_id=campaign_id, limit=limit)
        if room.left <= 0:
            return room
        return claim(campaign_id=campaign_id, limit=min(limit, room.left))
