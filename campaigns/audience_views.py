"""Audience pages: contacts, lists, segments, imports and the suppression list."""

from __future__ import annotations

from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from campaigns.models import Contact, ContactList


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    lists = ContactList.objects.annotate(
        subscribed=Count("subscriptions", filter=Q(subscriptions__status="subscribed"))
    )
    return render(request, "campaigns/list_index.html", {"lists": lists, "contact_count": Contact.objects.count()})
