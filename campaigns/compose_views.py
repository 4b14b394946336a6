"""Composer pages: preview (inbox header, desktop / mobile / text, links), test sends,
attachments, layouts and reusable templates. Business rules live in rendering / testsend /
attachments / layouts; these views only load, call and show.
"""

from __future__ import annotations

from django.contrib import messages
from django.db import IntegrityError
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from campaigns.attachments import AttachmentRefused, attachment_add, attachment_remove, max_bytes
from campaigns.audience import audience_queryset
from campaigns.forms import AttachmentForm, LayoutForm, SaveTemplateForm, TestSendForm
from campaigns.layouts import (
    LayoutInUse,
    campaign_from_template,
    layout_delete,
    layout_make_default,
    template_save_from_campaign,
)
from campaigns.models import Campaign, CampaignAttachment, CampaignTemplate, Contact, Layout
from campaigns.rendering import (
    TemplateProblem,
    compile_campaign,
    link_report,
    markdown_to_html,
    preview_context,
    render_for,
)
from campaigns.testsend import TEST_SUBJECT_PREFIX, campaign_test_send
from cobalt_mail.params import id_param
from cobalt_mail.views import confirm_page

PREVIEW_VIEWS = ("desktop", "mobile", "text")
# The campaign HTML may contain anything staff pasted: no script, no plugins, no forms, no
# navigation of the parent; images and inline styles only (what mail clients show).
PREVIEW_CSP = (
    "default-src 'none'; script-src 'none'; object-src 'none'; img-src * data:; style-src 'unsafe-inline'; "
    "font-src * data:; form-action 'none'; base-uri 'none'; frame-ancestors 'self'; sandbox"
)
CHOOSER_SIZE = 100


def _campaign(pk: int) -> Campaign:
    return get_object_or_404(Campaign.objects.select_related("layout"), pk=pk)


def _audience(campaign: Campaign):
    """Contacts a preview may be shown as: the frozen recipients once sent, else the audience."""
    if campaign.snapshot_at is not None:
        return Contact.objects.filter(recipients__campaign=campaign).order_by("email")
    return audience_queryset(campaign).order_by("email")


def _preview_contact(request: HttpRequest, campaign: Campaign) -> Contact | None:
    """The ?contact= id if it is in the campaign's audience; None means the sample contact."""
    contact_id = id_param(request.GET.get("contact", "") or request.POST.get("contact", ""))
    if contact_id is None:
        return None
    return _audience(campaign).filter(pk=contact_id).first()


@require_GET
def preview(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = _campaign(pk)
    contact = _preview_contact(request, campaign)
    view = request.GET.get("view", "desktop")
    view = view if view in PREVIEW_VIEWS else "desktop"
    context = {
        "campaign": campaign,
        "contact": contact,
        "view": view,
        "views": PREVIEW_VIEWS,
        "search": request.GET.get("q", "").strip()[:100],
        "test_form": TestSendForm(),
        "test_prefix": TEST_SUBJECT_PREFIX,
    }
    context["choices"] = _chooser(campaign, context["search"], contact)
    try:
        rendered = render_for(compile_campaign(campaign, with_attachments=False), preview_context(contact))
    except TemplateProblem as problem:
        context["problem"] = str(problem)
        return render(request, "compose/preview.html", context, status=200)
    context.update(rendered=rendered, links=link_report(rendered.html), html_url=_html_url(campaign, contact))
    return render(request, "compose/preview.html", context)


def _chooser(campaign: Campaign, search: str, contact: Contact | None) -> list[Contact]:
    audience = _audience(campaign)
    if search:
        audience = audience.filter(email__icontains=search)
    choices = list(audience[:CHOOSER_SIZE])
    if contact is not None and contact not in choices:
        choices.insert(0, contact)
    return choices


def _html_url(campaign: Campaign, contact: Contact | None) -> str:
    url = reverse("compose:preview_html", args=[campaign.pk])
    return f"{url}?contact={contact.pk}" if contact else url


@require_GET
def preview_html(request: HttpRequest, pk: int) -> HttpResponse:
    """The message HTML alone, for the preview's sandboxed iframe."""
    campaign = _campaign(pk)
    try:
        compiled = compile_campaign(campaign, with_attachments=False)
        rendered = render_for(compiled, preview_context(_preview_contact(request, campaign)))
        response = HttpResponse(rendered.html)
    except TemplateProblem as problem:
        response = HttpResponse(str(problem), content_type="text/plain; charset=utf-8", status=422)
    response["Content-Security-Policy"] = PREVIEW_CSP
    response["Referrer-Policy"] = "no-referrer"
    response["X-Frame-Options"] = "SAMEORIGIN"
    response["Cache-Control"] = "no-store"
    return response


@require_POST
def test_send(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = _campaign(pk)
    contact = _preview_contact(request, campaign)
    form = TestSendForm(request.POST)
    back = reverse("compose:preview", args=[pk]) + (f"?contact={contact.pk}" if contact else "")
    if not form.is_valid():
        messages.error(request, " ".join(form.errors["addresses"]))
        return redirect(back)
    try:
        results = campaign_test_send(campaign=campaign, addresses=form.cleaned_data["addresses"], contact=contact)
    except TemplateProblem as problem:
        messages.error(request, f"Nothing was sent: {problem}")
        return redirect(back)
    sent = [r.address for r in results if r.ok]
    if sent:
        messages.success(request, f"Test sent to {', '.join(sent)}.")
    for result in results:
        if not result.ok:
            messages.error(request, f"Not sent to {result.address}: {result.detail}")
    return redirect(back)


@require_POST
def markdown_html(request: HttpRequest) -> HttpResponse:
    """Markdown → HTML for the editor when staff switch away from Markdown."""
    source = request.POST.get("source", "")
    if len(source) > 500_000:
        return HttpResponseBadRequest("The Markdown is too long to convert.", content_type="text/plain")
    return HttpResponse(markdown_to_html(source), content_type="text/plain; charset=utf-8")


# --- attachments -----------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def attachments(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = _campaign(pk)
    form = AttachmentForm(request.POST or None, request.FILES or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                attachment = attachment_add(campaign=campaign, upload=form.cleaned_data["file"])
            except AttachmentRefused as refusal:
                form.add_error("file", str(refusal))
                status = 400
            else:
                messages.success(request, f"Attached “{attachment.filename}”.")
                return redirect("compose:attachments", pk=pk)
        else:
            status = 400
    context = {"campaign": campaign, "form": form, "attachments": campaign.attachments.all(), "max_bytes": max_bytes()}
    return render(request, "compose/attachments.html", context, status=status)


@require_POST
def attachment_delete(request: HttpRequest, pk: int, attachment_pk: int) -> HttpResponse:
    attachment = get_object_or_404(CampaignAttachment, pk=attachment_pk, campaign_id=pk)
    try:
        attachment_remove(attachment=attachment)
    except AttachmentRefused as refusal:
        messages.error(request, str(refusal))
    else:
        messages.success(request, f"Removed “{attachment.filename}”.")
    return redirect("compose:attachments", pk=pk)


# --- reusable templates ----------------------------------------------------------------------------


@require_POST
def save_template(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = _campaign(pk)
    form = SaveTemplateForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Give the template a name (up to 200 characters).")
    else:
        template, created = template_save_from_campaign(campaign=campaign, name=form.cleaned_data["name"])
        if created:
            messages.success(request, f"Saved as the reusable template “{template.name}”.")
        else:
            messages.warning(request, f"The reusable template “{template.name}” was replaced with this campaign.")
    return redirect("compose:preview", pk=pk)


@require_GET
def templates(request: HttpRequest) -> HttpResponse:
    return render(request, "compose/templates.html", {"templates": CampaignTemplate.objects.select_related("layout")})


@require_POST
def template_use(request: HttpRequest, template_pk: int) -> HttpResponse:
    from django.conf import settings

    template = get_object_or_404(CampaignTemplate, pk=template_pk)
    sender = settings.SENDER_ADDRESSES[0] if settings.SENDER_ADDRESSES else settings.DEFAULT_FROM_EMAIL
    campaign = campaign_from_template(template=template, from_email=sender, user=request.user)
    messages.success(request, f"New draft from the template “{template.name}”: choose its audience and sender.")
    return redirect("campaigns:edit", pk=campaign.pk)


# --- layouts ---------------------------------------------------------------------------------------


@require_GET
def layouts(request: HttpRequest) -> HttpResponse:
    return render(request, "compose/layouts.html", {"layouts": Layout.objects.all()})


@require_http_methods(["GET", "POST"])
def layout_create(request: HttpRequest) -> HttpResponse:
    from campaigns.layouts import default_layout

    base = default_layout()
    initial = {"html": base.html, "css": base.css, "primary_colour": base.primary_colour}
    return _layout_form(request, LayoutForm(request.POST or None, initial=initial), layout=None)


@require_http_methods(["GET", "POST"])
def layout_edit(request: HttpRequest, layout_pk: int) -> HttpResponse:
    layout = get_object_or_404(Layout, pk=layout_pk)
    return _layout_form(request, LayoutForm(request.POST or None, instance=layout), layout=layout)


@require_POST
def layout_default(request: HttpRequest, layout_pk: int) -> HttpResponse:
    layout = layout_make_default(layout=get_object_or_404(Layout, pk=layout_pk))
    messages.success(request, f"“{layout.name}” is now the default layout for new campaigns.")
    return redirect("compose:layouts")


@require_http_methods(["GET", "POST"])
def layout_remove(request: HttpRequest, layout_pk: int) -> HttpResponse:
    layout = get_object_or_404(Layout, pk=layout_pk)
    if request.method == "POST":
        try:
            layout_delete(layout=layout)
        except LayoutInUse as refusal:
            messages.error(request, str(refusal))
            return redirect("compose:layouts")
        messages.success(request, f"Layout “{layout.name}” deleted.")
        return redirect("compose:layouts")
    return confirm_page(
        request,
        title=f"Delete layout “{layout.name}”?",
        text="This cannot be undone. A layout that is the default, or that any campaign or template uses, "
        "is kept and you will be told why.",
        button="Delete layout",
        cancel=reverse("compose:layouts"),
        crumbs=(("Campaigns", reverse("campaigns:list")), ("Layouts", reverse("compose:layouts"))),
    )


def _layout_form(request: HttpRequest, form: LayoutForm, *, layout: Layout | None) -> HttpResponse:
    if request.method == "POST" and form.is_valid():
        try:
            saved = form.save()
        except IntegrityError:
            form.add_error("name", "A layout with this name exists.")
        else:
            messages.success(request, f"Layout “{saved.name}” saved.")
            return redirect("compose:layouts")
    status = 400 if request.method == "POST" else 200
    return render(request, "compose/layout_form.html", {"form": form, "layout": layout}, status=status)
