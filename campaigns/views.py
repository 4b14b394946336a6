"""Campaign pages (staff) and the public unsubscribe / preference pages."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseStopPolling

from audiences.models import ContactList
from campaigns import selectors, services
from campaigns.composer.rendering import compile_campaign, recipient_context, render_for
from campaigns.forms import CampaignForm, ScheduleForm
from campaigns.models import Campaign, Layout
from campaigns.progress import progress
from campaigns.snapshot import audience_count, audience_left_out
from campaigns.tokens import LinkPurpose
from campaigns.unsubscribe import (
    RecipientLink,
    layout_page_colours,
    masked_email,
    page_branding,
    preferences_save,
    preferences_token_for,
    recipient_for_link,
    resubscribe_recipient,
    subscription_state,
    unsubscribe_recipient,
    web_copy_page,
)
from common.params import id_params
from common.timezones import SESSION_TIME_ZONE
from organisations import audit
from organisations.scope import get_or_404


def _campaign(request: HttpRequest, pk: int, *, with_stats: bool = False) -> Campaign:
    """The request's organisation's campaign; another organisation's id answers 404 (audited).

    ``with_stats``: its figures' row in the same statement (the progress partial shows them)."""
    # Single messages (API) are campaigns of one recipient, not staff's to edit, send or pause here.
    campaigns = Campaign.objects.filter(kind=Campaign.Kind.CAMPAIGN)
    return get_or_404(request, campaigns.select_related("stats") if with_stats else campaigns, pk=pk)


@require_GET
def campaign_list(request: HttpRequest) -> HttpResponse:
    campaigns = selectors.campaigns_of(request.organisation)
    return render(request, "campaigns/campaign_list.html", {"campaigns": campaigns})


@require_http_methods(["GET", "POST"])
def campaign_create(request: HttpRequest) -> HttpResponse:
    form = CampaignForm(request.POST or None, organisation=request.organisation)
    if request.method == "POST" and form.is_valid():
        form.instance.created_by = request.user
        form.instance.organisation = request.organisation
        campaign = form.save()
        messages.success(request, f"Campaign “{campaign.name}” saved as a draft.")
        return redirect("campaigns:detail", pk=campaign.pk)
    return render(request, "campaigns/campaign_form.html", {"form": form, "campaign": None})


@require_http_methods(["GET", "POST"])
def campaign_edit(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = _campaign(request, pk)
    if not campaign.is_editable:
        messages.error(request, "This campaign has started; its content can no longer change. Duplicate it instead.")
        return redirect("campaigns:detail", pk=pk)
    form = CampaignForm(request.POST or None, instance=campaign, organisation=request.organisation)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, "Changes saved.")
        return redirect("campaigns:detail", pk=pk)
    return render(request, "campaigns/campaign_form.html", {"form": form, "campaign": campaign})


@require_GET
def campaign_detail(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = _campaign(request, pk, with_stats=True)
    schedule_form = ScheduleForm(initial={"time_zone": request.session.get(SESSION_TIME_ZONE, settings.TIME_ZONE)})
    return _detail_page(request, campaign, schedule_form)


def _detail_page(request: HttpRequest, campaign: Campaign, schedule_form: ScheduleForm, *, status: int = 200):
    # Until the staff member has chosen a zone, the browser preselects its own (static/js/app.js);
    # a zone they typed into a refused form is theirs too.
    chosen = schedule_form.is_bound or SESSION_TIME_ZONE in request.session
    schedule_form.fields["time_zone"].widget.attrs.update(
        {"data-browser-time-zone": "", "data-user-chosen": "1" if chosen else "0"}
    )
    context = {
        "campaign": campaign,
        "progress": progress(campaign),
        "schedule_form": schedule_form,
        "audience": {
            "include_lists": list(campaign.include_lists.all()),
            "include_segments": list(campaign.include_segments.all()),
            "exclude_lists": list(campaign.exclude_lists.all()),
            "exclude_segments": list(campaign.exclude_segments.all()),
        },
    }
    if campaign.snapshot_at is None:
        context["audience_count"] = audience_count(campaign)
        context["left_out"] = audience_left_out(campaign)
    return render(request, "campaigns/campaign_detail.html", context, status=status)


@require_GET
def campaign_progress(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = _campaign(request, pk, with_stats=True)
    response = render(
        request, "campaigns/campaign_detail.html#progress", {"campaign": campaign, "progress": progress(campaign)}
    )
    if campaign.is_finished or campaign.status == Campaign.Status.DRAFT:
        stop = HttpResponseStopPolling()
        stop.content = response.content
        return stop
    return response


def _act(request: HttpRequest, pk: int, action, success: str, *, audited: tuple[str, str]) -> HttpResponse:
    """Run a life-cycle service on the organisation's campaign (404 before any service runs for an
    unknown or another organisation's id) and record what was done in the audit log."""
    campaign = _campaign(request, pk)
    try:
        action(campaign_id=pk)
    except services.CampaignError as error:
        messages.error(request, str(error))
    else:
        _audit(request, campaign, *audited)
        messages.success(request, success)
    return redirect("campaigns:detail", pk=pk)


def _audit(request: HttpRequest, campaign: Campaign, action: str, verb: str, *, detail: str = "") -> None:
    summary = f"{verb} campaign “{campaign.name}”{detail}"
    audit.record(request, action, summary, object_type="campaign", object_id=campaign.pk)


@require_POST
def campaign_send(request: HttpRequest, pk: int) -> HttpResponse:
    return _act(
        request,
        pk,
        services.campaign_send_now,
        "Sending has started. Progress updates below.",
        audited=(audit.Action.SEND, "Started sending"),
    )


@require_POST
def campaign_schedule(request: HttpRequest, pk: int) -> HttpResponse:
    """A refused schedule shows the page again with what was typed and the reason beside it."""
    campaign = _campaign(request, pk)
    form = ScheduleForm(request.POST)
    if not form.is_valid():
        form.add_error(None, "Choose a valid date, time and time zone to schedule the campaign.")
        return _detail_page(request, campaign, form, status=400)
    when = form.cleaned_data["send_at"]
    # Remember the staff member's zone: times are shown in it from now on (stored in UTC).
    request.session[SESSION_TIME_ZONE] = form.cleaned_data["time_zone"]
    try:
        services.campaign_schedule(campaign_id=pk, when=when)
    except services.CampaignError as error:
        form.add_error(None, str(error))
        return _detail_page(request, campaign, form, status=400)
    local = when.strftime("%d %b %Y %H:%M") + f" ({form.cleaned_data['time_zone']})"
    _audit(request, campaign, audit.Action.SCHEDULE, "Scheduled", detail=f" for {local}")
    messages.success(request, f"Scheduled for {local}.")
    return redirect("campaigns:detail", pk=pk)


@require_POST
def campaign_unschedule(request: HttpRequest, pk: int) -> HttpResponse:
    return _act(
        request,
        pk,
        services.campaign_unschedule,
        "Unscheduled: the campaign is a draft again.",
        audited=(audit.Action.SCHEDULE, "Unscheduled"),
    )


@require_POST
def campaign_pause(request: HttpRequest, pk: int) -> HttpResponse:
    return _act(
        request,
        pk,
        services.campaign_pause,
        "Paused. Messages already handed to SES will still arrive.",
        audited=(audit.Action.PAUSE, "Paused"),
    )


@require_POST
def campaign_resume(request: HttpRequest, pk: int) -> HttpResponse:
    return _act(request, pk, services.campaign_resume, "Resumed.", audited=(audit.Action.RESUME, "Resumed"))


@require_POST
def campaign_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    return _act(
        request,
        pk,
        services.campaign_cancel,
        "Cancelled. Nobody else will receive it.",
        audited=(audit.Action.CANCEL, "Cancelled"),
    )


@require_POST
def campaign_duplicate(request: HttpRequest, pk: int) -> HttpResponse:
    copy = services.campaign_duplicate(campaign_id=_campaign(request, pk).pk, user=request.user)
    messages.success(request, "Duplicated: this is the new draft.")
    return redirect("campaigns:detail", pk=copy.pk)


# --- public pages: unsubscribe, preferences, view online ----------------------------------------


def _link_refused(request: HttpRequest, link: RecipientLink) -> HttpResponse:
    # 404 reveals nothing about whether the recipient exists; 410 for a genuine link past its time.
    status = 410 if link.problem == "expired" else 404
    return render(request, "public/link_invalid.html", {"expired": link.problem == "expired"}, status=status)


@csrf_exempt  # RFC 8058 one-click POSTs come from mailbox providers, without a CSRF token.
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    link = recipient_for_link(token, purpose=LinkPurpose.UNSUBSCRIBE)
    if link.recipient is None:
        return _link_refused(request, link)
    if request.method == "POST":
        unsubscribe_recipient(recipient=link.recipient)
        return render(request, "public/unsubscribed.html", _unsubscribe_context(link, token))
    context = _unsubscribe_context(link, token)
    # Someone already unsubscribed who opens the link again is told so (and may come back).
    template = "public/unsubscribed.html" if context["state"].unsubscribed else "public/unsubscribe_confirm.html"
    return render(request, template, context)


def _unsubscribe_context(link: RecipientLink, token: str) -> dict:
    recipient = link.recipient
    state = subscription_state(recipient)
    return {
        # An old-style token may come from a forwarded view-online link: mask the address and
        # offer no way on to the preference page, nor back onto the lists (campaigns/tokens.py).
        "address": masked_email(recipient.email) if link.legacy else recipient.email,
        "preferences_token": "" if link.legacy else preferences_token_for(recipient),
        "branding": page_branding(recipient.campaign),
        "state": state,
        "can_resubscribe": state.can_resubscribe and not link.legacy,
        "token": token,
    }


@require_POST  # CSRF-checked, unlike the one-click unsubscribe above
def resubscribe(request: HttpRequest, token: str) -> HttpResponse:
    link = recipient_for_link(token, purpose=LinkPurpose.UNSUBSCRIBE)
    if link.recipient is None:
        return _link_refused(request, link)
    lists = [] if link.legacy else resubscribe_recipient(recipient=link.recipient)
    if not lists:
        # Not open to this address (bounced, complained, suppressed) or a forwarded link: say why.
        return render(request, "public/unsubscribed.html", _unsubscribe_context(link, token))
    messages.success(request, f"Welcome back: you are subscribed again to {', '.join(lists)}.")
    return redirect("campaigns:preferences", token=preferences_token_for(link.recipient))


@require_http_methods(["GET", "POST"])
def preferences(request: HttpRequest, token: str) -> HttpResponse:
    link = recipient_for_link(token, purpose=LinkPurpose.PREFERENCES)
    if link.recipient is None or link.recipient.contact is None:
        return _link_refused(request, link)
    contact = link.recipient.contact
    # The lists of the organisation that sent this email, which the contact was ever on: another
    # organisation's lists (the same address may be its contact too) are not this page's to change.
    offered = ContactList.objects.filter(subscriptions__contact=contact, organisation_id=contact.organisation_id)
    offered = offered.distinct()
    if request.method == "POST":
        chosen = set(id_params(request.POST.getlist("lists"))) & set(offered.values_list("pk", flat=True))
        preferences_save(contact=contact, list_ids=chosen)
        messages.success(request, "Your preferences are saved.")
        return redirect("campaigns:preferences", token=token)
    subscribed = set(contact.subscriptions.filter(status="subscribed").values_list("contact_list_id", flat=True))
    context = {
        "contact": contact,
        "lists": offered,
        "subscribed": subscribed,
        "token": token,
        "branding": page_branding(link.recipient.campaign),
        "blocked": subscription_state(link.recipient).blocked,
    }
    return render(request, "public/preferences.html", context)


@require_GET
def layout_colours(request: HttpRequest, layout_pk: int) -> HttpResponse:
    # A style sheet, not a <style> element: our pages carry no inline style (settings.SECURE_CSP).
    layout = get_object_or_404(Layout, pk=layout_pk)
    response = HttpResponse(layout_page_colours(layout).stylesheet(), content_type="text/css; charset=utf-8")
    response["Cache-Control"] = "public, max-age=3600"  # the page's link changes with the layout (?v=)
    return response


@require_GET
def view_online(request: HttpRequest, token: str) -> HttpResponse:
    link = recipient_for_link(token, purpose=LinkPurpose.VIEW_ONLINE)
    if link.recipient is None:
        return _link_refused(request, link)
    recipient = link.recipient
    # The web copy is forwarded and posted: its unsubscribe and preference links are inert.
    context = recipient_context(recipient, online_copy=True)
    rendered = render_for(compile_campaign(recipient.campaign, with_attachments=False), context)
    response = HttpResponse(web_copy_page(rendered.html, title=rendered.subject))
    # Campaign HTML is shown as the recipient got it, never with script.
    response["Content-Security-Policy"] = "default-src 'none'; img-src * data:; style-src 'unsafe-inline'"
    return response
