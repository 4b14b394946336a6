"""The webhooks pages: an organisation's administrators register endpoints, see each one's
delivery log, and disable, enable, renew the secret of, or delete an endpoint."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.paginator import EmptyPage, Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from api.feed import FEED_TYPES
from api.models import WebhookEndpoint
from api.webhooks import (
    WebhookRefused,
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoint_disable,
    webhook_endpoint_enable,
    webhook_secret_renew,
)
from common.pages import confirm_page
from common.params import id_param
from organisations.scope import get_or_404

DELIVERIES_PER_PAGE = 50
TYPE_LABELS = {
    "bounce": "Bounces",
    "complaint": "Complaints",
    "unsubscribe": "Unsubscribes",
    "delivery": "Deliveries",
    "campaign_finished": "Campaigns finished",
}


class EndpointForm(forms.Form):
    url = forms.CharField(
        max_length=500,
        label="Address",
        help_text="Where to POST the events, e.g. https://members.example.org/hooks/cobalt-mail.",
        widget=forms.URLInput(attrs={"placeholder": "https://", "class": "input"}),
    )
    description = forms.CharField(
        max_length=100,
        required=False,
        help_text="Which program receives them, e.g. “Membership site”.",
        widget=forms.TextInput(attrs={"class": "input"}),
    )
    event_types = forms.MultipleChoiceField(
        choices=[(name, TYPE_LABELS.get(name, name)) for name in FEED_TYPES],
        widget=forms.CheckboxSelectMultiple,
        label="Events",
        initial=["bounce", "complaint", "unsubscribe"],
    )


@require_http_methods(["GET", "POST"])
def endpoints(request: HttpRequest) -> HttpResponse:
    form = EndpointForm(request.POST or None)
    created = None
    if request.method == "POST" and form.is_valid():
        try:
            created = webhook_endpoint_create(
                organisation=request.organisation,
                url=form.cleaned_data["url"],
                event_types=form.cleaned_data["event_types"],
                description=form.cleaned_data["description"],
                created_by=request.user,
                request=request,
            )
        except WebhookRefused as refusal:
            form.add_error("url", str(refusal))
        else:
            form = EndpointForm()
    listed = list(WebhookEndpoint.objects.filter(organisation=request.organisation))
    for endpoint in listed:
        endpoint.type_labels = [TYPE_LABELS.get(name, name) for name in endpoint.event_types]
    context = {
        "endpoints": listed,
        "form": form,
        "created": created,
        "tab": "webhooks",
    }
    return render(request, "api/webhooks.html", context, status=400 if form.errors else 200)


@require_GET
def detail(request: HttpRequest, pk: int) -> HttpResponse:
    endpoint = get_or_404(request, WebhookEndpoint, pk=pk)
    paginator = Paginator(endpoint.deliveries.order_by("-created_at", "-id"), DELIVERIES_PER_PAGE)
    try:
        page = paginator.page(id_param(request.GET.get("page")) or 1)
    except EmptyPage:
        page = paginator.page(1)
    endpoint.type_labels = [TYPE_LABELS.get(name, name) for name in endpoint.event_types]
    context = {"endpoint": endpoint, "page": page, "tab": "webhooks"}
    return render(request, "api/webhook_detail.html", context)


@require_POST
def disable(request: HttpRequest, pk: int) -> HttpResponse:
    endpoint = get_or_404(request, WebhookEndpoint, pk=pk)
    return _act(request, endpoint, webhook_endpoint_disable, "Disabled: nothing is sent to it until it is enabled.")


@require_POST
def enable(request: HttpRequest, pk: int) -> HttpResponse:
    endpoint = get_or_404(request, WebhookEndpoint, pk=pk)
    return _act(request, endpoint, webhook_endpoint_enable, "Enabled: events owed since it stopped are sent first.")


def _act(request: HttpRequest, endpoint: WebhookEndpoint, action, success: str) -> HttpResponse:
    try:
        action(endpoint=endpoint, request=request)
    except WebhookRefused as refusal:
        messages.error(request, str(refusal))
    else:
        messages.success(request, success)
    return redirect("webhooks:detail", endpoint.pk)


@require_http_methods(["GET", "POST"])
def renew_secret(request: HttpRequest, pk: int) -> HttpResponse:
    endpoint = get_or_404(request, WebhookEndpoint, pk=pk)
    if request.method == "GET":
        return confirm_page(
            request,
            title="Give the endpoint a new secret?",
            text=f"Deliveries to {endpoint.url} are signed with the new secret at once: the receiver "
            "must be given it, or it will reject them (they are retried for a day).",
            button="Make a new secret",
            cancel=reverse("webhooks:detail", args=[endpoint.pk]),
            crumbs=_crumbs(endpoint),
        )
    secret = webhook_secret_renew(endpoint=endpoint, request=request)
    endpoint.secret = secret
    context = {"endpoint": endpoint, "secret": secret, "tab": "webhooks"}
    return render(request, "api/webhook_secret.html", context)


@require_http_methods(["GET", "POST"])
def delete(request: HttpRequest, pk: int) -> HttpResponse:
    endpoint = get_or_404(request, WebhookEndpoint, pk=pk)
    if request.method == "GET":
        return confirm_page(
            request,
            title="Delete the webhook endpoint?",
            text=f"Nothing more is sent to {endpoint.url}, and its delivery log is deleted with it.",
            button="Delete the endpoint",
            cancel=reverse("webhooks:detail", args=[endpoint.pk]),
            crumbs=_crumbs(endpoint),
        )
    webhook_endpoint_delete(endpoint=endpoint, request=request)
    messages.success(request, f"The endpoint {endpoint.url} is deleted.")
    return redirect("webhooks:list")


def _crumbs(endpoint: WebhookEndpoint) -> tuple[tuple[str, str], ...]:
    return (
        ("Webhooks", reverse("webhooks:list")),
        (endpoint.url[:60], reverse("webhooks:detail", args=[endpoint.pk])),
    )
