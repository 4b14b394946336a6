"""Audience pages: contacts, lists, segments, imports, exports and the suppression list.

Thin views: forms validate, ``audiences.services`` / ``audiences.imports`` change state. Tables
swap in place with htmx: when ``request.htmx`` the view renders only the "results" partial.

Every read and write is scoped by ``request.organisation`` (set by
``cobalt_mail.permissions``): the views pass it to the selectors, services and forms, and load
single objects with ``organisations.scope.get_or_404`` (another organisation's id: 404, audited).
"""

from __future__ import annotations

import json

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseStopPolling

from audiences import selectors, services
from audiences.exports import contacts_csv_rows
from audiences.forms import (
    RULE_INPUTS,
    BulkActionForm,
    ContactFilterForm,
    ContactForm,
    ContactListForm,
    ImportForm,
    ImportMappingForm,
    RuleForm,
    RuleFormSet,
    SegmentForm,
    SuppressionFilterForm,
    SuppressionForm,
    rules_from_formset,
)
from audiences.imports import ImportRefused, import_job_confirm, import_job_create, import_job_discard, mapping_describe
from audiences.models import Contact, ContactList, ImportJob, Segment, Suppression
from audiences.segments import RuleError, rules_filter, segment_filter
from audiences.tables import ContactListTable, ContactTable, ImportJobTable, SegmentTable, SuppressionTable
from common.pages import confirm_page
from common.tables import table_paginate
from organisations import audit
from organisations.scope import get_or_404

PER_PAGE = 50


def _paginate(request: HttpRequest, table, *, lazy: bool = True) -> None:
    table_paginate(request, table, per_page=PER_PAGE, lazy=lazy)


def _page(request: HttpRequest, template: str, context: dict) -> HttpResponse:
    """The whole page, or only its "results" partial for an htmx request.

    A history-restore request (back button after hx-push-url, htmx cache miss) needs the whole
    page; Vary keeps browsers from serving a cached partial for a normal visit, or the reverse.
    """
    partial = request.htmx and not request.htmx.history_restore_request
    response = render(request, f"{template}#results" if partial else template, context)
    patch_vary_headers(response, ("HX-Request",))
    return response


# --- contacts -----------------------------------------------------------------------------------


def _contacts_table(request: HttpRequest, contacts) -> ContactTable:
    table = ContactTable(contacts.only("pk", "email", "first_name", "last_name", "status", "created_at"))
    _paginate(request, table)
    return table


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    """The contacts page is the audiences home."""
    return contacts(request)


@require_GET
def contacts(request: HttpRequest) -> HttpResponse:
    organisation = request.organisation
    filter_form = ContactFilterForm(request.GET or None, organisation=organisation)
    filters = filter_form.filters() if request.GET else {"query": "", "list_id": None, "status": ""}
    filtered = any(filters.values())
    total, estimated = (None, False) if filtered else selectors.contacts_total(organisation=organisation)
    context = {
        "filter_form": filter_form if request.GET else ContactFilterForm(organisation=organisation),
        "table": _contacts_table(request, selectors.contacts_search(organisation=organisation, **filters)),
        "bulk_form": BulkActionForm(organisation=organisation),
        "lists": selectors.lists_of(organisation),
        "total": total,
        "estimated": estimated,
        "filtered": filtered,
        "export_query": request.GET.urlencode(),
        "tab": "contacts",
    }
    return _page(request, "audiences/contacts.html", context)


@require_GET
def contacts_export(request: HttpRequest) -> StreamingHttpResponse:
    filters = ContactFilterForm(request.GET, organisation=request.organisation).filters()
    contacts = selectors.contacts_search(organisation=request.organisation, **filters)
    return _csv_response(request, contacts, "contacts", "the contacts search")


def _safe_next(request: HttpRequest, fallback: str) -> str:
    target = request.POST.get("next") or ""
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return target
    return fallback


@require_POST
def contacts_bulk(request: HttpRequest) -> HttpResponse:
    organisation = request.organisation
    form = BulkActionForm(request.POST, organisation=organisation)
    back = _safe_next(request, reverse("audiences:contacts"))
    if not form.is_valid():
        errors = [error for errors in form.errors.values() for error in errors]
        messages.error(request, " ".join(errors))
        return redirect(back)
    ids, action = form.cleaned_data["selected"], form.cleaned_data["action"]
    if action == "add_to_list":
        target = form.cleaned_data["contact_list"]
        added = services.contacts_add_to_list(organisation=organisation, contact_ids=ids, list_id=target.pk)
        skipped = len(ids) - added
        note = f" ({skipped} already on it, unsubscribed or suppressed)" if skipped else ""
        messages.success(request, f"{added} contacts added to “{target.name}”{note}.")
    elif action == "unsubscribe":
        changed = services.contacts_unsubscribe(organisation=organisation, contact_ids=ids)
        messages.success(request, f"{changed} contacts unsubscribed from everything.")
    else:
        removed = services.contacts_remove(organisation=organisation, contact_ids=ids)
        audit.record(request, audit.Action.DELETE, f"Deleted {removed} contacts", object_type="contact", rows=removed)
        messages.success(request, f"{removed} contacts deleted.")
    return redirect(back)


@require_http_methods(["GET", "POST"])
def contact_create(request: HttpRequest) -> HttpResponse:
    return _contact_form(request, Contact(organisation=request.organisation))


@require_http_methods(["GET", "POST"])
def contact_edit(request: HttpRequest, pk: int) -> HttpResponse:
    return _contact_form(request, get_or_404(request, Contact, pk=pk))


def _contact_form(request: HttpRequest, contact: Contact) -> HttpResponse:
    initial = ContactForm.initial_for(contact) if contact.pk else {}
    form = ContactForm(request.POST or None, initial=initial, organisation=request.organisation)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            saved = services.contact_save(
                contact=contact,
                email=data["email"],
                first_name=data["first_name"],
                last_name=data["last_name"],
                attributes=data["attributes"],
                list_ids=[chosen.pk for chosen in data["lists"]],
            )
        except (services.AudienceError, ValidationError) as error:
            form.add_error("email", error.messages[0] if isinstance(error, ValidationError) else str(error))
        else:
            messages.success(request, f"Contact {saved.email} saved.")
            return redirect("audiences:contact_edit", pk=saved.pk)
    subscriptions = contact.subscriptions.select_related("contact_list") if contact.pk else []
    return render(
        request,
        "audiences/contact_form.html",
        {"form": form, "contact": contact, "subscriptions": subscriptions, "tab": "contacts"},
    )


@require_http_methods(["GET", "POST"])
def contact_delete(request: HttpRequest, pk: int) -> HttpResponse:
    contact = get_or_404(request, Contact, pk=pk)
    if request.method == "POST":
        services.contact_delete(organisation=request.organisation, contact_id=contact.pk)
        audit.record(
            request, audit.Action.DELETE, f"Deleted the contact {contact.email}", object_type="contact", object_id=pk
        )
        messages.success(request, f"Contact {contact.email} deleted.")
        return redirect("audiences:contacts")
    return confirm_page(
        request,
        title=f"Delete {contact.email}?",
        text="The contact and its list subscriptions are deleted. Campaign history keeps the address.",
        button="Delete contact",
        cancel=reverse("audiences:contact_edit", args=[contact.pk]),
        tab="contacts",
    )


# --- lists --------------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def lists(request: HttpRequest) -> HttpResponse:
    form = ContactListForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            created = services.list_save(
                contact_list=ContactList(organisation=request.organisation), **form.cleaned_data
            )
        except services.AudienceError as error:
            form.add_error("name", str(error))
        else:
            messages.success(request, f"List “{created.name}” created.")
            return redirect("audiences:list_detail", pk=created.pk)
    table = ContactListTable(selectors.lists_with_counts(organisation=request.organisation))
    _paginate(request, table, lazy=False)
    return _page(request, "audiences/lists.html", {"table": table, "form": form, "tab": "lists"})


@require_http_methods(["GET", "POST"])
def list_detail(request: HttpRequest, pk: int) -> HttpResponse:
    organisation = request.organisation
    contact_list = get_or_404(request, ContactList, pk=pk)
    form = ContactListForm(
        request.POST or None, initial={"name": contact_list.name, "description": contact_list.description}
    )
    if request.method == "POST" and form.is_valid():
        try:
            services.list_save(contact_list=contact_list, **form.cleaned_data)
        except services.AudienceError as error:
            form.add_error("name", str(error))
        else:
            messages.success(request, "List saved.")
            return redirect("audiences:list_detail", pk=pk)
    counts = selectors.list_subscription_counts(organisation=organisation, list_id=contact_list.pk)
    table = _contacts_table(request, selectors.contacts_search(organisation=organisation, list_id=contact_list.pk))
    context = {
        "contact_list": contact_list,
        "form": form,
        "table": table,
        "counts": counts,
        "bulk_form": BulkActionForm(organisation=organisation),
        "lists": selectors.lists_of(organisation),
        "tab": "lists",
    }
    return _page(request, "audiences/list_detail.html", context)


@require_http_methods(["GET", "POST"])
def list_delete(request: HttpRequest, pk: int) -> HttpResponse:
    contact_list = get_or_404(request, ContactList, pk=pk)
    if request.method == "POST":
        services.list_delete(organisation=request.organisation, list_id=contact_list.pk)
        audit.record(
            request, audit.Action.DELETE, f"Deleted the list “{contact_list.name}”", object_type="list", object_id=pk
        )
        messages.success(request, f"List “{contact_list.name}” deleted; its contacts remain.")
        return redirect("audiences:lists")
    return confirm_page(
        request,
        title=f"Delete the list “{contact_list.name}”?",
        text="Its subscriptions are deleted. The contacts themselves stay, with their other lists.",
        button="Delete list",
        cancel=reverse("audiences:list_detail", args=[contact_list.pk]),
        tab="lists",
    )


@require_GET
def list_export(request: HttpRequest, pk: int) -> StreamingHttpResponse:
    contact_list = get_or_404(request, ContactList, pk=pk)
    contacts = selectors.contacts_search(organisation=request.organisation, list_id=contact_list.pk)
    return _csv_response(request, contacts, f"list-{contact_list.pk}", f"the list “{contact_list.name}”")


def _csv_response(request: HttpRequest, contacts, name: str, what: str) -> StreamingHttpResponse:
    """The contacts as a streamed CSV file, and an audit entry with the number of rows."""
    rows = contacts.count()
    audit.record(request, audit.Action.EXPORT, f"Exported {what} ({rows} contacts)", object_type="contact", rows=rows)
    response = StreamingHttpResponse(contacts_csv_rows(contacts), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}-{timezone.now():%Y%m%d-%H%M}.csv"'
    return response


# --- segments -----------------------------------------------------------------------------------


@require_GET
def segments(request: HttpRequest) -> HttpResponse:
    table = SegmentTable(selectors.segments_of(request.organisation))
    _paginate(request, table, lazy=False)
    return _page(request, "audiences/segments.html", {"table": table, "tab": "segments"})


@require_http_methods(["GET", "POST"])
def segment_create(request: HttpRequest) -> HttpResponse:
    return _segment_form(request, Segment(organisation=request.organisation, match=Segment.Match.ALL))


@require_http_methods(["GET", "POST"])
def segment_edit(request: HttpRequest, pk: int) -> HttpResponse:
    return _segment_form(request, get_or_404(request, Segment, pk=pk))


def _segment_form(request: HttpRequest, segment: Segment) -> HttpResponse:
    form = SegmentForm(request.POST or None, instance=segment)
    initial = [RuleForm.initial_for(rule) for rule in segment.rules or []] or [{"rule": "attribute:equals"}]
    organisation = request.organisation
    formset = RuleFormSet(
        request.POST or None,
        initial=None if request.method == "POST" else initial,
        prefix="rules",
        form_kwargs={"organisation": organisation},
    )
    if request.method == "POST" and form.is_valid() and formset.is_valid():
        try:
            segment = services.segment_save(
                segment=segment,
                name=form.cleaned_data["name"],
                match=form.cleaned_data["match"],
                rules=rules_from_formset(formset),
            )
        except (services.AudienceError, RuleError) as error:
            form.add_error("name" if isinstance(error, services.AudienceError) else None, str(error))
        else:
            count = _segment_count(organisation, segment.rules, segment.match)
            messages.success(request, f"Segment “{segment.name}” saved: {count} contacts match now.")
            return redirect("audiences:segment_edit", pk=segment.pk)
    count = _segment_count(organisation, segment.rules, segment.match) if segment.pk and segment.rules else None
    context = {
        "form": form,
        "formset": formset,
        "segment": segment,
        "count": count,
        "tab": "segments",
        "rule_inputs": json.dumps(RULE_INPUTS),
    }
    return render(request, "audiences/segment_form.html", context)


def _segment_count(organisation, rules: list[dict], match: str) -> int:
    return (
        selectors.contacts_of(organisation).filter(rules_filter(rules, match=match, organisation=organisation)).count()
    )


@require_POST
def segment_preview(request: HttpRequest) -> HttpResponse:
    """The live count while rules are edited (htmx posts the whole form on load and every change).

    Nothing here is an error yet: the page loads with an empty rule and the user is typing. A
    rule still missing an input gets an invitation to fill it in; a value that cannot work
    ("old" for a number) a plain note. The red messages come with Save, on the rule itself.
    """
    formset = RuleFormSet(request.POST, prefix="rules", form_kwargs={"organisation": request.organisation})
    match = request.POST.get("match") if request.POST.get("match") in Segment.Match.values else "all"
    context: dict = {"count": None, "notes": []}
    if formset.is_valid():
        rules = rules_from_formset(formset)
        try:
            context["count"] = _segment_count(request.organisation, rules, match) if rules else None
        except RuleError as error:
            context["notes"] = [str(error)]
    else:
        context["notes"] = _rule_notes(formset) + list(formset.non_form_errors())
    return render(request, "audiences/segment_form.html#count", context)


def _rule_notes(formset) -> list[str]:
    notes = []
    for number, form in enumerate(formset.forms, start=1):
        if formset._should_delete_form(form) or not form.errors:
            continue
        if form.is_incomplete:
            notes.append(f"Fill in rule {number} to see how many contacts match.")
        else:
            notes += [f"Rule {number}: {error}" for errors in form.errors.values() for error in errors]
    return notes


@require_http_methods(["GET", "POST"])
def segment_delete(request: HttpRequest, pk: int) -> HttpResponse:
    segment = get_or_404(request, Segment, pk=pk)
    if request.method == "POST":
        services.segment_delete(organisation=request.organisation, segment_id=segment.pk)
        audit.record(
            request, audit.Action.DELETE, f"Deleted the segment “{segment.name}”", object_type="segment", object_id=pk
        )
        messages.success(request, f"Segment “{segment.name}” deleted.")
        return redirect("audiences:segments")
    return confirm_page(
        request,
        title=f"Delete the segment “{segment.name}”?",
        text="Campaigns that include or exclude it will no longer do so. Contacts are not changed.",
        button="Delete segment",
        cancel=reverse("audiences:segment_edit", args=[segment.pk]),
        tab="segments",
    )


@require_GET
def segment_export(request: HttpRequest, pk: int) -> StreamingHttpResponse:
    segment = get_or_404(request, Segment, pk=pk)
    contacts = selectors.contacts_of(request.organisation).filter(segment_filter(segment))
    return _csv_response(request, contacts, f"segment-{segment.pk}", f"the segment “{segment.name}”")


# --- imports ------------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def imports(request: HttpRequest) -> HttpResponse:
    form = ImportForm(request.POST or None, request.FILES or None, organisation=request.organisation)
    if request.method == "POST" and form.is_valid():
        job = _import_start(request, form)
        if job is not None:
            return redirect("audiences:import_mapping", pk=job.pk)
    table = ImportJobTable(selectors.imports_of(request.organisation))
    _paginate(request, table, lazy=False)
    return _page(request, "audiences/imports.html", {"form": form, "table": table, "tab": "imports"})


def _import_start(request: HttpRequest, form: ImportForm) -> ImportJob | None:
    """Store the upload for the mapping step, or refuse a file that is not a usable CSV at once
    (nothing created, not even the new list)."""
    try:
        with transaction.atomic():
            organisation = request.organisation
            contact_list = form.cleaned_data["contact_list"]
            if contact_list is None:
                name = form.cleaned_data["new_list"].strip()
                contact_list = selectors.lists_of(organisation).filter(name__iexact=name).first() or services.list_save(
                    contact_list=ContactList(organisation=organisation), name=name
                )
            return import_job_create(
                organisation=organisation,
                uploaded_file=form.cleaned_data["file"],
                contact_list=contact_list,
                update=form.cleaned_data["update"],
                user=request.user,
            )
    except ImportRefused as refusal:
        form.add_error("file", str(refusal))
        return None


@require_http_methods(["GET", "POST"])
def import_mapping(request: HttpRequest, pk: int) -> HttpResponse:
    """The columns found, a few rows, and a select per column; confirming queues the import."""
    job = get_or_404(request, ImportJob.objects.select_related("contact_list"), pk=pk)
    if job.status != ImportJob.Status.MAPPING:
        return redirect("audiences:import_detail", pk=job.pk)
    form = ImportMappingForm(request.POST or None, columns=job.column_mapping)
    if request.method == "POST" and form.is_valid():
        try:
            import_job_confirm(job=job, fields=form.cleaned_data["fields"])
        except ImportRefused as refusal:
            form.add_error(None, str(refusal))
        else:
            return redirect("audiences:import_detail", pk=job.pk)
    context = {"job": job, "form": form, "rows": form.rows(job.sample_rows), "tab": "imports"}
    return render(request, "audiences/import_mapping.html", context)


@require_POST
def import_discard(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_or_404(request, ImportJob, pk=pk)
    if job.status == ImportJob.Status.MAPPING:
        import_job_discard(job=job)
        messages.info(request, f"The upload of {job.original_name} was cancelled: nothing was imported.")
    return redirect("audiences:imports")


@require_GET
def import_detail(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_or_404(request, ImportJob.objects.select_related("contact_list"), pk=pk)
    if job.status == ImportJob.Status.MAPPING:
        return redirect("audiences:import_mapping", pk=job.pk)
    header = [column["name"] for column in job.column_mapping]
    columns = mapping_describe(header, [column["field"] for column in job.column_mapping]) if header else ""
    return render(request, "audiences/import_detail.html", {"job": job, "columns": columns, "tab": "imports"})


@require_GET
def import_progress(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_or_404(request, ImportJob.objects.select_related("contact_list"), pk=pk)
    response = render(request, "audiences/import_detail.html#progress", {"job": job})
    if job.is_finished:
        # 286 tells htmx to stop polling; the final state is still swapped in.
        stop = HttpResponseStopPolling()
        stop.content = response.content
        return stop
    return response


@require_GET
def import_rejected(request: HttpRequest, pk: int) -> FileResponse:
    job = get_or_404(request, ImportJob, pk=pk)
    if not job.rejected_file:
        raise Http404("This import rejected no rows.")
    return FileResponse(job.rejected_file.open("rb"), as_attachment=True, filename=f"import-{job.pk}-rejected-rows.csv")


# --- suppression --------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def suppressions(request: HttpRequest) -> HttpResponse:
    form = SuppressionForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        entry, created = services.address_suppress(
            email=data["email"],
            reason=data["reason"],
            note=data["note"],
            user=request.user,
            organisation=request.organisation,
        )
        if created:
            audit.record(
                request,
                audit.Action.SUPPRESSION,
                f"Suppressed {entry.email} ({entry.get_reason_display()})",
                object_type="suppression",
                object_id=entry.pk,
            )
            messages.success(request, f"{entry.email} is suppressed: no campaign will reach it.")
        else:
            messages.info(request, f"{entry.email} was already suppressed ({entry.get_reason_display()}).")
        return redirect("audiences:suppressions")
    filter_form = SuppressionFilterForm(request.GET or None)
    filters = filter_form.cleaned_data if filter_form.is_valid() else {}
    entries = selectors.suppressions_search(
        organisation=request.organisation, query=filters.get("q", ""), reason=filters.get("reason", "")
    )
    table = SuppressionTable(entries, causes=selectors.suppression_causes(organisation=request.organisation))
    _paginate(request, table)
    context = {"form": form, "filter_form": filter_form, "table": table, "tab": "suppressions"}
    return _page(request, "audiences/suppressions.html", context)


def _suppression_or_404(request: HttpRequest, pk: int) -> Suppression:
    """A suppression the organisation may see (``selectors.suppressions_of``); any other: 404, audited.

    Not ``get_or_404``: a suppression belongs to no organisation, it is seen through the contacts.
    """
    entry = selectors.suppressions_of(request.organisation).filter(pk=pk).first()
    if entry is not None:
        return entry
    if Suppression.objects.filter(pk=pk).exists():
        audit.record(
            request,
            audit.Action.FORBIDDEN,
            f"Asked for suppression {pk} of an address that is not a contact of this organisation",
            object_type="suppression",
        )
    raise Http404("No such page in this organisation.")


@require_http_methods(["GET", "POST"])
def suppression_remove(request: HttpRequest, pk: int) -> HttpResponse:
    entry = _suppression_or_404(request, pk)
    if not selectors.suppression_liftable(organisation=request.organisation, entry=entry, user=request.user):
        messages.error(
            request,
            f"{entry.email} was suppressed because of another organisation's mail (or by a site operator): "
            "lifting it would let every organisation's mail reach it again, so only a site operator can.",
        )
        return redirect("audiences:suppressions")
    if request.method == "POST":
        services.suppression_remove(organisation=request.organisation, suppression_id=entry.pk)
        audit.record(
            request,
            audit.Action.SUPPRESSION,
            f"Lifted the suppression of {entry.email}",
            object_type="suppression",
            object_id=pk,
        )
        messages.success(
            request, f"{entry.email} is no longer suppressed. Its contact and list subscriptions are unchanged."
        )
        return redirect("audiences:suppressions")
    return confirm_page(
        request,
        title=f"Remove {entry.email} from the suppression list?",
        text=(
            f"Suppressed on {entry.created_at:%d %b %Y} ({entry.get_reason_display()}). Campaigns may reach "
            "this address again if its contact is active and on a list. Removing it does not resubscribe it."
        ),
        button="Remove from suppression",
        cancel=reverse("audiences:suppressions"),
        tab="suppressions",
    )
