from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from audiences.models import ContactList
from audiences.selectors import contacts_total
from campaigns.models import Campaign
from organisations.scope import in_organisation
from reports import account


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    # No COUNT(*) of a million contacts per login.
    contact_count, contact_count_estimated = contacts_total(organisation=request.organisation)
    campaigns = in_organisation(Campaign.objects.filter(kind=Campaign.Kind.CAMPAIGN), request)
    context = {
        "recent": campaigns[:5],
        "campaign_count": campaigns.count(),
        "contact_count": contact_count,
        "contact_count_estimated": contact_count_estimated,
        "list_count": in_organisation(ContactList.objects.all(), request).count(),
    }
    return render(request, "home.html", context)


@require_GET
def settings_page(request: HttpRequest) -> HttpResponse:
    from django.conf import settings

    send_rate = account.send_rate()
    rows = [
        ("Verified senders", ", ".join(settings.SENDER_ADDRESSES)),
        ("SES region", settings.AWS_SES_REGION_NAME),
        ("SES endpoint", settings.AWS_SES_REGION_ENDPOINT_URL or "AWS (default)"),
        ("Configuration set", settings.AWS_SES_CONFIGURATION_SET or "none"),
        # The same reading as the reports' account-health panel: the rate the engine sends at.
        ("Send rate in force", send_rate.text),
        ("Rate limiter", settings.RATE_LIMITER),
        ("Public site URL", settings.SITE_URL),
    ]
    return render(request, "settings.html", {"rows": rows, "send_rate": send_rate})
