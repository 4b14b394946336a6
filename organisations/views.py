"""The organisation pages: its details, members and roles, child organisations, audit log, the
navbar switcher and the site operators' list of every organisation.

Who may open each page is decided once, in cobalt_mail.permissions (VIEW_ROLES); these views
only work in ``request.organisation`` and call organisations.services for every write.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from common.csvfiles import Echo, formula_escape
from common.pages import confirm_page
from common.params import id_param
from common.tables import table_paginate
from organisations import audit, selectors, services
from organisations.forms import AuditFilterForm, GrantForm, NewOrganisationForm, OrganisationForm, RoleForm
from organisations.models import AuditEntry, Membership, Organisation, Role
from organisations.scope import SESSION_KEY, get_or_404, may
from organisations.tables import AuditTable

AUDIT_PER_PAGE = 50
CSV_CHUNK = 2000


@require_POST
def switch(request: HttpRequest) -> HttpResponse:
    """Work in another of the user's organisations; one they do not belong to is not found."""
    wanted = id_param(request.POST.get("organisation"))
    chosen = next((org for org in request.organisations if org.pk == wanted), None)
    if chosen is None:
        raise Http404("You are not a member of that organisation.")
    request.session[SESSION_KEY] = chosen.pk
    messages.success(request, f"You are now working in {chosen.name}.")
    # The start page, not the page they were on: its ids belong to the organisation they left.
    return redirect("home")


@require_http_methods(["GET", "POST"])
def detail(request: HttpRequest) -> HttpResponse:
    """Everyone sees their organisation's details; administrators change them (POST needs that role)."""
    organisation = request.organisation
    form = OrganisationForm(request.POST or None, instance=Organisation(pk=organisation.pk, **_fields(organisation)))
    if request.method == "POST" and form.is_valid():
        changed = services.organisation_update(organisation=organisation, changes=form.cleaned_data, request=request)
        messages.success(request, "Saved." if changed else "Nothing changed.")
        return redirect("organisations:detail")
    if not may(request, Role.ADMINISTRATOR):
        for field in form.fields.values():
            field.disabled = True
    context = {
        "organisation": organisation,
        "form": form,
        "editable": may(request, Role.ADMINISTRATOR),
        "tab": "detail",
    }
    return render(request, "organisations/detail.html", context)


def _fields(organisation: Organisation) -> dict:
    """A copy of the editable fields: the form must not change the request's object before it is saved."""
    return {name: getattr(organisation, name) for name in (*services.ORGANISATION_FIELDS, "slug", "parent_id")}


@require_http_methods(["GET", "POST"])
def members(request: HttpRequest) -> HttpResponse:
    """The organisation's members and their roles; POST gives an existing user a role."""
    form = GrantForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.cleaned_data["username"]
        try:
            services.membership_grant(
                organisation=request.organisation, user=user, role=form.cleaned_data["role"], request=request
            )
        except services.OrganisationRefused as refusal:
            form.add_error(None, str(refusal))
        else:
            messages.success(request, f"{user.get_username()} is now {Role(form.cleaned_data['role']).label}.")
            return redirect("organisations:members")
    context = {
        "organisation": request.organisation,
        "memberships": selectors.members_of(request.organisation),
        "form": form,
        "roles": Role.choices,
        "tab": "members",
    }
    return render(request, "organisations/members.html", context, status=400 if form.errors else 200)


@require_POST
def member_role(request: HttpRequest, pk: int) -> HttpResponse:
    membership = get_or_404(request, Membership, pk=pk)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose one of the roles.")
        return redirect("organisations:members")
    try:
        services.membership_change(membership=membership, role=form.cleaned_data["role"], request=request)
    except services.OrganisationRefused as refusal:
        messages.error(request, str(refusal))
    else:
        messages.success(request, f"{membership.user.get_username()} is now {membership.get_role_display()}.")
    return redirect("organisations:members")


@require_http_methods(["GET", "POST"])
def member_remove(request: HttpRequest, pk: int) -> HttpResponse:
    membership = get_or_404(request, Membership, pk=pk)
    username = membership.user.get_username()
    if request.method == "GET":
        return confirm_page(
            request,
            title=f"Remove {username} from {request.organisation.name}?",
            text=(
                f"{username} ({membership.get_role_display()}) will no longer see anything of "
                f"{request.organisation.name}. Their account stays; you can give them a role again later."
            ),
            button="Remove",
            cancel=reverse("organisations:members"),
            crumbs=(("Members", reverse("organisations:members")),),
        )
    try:
        services.membership_revoke(membership=membership, request=request)
    except services.OrganisationRefused as refusal:
        messages.error(request, str(refusal))
    else:
        messages.success(request, f"{username} was removed from {request.organisation.name}.")
    return redirect("organisations:members")


@require_http_methods(["GET", "POST"])
def children(request: HttpRequest) -> HttpResponse:
    """Child organisations of the current one; creating one makes its creator its administrator
    (a role on a parent grants nothing on a child's contacts)."""
    form = NewOrganisationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            child = services.organisation_create(
                name=form.cleaned_data["name"],
                slug=form.cleaned_data["slug"],
                parent=request.organisation,
                request=request,
            )
        except services.OrganisationRefused as refusal:
            form.add_error(None, str(refusal))
        else:
            services.membership_grant(organisation=child, user=request.user, role=Role.ADMINISTRATOR, request=request)
            messages.success(request, f"{child.name} was created; you are its administrator.")
            return redirect("organisations:children")
    context = {
        "organisation": request.organisation,
        "children": selectors.children_of(request.organisation),
        "form": form,
        "tab": "children",
    }
    return render(request, "organisations/children.html", context, status=400 if form.errors else 200)


@require_GET
def audit_log(request: HttpRequest) -> HttpResponse:
    filter_form = AuditFilterForm(request.GET or None)
    entries = selectors.audit_entries(request.organisation, **filter_form.filters())
    table = AuditTable(entries)
    table_paginate(request, table, per_page=AUDIT_PER_PAGE)
    context = {
        "organisation": request.organisation,
        "filter_form": filter_form,
        "table": table,
        "export_query": request.GET.urlencode(),
        "tab": "audit",
    }
    return render(request, "organisations/audit.html", context)


AUDIT_COLUMNS = ["when", "user", "action", "details", "object_type", "object_id", "rows", "remote_address"]


def audit_csv_rows(entries) -> Iterator[str]:
    """CSV lines (header first), every cell formula-safe: summaries quote names people typed."""
    writer = csv.writer(Echo())
    yield "\ufeff" + writer.writerow(AUDIT_COLUMNS)
    labels = dict(AuditEntry.Action.choices)
    rows = entries.values_list(
        "created_at", "username", "action", "summary", "object_type", "object_id", "rows", "remote_address"
    )
    for created_at, username, action, *rest in rows.iterator(chunk_size=CSV_CHUNK):
        cells = [created_at.isoformat(), username, labels.get(action, action), *rest]
        yield writer.writerow([formula_escape(cell) for cell in cells])


@require_GET
def audit_export(request: HttpRequest) -> StreamingHttpResponse:
    entries = selectors.audit_entries(request.organisation, **AuditFilterForm(request.GET or None).filters())
    count = entries.count()
    audit.record(request, audit.Action.EXPORT, f"Exported the audit log ({count} entries)", rows=count)
    response = StreamingHttpResponse(audit_csv_rows(entries), content_type="text/csv; charset=utf-8")
    filename = f"audit-{request.organisation.slug}-{timezone.now():%Y%m%d-%H%M}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@require_http_methods(["GET", "POST"])
def all_organisations(request: HttpRequest) -> HttpResponse:
    """Site operators: every organisation; create one at the top, switch one off or on, delete one.

    ``?delete=<id>`` asks for confirmation (GET) and deletes (POST).
    """
    delete_id = id_param(request.GET.get("delete"))
    if delete_id is not None:
        return _delete_organisation(request, get_object_or_404(Organisation, pk=delete_id))
    form = NewOrganisationForm(request.POST if request.POST.get("action") == "create" else None)
    if request.method == "POST":
        response = _operator_change(request, form)
        if response is not None:
            return response
    context = {"tree": selectors.all_organisations(), "form": form, "tab": "all"}
    return render(request, "organisations/all.html", context, status=400 if form.errors else 200)


def _operator_change(request: HttpRequest, form: NewOrganisationForm) -> HttpResponse | None:
    action = request.POST.get("action")
    if action == "create":
        if not form.is_valid():
            return None
        try:
            created = services.organisation_create(
                name=form.cleaned_data["name"], slug=form.cleaned_data["slug"], request=request
            )
        except services.OrganisationRefused as refusal:
            form.add_error(None, str(refusal))
            return None
        messages.success(request, f"{created.name} was created. Give someone its Administrator role.")
        return redirect("organisations:all")
    if action in ("deactivate", "activate"):
        organisation = get_object_or_404(Organisation, pk=id_param(request.POST.get("organisation")) or 0)
        services.organisation_deactivate(organisation=organisation, active=action == "activate", request=request)
        state = "switched on again" if action == "activate" else "switched off: its members can no longer open it"
        messages.success(request, f"{organisation.name} is {state}.")
        return redirect("organisations:all")
    messages.error(request, "Choose create, switch off, switch on or delete.")
    return redirect("organisations:all")


def _delete_organisation(request: HttpRequest, organisation: Organisation) -> HttpResponse:
    if request.method == "GET":
        return confirm_page(
            request,
            title=f"Delete {organisation.name}?",
            text=(
                "Only an organisation without campaigns, contacts or child organisations can be deleted; "
                "its members lose their role in it. Otherwise switch it off instead."
            ),
            button="Delete",
            cancel=reverse("organisations:all"),
            crumbs=(("All organisations", reverse("organisations:all")),),
        )
    try:
        services.organisation_delete(organisation=organisation, request=request)
    except services.OrganisationRefused as refusal:
        messages.error(request, str(refusal))
    else:
        messages.success(request, f"{organisation.name} was deleted.")
    return redirect("organisations:all")
