"""Template access to the report figures' single definitions (reports.selectors), for pages
rendered by other apps' views, e.g. the campaign page's stats partial."""

from __future__ import annotations

from django import template

from reports import selectors
from stats.models import CampaignStats

register = template.Library()


@register.filter
def opened(stats: CampaignStats) -> selectors.Engagement:
    return selectors.opened(stats)


@register.filter
def clicked(stats: CampaignStats) -> selectors.Engagement:
    return selectors.clicked(stats)
