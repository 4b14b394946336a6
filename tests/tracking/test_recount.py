"""Counters always equal a recount of the events: `tracking_recount` proves it and repairs drift."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from stats.models import CampaignStats
from tests.sns import campaign_with_recipients
from tests.tracking.records import event

pytestmark = pytest.mark.django_db
PROXY = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"


def test_counters_recorded_through_the_webhook_equal_a_recount(notify):
    campaign, recipients = campaign_with_recipients(4)
    for n, recipient in enumerate(recipients):
        tags = {"address": recipient.email, "campaign": campaign.pk, "recipient": recipient.pk}
        notify(event("Delivery", **tags))
        notify(event("Open", **tags, userAgent=PROXY if n == 0 else "Mozilla/5.0 (X11; Linux) Firefox/130.0"))
        notify(event("Open", **tags, after=900))
        if n < 2:
            notify(event("Click", **tags))
    notify(event("Bounce", **tags, bounceType="Transient"))
    notify(event("Complaint", **tags))
    out = StringIO()

    call_command("tracking_recount", stdout=out)

    assert "equal a recount" in out.getvalue()
    counters = CampaignStats.objects.get(campaign=campaign)
    assert (counters.opens, counters.human_opens, counters.unique_opens, counters.unique_human_opens) == (8, 7, 4, 4)


def test_it_reports_and_repairs_drifted_counters():
    campaign, (recipient,) = campaign_with_recipients(1)
    from tests.sns import new_id
    from tracking.storing import event_record

    event_record(
        sns_message_id=new_id(),
        record=event("Delivery", address=recipient.email, campaign=campaign.pk, recipient=recipient.pk),
    )
    CampaignStats.objects.filter(campaign=campaign).update(delivered=7)

    with pytest.raises(CommandError, match="1 campaign"):
        call_command("tracking_recount", stdout=StringIO())
    out = StringIO()
    call_command("tracking_recount", "--fix", stdout=out)

    assert "delivered 7 → 1" in out.getvalue()
    assert CampaignStats.objects.get(campaign=campaign).delivered == 1
