"""Campaigns through the API: list, read with the report page's figures, send and schedule."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.models import Campaign
from organisations.models import AuditEntry, Role
from reports.selectors import headline
from tests.factories import CampaignFactory, campaign_to, list_with_contacts
from tests.sns import campaign_with_recipients, new_id
from tests.tracking.records import event

pytestmark = pytest.mark.django_db


def test_campaigns_are_paged_newest_first_and_scoped(club, other_club, key_for):
    mine = [CampaignFactory(organisation=club, name=f"News {n}") for n in range(3)]
    CampaignFactory(organisation=other_club)
    viewer = key_for(club, Role.VIEWER)[1]
    first = viewer.get("/api/v1/campaigns", page_size=2).json()
    assert (first["count"], first["next_page"]) == (3, 2)
    second = viewer.get("/api/v1/campaigns", page_size=2, page=2).json()
    assert second["next_page"] is None
    names = [row["name"] for row in first["items"] + second["items"]]
    assert names == [campaign.name for campaign in reversed(mine)]
    assert viewer.get("/api/v1/campaigns", page_size=0).status_code == 422


def test_a_campaigns_figures_equal_the_report_pages(club, key_for, notify):
    campaign, recipients = campaign_with_recipients(4)
    for index, kind in enumerate(["Delivery", "Delivery", "Bounce", "Complaint"]):
        record = event(kind, address=recipients[index].email, message_id=recipients[index].ses_message_id,
                       campaign=campaign.pk, recipient=recipients[index].pk)  # fmt: skip
        assert notify(record, message_id=new_id()).status_code == 200
    answer = key_for(club, Role.VIEWER)[1].get(f"/api/v1/campaigns/{campaign.pk}").json()
    figures = headline(campaign)
    for name in ("recipients", "sent", "delivered", "bounced_hard", "bounced_soft", "complained", "unsubscribed"):
        assert answer["figures"][name] == figures[name], name
    assert answer["figures"]["opened"]["people"] == figures["opened"].people
    assert [(rate["label"], rate["value"]) for rate in answer["rates"]] == [
        (rate.label, rate.value) for rate in figures["rates"]
    ]
    assert (answer["figures"]["delivered"], answer["figures"]["bounced_hard"]) == (2, 1)


def test_another_organisations_campaign_answers_404_and_is_audited(club, other_club, key_for):
    theirs = CampaignFactory(organisation=other_club)
    sender = key_for(club, Role.SENDER)[1]
    assert sender.get(f"/api/v1/campaigns/{theirs.pk}").status_code == 404
    assert sender.post(f"/api/v1/campaigns/{theirs.pk}/send").status_code == 404
    assert Campaign.objects.get(pk=theirs.pk).status == Campaign.Status.DRAFT
    assert AuditEntry.objects.filter(organisation=club, action=AuditEntry.Action.FORBIDDEN).exists()


def test_a_sender_sends_a_draft_and_it_is_audited(club, key_for):
    campaign = campaign_to(list_with_contacts(2))
    response = key_for(club, Role.SENDER)[1].post(f"/api/v1/campaigns/{campaign.pk}/send")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == Campaign.Status.SENDING
    entry = AuditEntry.objects.get(organisation=club, action=AuditEntry.Action.SEND)
    assert entry.object_id == str(campaign.pk) and campaign.name in entry.summary


def test_an_editor_cannot_send(club, key_for):
    campaign = campaign_to(list_with_contacts(2))
    assert key_for(club, Role.EDITOR)[1].post(f"/api/v1/campaigns/{campaign.pk}/send").status_code == 403
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.DRAFT


def test_sending_a_sent_campaign_answers_409_in_the_services_words(club, key_for):
    campaign, _ = campaign_with_recipients(1, status=Campaign.Status.SENT)
    response = key_for(club, Role.SENDER)[1].post(f"/api/v1/campaigns/{campaign.pk}/send")
    assert response.status_code == 409
    assert response.json()["detail"] == "A sent campaign cannot be sent."
    assert not AuditEntry.objects.filter(action=AuditEntry.Action.SEND).exists()


def test_a_sender_schedules_with_a_zone(club, key_for):
    campaign = campaign_to(list_with_contacts(1))
    when = (timezone.now() + timedelta(days=1)).replace(microsecond=0)
    send_at = when.astimezone(timezone.get_fixed_timezone(60)).isoformat()
    response = key_for(club, Role.SENDER)[1].post(f"/api/v1/campaigns/{campaign.pk}/schedule", {"send_at": send_at})
    assert response.status_code == 200, response.content
    campaign.refresh_from_db()
    assert (campaign.status, campaign.scheduled_at) == (Campaign.Status.SCHEDULED, when)
    assert AuditEntry.objects.filter(organisation=club, action=AuditEntry.Action.SCHEDULE).count() == 1


def test_schedule_refusals(club, key_for):
    campaign = campaign_to(list_with_contacts(1))
    sender = key_for(club, Role.SENDER)[1]
    path = f"/api/v1/campaigns/{campaign.pk}/schedule"
    assert sender.post(path, {"send_at": "2030-01-01T10:00:00"}).status_code == 422  # no zone
    assert sender.post(path, {"send_at": "next tuesday"}).status_code == 422
    assert sender.post(path, {}).status_code == 422
    past = sender.post(path, {"send_at": "2020-01-01T10:00:00Z"})
    assert past.status_code == 409 and "future" in past.json()["detail"]
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.DRAFT
