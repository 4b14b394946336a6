"""Campaign reads, each scoped by the organisation it is asked for.

Views never filter by organisation themselves: they pass ``request.organisation`` here, and load
single objects with ``organisations.scope.get_or_404`` (404, audited, for another organisation's ids).
"""

from __future__ import annotations

from django.db.models import F, QuerySet

from audiences.models import ContactList, Segment
from campaigns.models import Campaign, CampaignAttachment, CampaignTemplate, Layout
from organisations.models import Organisation


def campaigns_of(organisation: Organisation) -> QuerySet[Campaign]:
    """The campaign list: newest first (campaign_org_kind_created_idx), with the counters' recipient
    total (not COUNT(*) over every campaign's recipients: a million each, at scale). Single messages
    sent through the API are campaigns of one recipient, never listed here (``messages_of``)."""
    return (
        Campaign.objects.filter(organisation=organisation, kind=Campaign.Kind.CAMPAIGN)
        .select_related("stats")
        .annotate(recipient_count=F("stats__recipients"))
    )


def messages_of(organisation: Organisation) -> QuerySet[Campaign]:
    """Single messages sent through the API, newest first."""
    return Campaign.objects.filter(organisation=organisation, kind=Campaign.Kind.MESSAGE)


def campaign_of(organisation: Organisation, campaign_id: int) -> Campaign | None:
    return Campaign.objects.filter(organisation=organisation, pk=campaign_id).first()


def layouts_of(organisation: Organisation) -> QuerySet[Layout]:
    return Layout.objects.filter(organisation=organisation)


def templates_of(organisation: Organisation) -> QuerySet[CampaignTemplate]:
    return CampaignTemplate.objects.filter(organisation=organisation).select_related("layout")


def lists_of(organisation: Organisation) -> QuerySet[ContactList]:
    return ContactList.objects.filter(organisation=organisation)


def segments_of(organisation: Organisation) -> QuerySet[Segment]:
    return Segment.objects.filter(organisation=organisation)


def attachments_of(campaign: Campaign) -> QuerySet[CampaignAttachment]:
    return CampaignAttachment.objects.filter(campaign=campaign, organisation_id=campaign.organisation_id)


def audience_foreign_parts(campaign: Campaign) -> list[str]:
    """The campaign's lists, segments and layout that belong to another organisation, by name.

    Forms only offer the campaign's organisation's own; a row changed behind their back (the
    admin, raw SQL) must not reach another organisation's contacts, so sending re-checks here.
    """
    own = campaign.organisation_id
    found = []
    for label, related in (
        ("list", campaign.include_lists),
        ("list", campaign.exclude_lists),
        ("segment", campaign.include_segments),
        ("segment", campaign.exclude_segments),
    ):
        found += [f"{label} “{name}”" for name in related.exclude(organisation_id=own).values_list("name", flat=True)]
    if campaign.layout_id and Layout.objects.filter(pk=campaign.layout_id).exclude(organisation_id=own).exists():
        found.append("its layout")
    return found
