"""The reputation guard pauses on evidence, not on noise, and judges afresh after a person resumes.

Recorded event sequences are seeded, so every run replays the same deliveries, bounces and
complaints. The guard runs, as in the webhook, whenever a complaint or a hard bounce is counted.
"""

from __future__ import annotations

import math
import random

import pytest

from campaigns.models import Campaign
from campaigns.services import campaign_resume
from stats.models import CampaignStats
from tests.sns import campaign_with_recipients, new_id
from tests.tracking.records import event
from tracking.guard import reputation_guard_reason, wilson_lower_bound
from tracking.parsing import event_parse
from tracking.storing import events_store

pytestmark = pytest.mark.django_db


def recorded_sequence(*, seed: int, messages: int, complaint_rate: float, hard_bounce_rate: float = 0.01) -> str:
    """One outcome per message: "d" delivered, "c" delivered then complained, "b" hard bounce."""
    rng = random.Random(seed)
    outcomes = []
    for _ in range(messages):
        if rng.random() < hard_bounce_rate:
            outcomes.append("b")
        else:
            outcomes.append("c" if rng.random() < complaint_rate else "d")
    return "".join(outcomes)


def replay(sequence: str) -> tuple[int, str] | None:
    """(deliveries so far, reason) at the first pause, or None if the guard never pauses."""
    delivered = bounced = complained = 0
    for outcome in sequence:
        if outcome == "b":
            bounced += 1
        else:
            delivered += 1
            complained += outcome == "c"
        if outcome in "bc":
            reason = reputation_guard_reason(delivered=delivered, bounced_hard=bounced, complained=complained)
            if reason:
                return delivered, reason
    return None


def test_the_wilson_lower_bound_matches_the_textbook_values():
    assert wilson_lower_bound(0, 100) == 0.0
    assert wilson_lower_bound(1, 312) == pytest.approx(0.000566, abs=1e-6)
    assert wilson_lower_bound(10, 2000) == pytest.approx(0.002718, abs=1e-6)
    assert wilson_lower_bound(5, 5) == pytest.approx(0.5655, abs=1e-4)


def test_a_list_at_half_the_complaint_level_never_pauses_over_50000_messages():
    sequence = recorded_sequence(seed=20261130, messages=50_000, complaint_rate=0.0005)
    assert 15 <= sequence.count("c") <= 40  # the list really complains at about 0.05%

    assert replay(sequence) is None


def test_a_list_at_five_times_the_complaint_level_pauses_within_2000_deliveries():
    sequence = recorded_sequence(seed=20261130, messages=50_000, complaint_rate=0.005)

    paused = replay(sequence)

    assert paused is not None
    deliveries, reason = paused
    assert deliveries <= 2000
    assert "complaint" in reason and "95%" in reason and "0.10%" in reason


def complaint_times(*, seed: int, messages: int, complaint_rate: float) -> list[int]:
    """Deliveries counted when each complaint arrives (geometric gaps: a fast equivalent of a sequence)."""
    rng = random.Random(seed)
    times, delivered = [], 0
    while True:
        delivered += 1 + int(math.log(1.0 - rng.random()) / math.log(1.0 - complaint_rate))
        if delivered > messages:
            return times
        times.append(delivered)


def pauses_within(times: list[int]) -> int | None:
    for complained, delivered in enumerate(times, start=1):
        if reputation_guard_reason(delivered=delivered, bounced_hard=0, complained=complained):
            return delivered
    return None


def test_over_many_recorded_lists_noise_rarely_pauses_and_a_real_problem_almost_always_does():
    """The guard's error rates on 1,000 seeded lists of each kind (the README quotes them)."""
    seeds = range(1000)
    quiet = [pauses_within(complaint_times(seed=s, messages=50_000, complaint_rate=0.0005)) for s in seeds]
    noisy = [pauses_within(complaint_times(seed=s, messages=2_000, complaint_rate=0.005)) for s in seeds]

    false_pauses = sum(paused is not None for paused in quiet) / len(seeds)
    caught = sum(paused is not None for paused in noisy) / len(seeds)
    assert false_pauses <= 0.03
    assert caught >= 0.95


def test_one_complaint_early_on_is_no_evidence():
    # The campaign the issue describes: 1 complaint in 312 deliveries, then 5 in 793.
    assert reputation_guard_reason(delivered=312, bounced_hard=0, complained=1) is None
    assert reputation_guard_reason(delivered=793, bounced_hard=0, complained=2) is None


def test_hard_bounces_pause_only_when_clearly_above_five_percent():
    assert reputation_guard_reason(delivered=1900, bounced_hard=100, complained=0) is None  # exactly 5%
    assert reputation_guard_reason(delivered=180, bounced_hard=9, complained=0) is None  # too few to judge
    reason = reputation_guard_reason(delivered=1800, bounced_hard=200, complained=0)
    assert reason and "200 hard bounces" in reason and "2,000" in reason and "5.0%" in reason


def test_a_list_with_three_percent_hard_bounces_never_pauses_and_one_with_ten_percent_does():
    assert replay(recorded_sequence(seed=7, messages=50_000, complaint_rate=0, hard_bounce_rate=0.03)) is None
    paused = replay(recorded_sequence(seed=7, messages=50_000, complaint_rate=0, hard_bounce_rate=0.10))
    assert paused is not None and paused[0] <= 2000


# --- through the real webhook ------------------------------------------------------------------


def deliver(recipients) -> None:
    """Deliveries stored the way the webhook's group commit stores them: one batch."""
    items = []
    for recipient in recipients:
        record = event("Delivery", address=recipient.email, campaign=recipient.campaign_id, recipient=recipient.pk)
        items.append((new_id(), record, event_parse(record=record)))
    events_store(items=items)


def complain(notify, recipient) -> None:
    record = event("Complaint", address=recipient.email, campaign=recipient.campaign_id, recipient=recipient.pk)
    assert notify(record).status_code == 200


def test_complaints_through_the_webhook_pause_with_the_figures_and_the_rule(notify, settings):
    settings.GUARD_MIN_DELIVERIES = 100
    settings.GUARD_MIN_COMPLAINTS = 3
    campaign, recipients = campaign_with_recipients(100)
    deliver(recipients)

    complain(notify, recipients[0])
    complain(notify, recipients[1])
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SENDING  # 2% so far, but two complaints prove little

    complain(notify, recipients[2])

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.PAUSED
    reason = campaign.status_reason
    assert "3 complaints from 100 deliveries (3.00%)" in reason
    assert "95%" in reason and "0.10%" in reason and "at least 3 complaints" in reason


def test_after_a_resume_the_guard_judges_only_what_happens_next(notify, settings):
    settings.GUARD_MIN_DELIVERIES = 100
    settings.GUARD_MIN_COMPLAINTS = 3
    campaign, recipients = campaign_with_recipients(210)
    deliver(recipients[:100])
    for recipient in recipients[:3]:
        complain(notify, recipient)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.PAUSED

    campaign_resume(campaign_id=campaign.pk)
    complain(notify, recipients[3])  # evidence the person has just reviewed, plus one more
    deliver(recipients[100:150])
    complain(notify, recipients[4])

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SENDING
    stats = CampaignStats.objects.get(campaign=campaign)
    assert (stats.delivered, stats.complained) == (150, 5)

    deliver(recipients[150:210])
    complain(notify, recipients[5])
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.PAUSED
    assert "3 complaints from 110 deliveries" in campaign.status_reason
    assert "since sending was resumed" in campaign.status_reason
