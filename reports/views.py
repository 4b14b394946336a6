"""Report pages: the campaigns dashboard, one campaign's live report, comparisons.

Figures (dashboard, report, comparison) cover the request's organisation and its children;
recipients (table, export, segment, timeline) the own organisation only (reports.selectors).
"""

from __future__ import annotations

import csv
from urllib.parse import urlencode

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseStopPolling

from audiences.models import Suppression
from campaigns import selectors as campaign_selectors
from campaigns.models import Campaign, Recipient
from common.csvfiles import Echo, formula_escape
from common.params import id_params
from common.tables import table_paginate
from organisations import audit, scope
from reports import account, charts, recipients, selectors
from reports.messages import SEARCH_MAX, MessageTable, messages_listed
from stats.models import CampaignStats
from tracking.models import Event

# People solid and on top; everything (automatic opens and clicks included) dashed beneath.
ACTIVITY_STYLES = {
    "Opens (human)": ("#1d4ed8", False),
    "Opens (all)": ("#60a5fa", True),
    "Clicks (human)": ("#15803d", False),
    "Clicks (all)": ("#4ade80", True),
}


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    organisation_ids = selectors.report_organisation_ids(request.organisation)
    reached = selectors.report_campaigns(request.organisation, organisation_ids=organisation_ids)
    campaigns = list(reached.exclude(status=Campaign.Status.DRAFT)[:100])
    stats = {s.campaign_id: s for s in CampaignStats.objects.filter(campaign__in=campaigns)}
    rows = []
    for campaign in campaigns:
        stat = stats.get(campaign.pk) or CampaignStats(campaign=campaign)
        total = stat.recipients
        rows.append(
            {
                "campaign": campaign,
                "total": total,
                "sent": stat.sent,
                "percent": round(100 * stat.sent / total) if total else 0,
                "delivery": selectors.Rate("", selectors._ratio(stat.delivered, stat.sent), "").percent,
                "opened": selectors.opened(stat),
                "open": selectors.Rate("", selectors._ratio(stat.unique_human_opens, stat.delivered), "").percent,
                "click": selectors.Rate("", selectors._ratio(stat.unique_human_clicks, stat.delivered), "").percent,
                # Hard bounces, as SES counts its bounce rate.
                "bounce": selectors.Rate("", selectors._ratio(stat.bounced_hard, stat.sent), "").percent,
            }
        )
    context = {
        "rows": rows,
        # With child organisations, each row says whose campaign it is.
        "with_children": len(organisation_ids) > 1,
        "health": selectors.account_health(),
        "quota": account.send_quota(),
        "send_rate": account.send_rate(),
        "suppressed": Suppression.objects.count(),
    }
    return render(request, "reports/index.html", context)


def _report_context(request: HttpRequest, campaign: Campaign) -> dict:
    figures = selectors.headline(campaign)
    times, series, step = selectors.activity_series(campaign)
    return {
        "campaign": campaign,
        # A child organisation's campaign: its figures only (no recipients, no campaign page).
        "own_campaign": campaign.organisation_id == request.organisation.id,
        "figures": figures,
        "interval": selectors.refresh_interval(campaign, figures),
        "activity_chart": charts.line_chart(
            times,
            series,
            title=f"Opens and clicks per {step.label}",
            time_format=step.time_format,
            styles=ACTIVITY_STYLES,
        ),
        "activity_unit": step.label,
        "funnel_chart": charts.bar_chart(selectors.funnel(campaign, figures), title="Delivery funnel"),
        "bounce_chart": charts.bar_chart(selectors.bounce_reasons(campaign), title="Bounce reasons", color="#dc2626"),
        "links_chart": charts.bar_chart(selectors.top_links(campaign), title="Top links", color="#16a34a"),
        "domains": selectors.domain_table(campaign),
    }


@require_GET
def campaign_report(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = selectors.report_campaign_or_404(request, pk)
    return render(request, "reports/campaign.html", _report_context(request, campaign))


@require_GET
def campaign_live(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = selectors.report_campaign_or_404(request, pk)
    context = _report_context(request, campaign)
    response = render(request, "reports/campaign.html#live", context)
    if context["interval"] is None:
        stop = HttpResponseStopPolling()
        stop.content = response.content
        return stop
    return response


@require_GET
def compare(request: HttpRequest) -> HttpResponse:
    ids = id_params(request.GET.getlist("ids"))
    if len(ids) < 2:
        messages.error(request, "Tick at least two campaigns to compare them.")
        return redirect("reports:index")
    campaigns = selectors.report_campaigns_or_404(request, ids)
    columns = [(campaign, selectors.headline(campaign)) for campaign in campaigns]
    labels = [rate.label for rate in columns[0][1]["rates"]] if columns else []
    rows = [(label, [figures["rates"][index].percent for _, figures in columns]) for index, label in enumerate(labels)]
    # (label, key, [(campaign, Engagement), …]): people as the headline, the raw figure beside it.
    engagement = [
        (name, key, [(campaign, figures[key]) for campaign, figures in columns])
        for name, key in [("Opened", "opened"), ("Clicked", "clicked")]
    ]
    counts = [
        (name, [figures[key] for _, figures in columns])
        for name, key in [
            ("Recipients", "recipients"),
            ("Sent", "sent"),
            ("Delivered", "delivered"),
            ("Bounced (hard)", "bounced_hard"),
            ("Bounced (soft)", "bounced_soft"),
            ("Complaints", "complained"),
            ("Unsubscribes", "unsubscribed"),
        ]
    ]
    return render(
        request,
        "reports/compare.html",
        {
            "campaigns": campaigns,
            "rows": rows,
            "counts": counts,
            "engagement": engagement,
            "with_children": any(campaign.organisation_id != request.organisation.id for campaign in campaigns),
        },
    )


# --- single messages (API) ---------------------------------------------------------------------


@require_GET
def single_messages(request: HttpRequest) -> HttpResponse:
    """The organisation's single messages: did each one go out, and what SES said about it."""
    search = request.GET.get("q", "")[:SEARCH_MAX].strip()
    table = MessageTable(
        messages_listed(organisation=request.organisation, search=search),
        empty_text=f"No single message to an address starting with “{search}”.",
    )
    table_paginate(request, table, per_page=50)
    context = {
        "table": table,
        "search": search,
        # One index look-up: with no message at all, the page explains where they come from.
        "none_yet": not search and not campaign_selectors.messages_of(request.organisation).exists(),
    }
    template = "reports/messages.html"
    return render(request, f"{template}#messages" if request.htmx else template, context)


# --- recipients of a campaign -----------------------------------------------------------------


def _recipient_filters(request: HttpRequest) -> dict[str, str]:
    outcome = request.GET.get("outcome", "")
    return {
        "outcome": outcome if outcome in recipients.OUTCOMES else "",
        "search": request.GET.get("q", "")[:200],
        "link": request.GET.get("link", "")[:2000],
    }


@require_GET
def campaign_recipients(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = selectors.own_campaign_or_404(request, pk)
    filters = _recipient_filters(request)
    table = recipients.RecipientTable(recipients.recipients_filtered(campaign=campaign, **filters))
    table_paginate(request, table, per_page=25)
    context = {"campaign": campaign, "table": table, "filters": filters, "outcomes": recipients.OUTCOMES}
    template = "reports/campaign_recipients.html"
    return render(request, f"{template}#recipients" if request.htmx else template, context)


@require_GET
def campaign_recipients_export(request: HttpRequest, pk: int) -> StreamingHttpResponse:
    campaign = selectors.own_campaign_or_404(request, pk)
    filters = _recipient_filters(request)
    rows = recipients.recipients_filtered(campaign=campaign, **filters)
    # Recorded before streaming: an interrupted download may still have carried addresses away.
    count = rows.count()
    audit.record(
        request,
        audit.Action.EXPORT,
        f"Exported {count:,} recipients of “{campaign.name}” ({filters['outcome'] or 'all'})",
        object_type="campaign",
        object_id=campaign.pk,
        rows=count,
    )
    writer = csv.writer(Echo())
    response = StreamingHttpResponse(
        (writer.writerow([formula_escape(value) for value in row]) for row in recipients.export_rows(rows)),
        content_type="text/csv; charset=utf-8",
    )
    name = filters["outcome"] or "all"
    response["Content-Disposition"] = f'attachment; filename="campaign-{campaign.pk}-{name}.csv"'
    return response


@require_POST
def campaign_recipients_segment(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = selectors.own_campaign_or_404(request, pk)
    filters = {
        "outcome": request.POST.get("outcome", ""),
        "search": request.POST.get("q", "")[:200],
        "link": request.POST.get("link", "")[:2000],
    }
    try:
        segment = recipients.segment_from_filter(campaign=campaign, **filters)
    except ValueError as problem:
        messages.error(request, str(problem))
    else:
        messages.success(
            request, f"Saved as the segment “{segment.name}”: choose it as the audience of your next campaign."
        )
    query = urlencode({"outcome": filters["outcome"], "q": filters["search"]})
    return redirect(f"{reverse('reports:recipients', args=[pk])}?{query}")


@require_GET
def recipient_timeline(request: HttpRequest, pk: int) -> HttpResponse:
    recipient = scope.get_or_404(
        request, Recipient.objects.select_related("campaign"), path="campaign__organisation", pk=pk
    )
    events = Event.objects.filter(recipient=recipient).order_by("occurred_at", "id")[:200]
    return render(request, "reports/_timeline.html", {"recipient": recipient, "events": events})
