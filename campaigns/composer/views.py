"""Composer pages: preview (inbox header, desktop / mobile / text, links), test sends,
attachments, layouts and reusable templates. Business rules live in rendering / testsend /
attachments / layouts; these views only load, call and show.
"""

from __future__ import annotations

import re

from django.conf import settings
from django.contrib import messages
from django.core.files.storage import default_storage
from django.db import IntegrityError
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST, require_safe
from django_htmx.http import HttpResponseStopPolling

from audiences.models import Contact
from campaigns.composer.attachments import AttachmentRefused, attachment_add, attachment_remove, max_bytes
from campaigns.composer.images import (
    CONTENT_TYPES,
    IMAGE_FOLDER,
    ImageRefused,
    image_store,
    max_upload_bytes,
    too_big_message,
)
from campaigns.composer.layouts import (
    LayoutInUse,
    campaign_from_template,
    default_layout,
    layout_delete,
    layout_make_default,
    template_save_from_campaign,
)
from campaigns.composer.linkcheck import (
    campaign_links,
    link_check_start,
    link_check_state,
    link_checks,
    link_checks_for_message,
)
from campaigns.composer.rendering import (
    TemplateProblem,
    compile_campaign,
    link_report,
    markdown_to_html,
    preview_context,
    render_for,
)
from campaigns.delivery.testsend import TEST_SUBJECT_PREFIX, TestSendRefused, campaign_test_send
from campaigns.forms import AttachmentForm, LayoutForm, SaveTemplateForm, TestSendForm
from campaigns.models import Campaign, CampaignAttachment, CampaignTemplate, Layout
from campaigns.selectors import attachments_of, layouts_of, templates_of
from campaigns.snapshot import audience_queryset
from common.pages import confirm_page
from common.params import id_param
from organisations import audit
from organisations.scope import get_or_404

PREVIEW_VIEWS = ("desktop", "mobile", "text")
# The campaign HTML may contain anything staff pasted: no script, no plugins, no forms, no
# navigation of the parent; images and inline styles only (what mail clients show).
PREVIEW_CSP = (
    "default-src 'none'; script-src 'none'; object-src 'none'; img-src * data:; style-src 'unsafe-inline'; "
    "font-src * data:; form-action 'none'; base-uri 'none'; frame-ancestors 'self'; sandbox"
)
CHOOSER_SIZE = 100


def _campaign(request: HttpRequest, pk: int) -> Campaign:
    """The request's organisation's campaign; another organisation's id answers 404 (audited)."""
    return get_or_404(request, Campaign.objects.select_related("layout"), pk=pk)


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
    campaign = _campaign(request, pk)
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
    if request.htmx and request.htmx.target == "preview-contact-field":
        # Typing in the search box: only the list of recipients changes (no render of the message).
        context["choices"] = _chooser(campaign, context["search"], contact, keep_contact=False)
        return render(request, "compose/preview.html#contact-choices", context)
    context["choices"] = _chooser(campaign, context["search"], contact)
    try:
        compiled = compile_campaign(campaign, with_attachments=False)
        rendered = render_for(compiled, preview_context(contact))
    except TemplateProblem as problem:
        context["problem"] = str(problem)
        return render(request, "compose/preview.html", context, status=200)
    checks = link_checks_for_message(campaign=campaign, planned=campaign_links(compiled))
    context.update(
        rendered=rendered,
        links=link_report(rendered.html),
        link_checks=checks,
        link_check_state=link_check_state(checks) if checks is not None else "",
        html_url=_html_url(campaign, contact),
    )
    return render(request, "compose/preview.html", context)


def _chooser(campaign: Campaign, search: str, contact: Contact | None, *, keep_contact: bool = True) -> list[Contact]:
    """Audience members whose address contains ``search``; the chosen one stays listed (and
    selected) unless the list is being narrowed by typing and it does not match."""
    audience = _audience(campaign)
    if search:
        audience = audience.filter(email__icontains=search)
    choices = list(audience[:CHOOSER_SIZE])
    if keep_contact and contact is not None and contact not in choices:
        choices.insert(0, contact)
    return choices


@require_POST
def link_check(request: HttpRequest, pk: int) -> HttpResponse:
    """Start checking every link of the message for real (a django-q2 task fetches them)."""
    campaign = _campaign(request, pk)
    try:
        checks, problem = link_check_start(campaign=campaign), ""
    except TemplateProblem as error:
        checks, problem = None, f"The links cannot be checked: {error}"
    if not request.htmx:
        if problem:
            messages.error(request, problem)
        return redirect("compose:preview", pk=pk)
    return _link_check_panel(request, campaign, checks, problem=problem)


@require_GET
def link_check_results(request: HttpRequest, pk: int) -> HttpResponse:
    """The link check panel, polled by the preview page until every link has its answer."""
    campaign = _campaign(request, pk)
    return _link_check_panel(request, campaign, link_checks(campaign=campaign))


def _link_check_panel(
    request: HttpRequest, campaign: Campaign, checks: list | None, *, problem: str = ""
) -> HttpResponse:
    state = link_check_state(checks) if checks else "done"
    context = {"campaign": campaign, "link_checks": checks or [], "link_check_state": state, "link_problem": problem}
    response = render(request, "compose/preview.html#link-check", context)
    if state != "running":
        stop = HttpResponseStopPolling()  # htmx stops polling on 286
        stop.content = response.content
        return stop
    return response


def _html_url(campaign: Campaign, contact: Contact | None) -> str:
    url = reverse("compose:preview_html", args=[campaign.pk])
    return f"{url}?contact={contact.pk}" if contact else url


@require_GET
def preview_html(request: HttpRequest, pk: int) -> HttpResponse:
    """The message HTML alone, for the preview's sandboxed iframe."""
    campaign = _campaign(request, pk)
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
    campaign = _campaign(request, pk)
    contact = _preview_contact(request, campaign)
    form = TestSendForm(request.POST)
    back = reverse("compose:preview", args=[pk]) + (f"?contact={contact.pk}" if contact else "")
    if not form.is_valid():
        messages.error(request, " ".join(form.errors["addresses"]))
        return redirect(back)
    try:
        results = campaign_test_send(campaign=campaign, addresses=form.cleaned_data["addresses"], contact=contact)
    except (TemplateProblem, TestSendRefused) as problem:
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
    campaign = _campaign(request, pk)
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
    context = {"campaign": campaign, "form": form, "attachments": attachments_of(campaign), "max_bytes": max_bytes()}
    return render(request, "compose/attachments.html", context, status=status)


@require_POST
def attachment_delete(request: HttpRequest, pk: int, attachment_pk: int) -> HttpResponse:
    attachment = get_or_404(
        request, CampaignAttachment, path="campaign__organisation", pk=attachment_pk, campaign_id=pk
    )
    try:
        attachment_remove(attachment=attachment)
    except AttachmentRefused as refusal:
        messages.error(request, str(refusal))
    else:
        summary = f"Removed the attachment “{attachment.filename}” of campaign “{attachment.campaign.name}”"
        audit.record(request, audit.Action.DELETE, summary, object_type="attachment", object_id=attachment_pk)
        messages.success(request, f"Removed “{attachment.filename}”.")
    return redirect("compose:attachments", pk=pk)


# --- reusable templates ----------------------------------------------------------------------------


@require_POST
def save_template(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = _campaign(request, pk)
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
    return render(request, "compose/templates.html", {"templates": templates_of(request.organisation)})


@require_POST
def template_use(request: HttpRequest, template_pk: int) -> HttpResponse:
    template = get_or_404(request, CampaignTemplate, pk=template_pk)
    sender = settings.SENDER_ADDRESSES[0] if settings.SENDER_ADDRESSES else settings.DEFAULT_FROM_EMAIL
    campaign = campaign_from_template(template=template, from_email=sender, user=request.user)
    messages.success(request, f"New draft from the template “{template.name}”: choose its audience and sender.")
    return redirect("campaigns:edit", pk=campaign.pk)


# --- layouts ---------------------------------------------------------------------------------------


@require_GET
def layouts(request: HttpRequest) -> HttpResponse:
    return render(request, "compose/layouts.html", {"layouts": layouts_of(request.organisation)})


@require_http_methods(["GET", "POST"])
def layout_create(request: HttpRequest) -> HttpResponse:
    base = default_layout(request.organisation)
    initial = {"html": base.html, "css": base.css, "primary_colour": base.primary_colour}
    form = LayoutForm(request.POST or None, initial=initial)
    form.instance.organisation = request.organisation
    return _layout_form(request, form, layout=None)


@require_http_methods(["GET", "POST"])
def layout_edit(request: HttpRequest, layout_pk: int) -> HttpResponse:
    layout = get_or_404(request, Layout, pk=layout_pk)
    return _layout_form(request, LayoutForm(request.POST or None, instance=layout), layout=layout)


@require_POST
def layout_default(request: HttpRequest, layout_pk: int) -> HttpResponse:
    layout = layout_make_default(layout=get_or_404(request, Layout, pk=layout_pk))
    messages.success(request, f"“{layout.name}” is now the default layout for new campaigns.")
    return redirect("compose:layouts")


@require_http_methods(["GET", "POST"])
def layout_remove(request: HttpRequest, layout_pk: int) -> HttpResponse:
    layout = get_or_404(request, Layout, pk=layout_pk)
    if request.method == "POST":
        try:
            layout_delete(layout=layout)
        except LayoutInUse as refusal:
            messages.error(request, str(refusal))
            return redirect("compose:layouts")
        audit.record(
            request, audit.Action.DELETE, f"Deleted layout “{layout.name}”", object_type="layout", object_id=layout_pk
        )
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


# --- images for the rich-text editor ---------------------------------------------------------------

STORED_IMAGE_NAME = re.compile(r"[0-9a-f]{64}\.(png|jpg|gif|webp)")


@require_POST
def image_upload(request: HttpRequest) -> HttpResponse:
    """The editor's image button: JSON {url, width, height}, or {error} with a 4xx status."""
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if declared.isdigit() and int(declared) > max_upload_bytes() + 64 * 1024:
        return _image_refused(too_big_message(), status=413)
    upload = request.FILES.get("image")
    if upload is None:
        return _image_refused("Choose an image file (PNG, JPEG, GIF or WebP).", status=400)
    try:
        stored = image_store(upload=upload)
    except ImageRefused as refusal:
        too_big = upload.size > max_upload_bytes()
        return _image_refused(str(refusal), status=413 if too_big else 415)
    return JsonResponse({"url": stored.url, "width": stored.width, "height": stored.height}, status=201)


def _image_refused(message: str, *, status: int) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


@require_safe
def campaign_image(request: HttpRequest, name: str) -> HttpResponse:
    """A stored campaign image, public (mail clients load it). Only the images folder is served:
    the rest of MEDIA_ROOT (imports, attachments) holds contact data."""
    match = STORED_IMAGE_NAME.fullmatch(name)
    if match is None:
        raise Http404("No such image.")
    try:
        handle = default_storage.open(f"{IMAGE_FOLDER}/{name}", "rb")
    except FileNotFoundError:
        raise Http404("No such image.") from None
    response = FileResponse(handle, content_type=CONTENT_TYPES[match.group(1)])
    # The name is the content's hash: the file never changes.
    response["Cache-Control"] = "public, max-age=31536000, immutable"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cross-Origin-Resource-Policy"] = "cross-origin"
    return response
