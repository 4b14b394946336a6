"""The organisation pages: its details, members and roles, child organisations, audit log, the
navbar switcher and the site operators' list of every organisation.

Who may open each page is decided once, in cobalt_mail.permissions (VIEW_ROLES); these views
only work in ``request.organisation`` and call organisations.services for every write.
"""

from __future__ import annotations

import csv
import datetime
import re
from collections.abc import Iterator

from django import forms
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
from organisations import reputation as reputations
from organisations import senders as sender_service
from organisations.forms import AuditFilterForm, GrantForm, NewOrganisationForm, OrganisationForm, QuotaForm, RoleForm
from organisations.models import AuditEntry, Membership, Organisation, Role, SenderIdentity
from organisations.scope import SESSION_KEY, get_or_404, may
from organisations.tables import AuditTable
from stats.counters import usage_day

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
    form = OrganisationForm(
        request.POST or None,
        instance=Organisation(pk=organisation.pk, **_fields(organisation)),
        operator=request.user.is_superuser,
    )
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


# --- usage ---------------------------------------------------------------------------------------


def _month_param(value: str | None, today: datetime.date) -> datetime.date:
    """The first day of ``?month=YYYY-MM``; this month if it is missing or not a month."""
    found = re.fullmatch(r"(\d{4})-(\d{2})", value or "")
    if found and 1900 <= int(found[1]) <= 9998 and 1 <= int(found[2]) <= 12:
        return datetime.date(int(found[1]), int(found[2]), 1)
    return selectors.month_start(today)


def _usage_scope(request: HttpRequest) -> list[selectors.UsageNode]:
    """The request's organisation and those below it; every organisation for site operators."""
    return selectors.usage_tree(request.organisation, everyone=request.user.is_superuser)


@require_GET
def usage(request: HttpRequest) -> HttpResponse:
    """Messages per organisation (today, this month, last month; with their child organisations'
    beside), and one organisation's days in a month (``?organisation=<id>&month=YYYY-MM``)."""
    today = usage_day()
    month = _month_param(request.GET.get("month"), today)
    nodes = _usage_scope(request)
    wanted = id_param(request.GET.get("organisation")) or request.organisation.pk
    chosen = next((node for node in nodes if node.organisation.pk == wanted), None)
    if chosen is None:
        audit.record(
            request, audit.Action.FORBIDDEN, f"Asked for the usage of organisation {wanted}", object_type="organisation"
        )
        raise Http404("No such organisation here.")
    selectors.usage_summary(nodes, everyone=request.user.is_superuser, today=today)
    for node in nodes:
        node.quota = _quota_words(node)
        # Site operators set any organisation's quotas; administrators those below their own.
        node.quota_editable = request.user.is_superuser or node.organisation.pk != request.organisation.pk
    days = selectors.usage_days(chosen, month, today=today)
    this_month = selectors.month_start(today)
    context = {
        "nodes": nodes,
        "chosen": chosen,
        "days": days,
        "month_total": {
            "sent": sum(day.sent for day in days),
            "test_sent": sum(day.test_sent for day in days),
            "with_children": sum(day.with_children for day in days),
        },
        "month": month,
        "previous_month": selectors.month_start(month, -1),
        "next_month": selectors.month_start(month, 1) if month < this_month else None,
        "this_month": this_month,
        "last_month": selectors.month_start(today, -1),
        "today": today,
        "tab": "usage",
    }
    return render(request, "organisations/usage.html", context)


USAGE_COLUMNS = ["organisation", "parent", "month", "messages_sent", "test_messages", "total_with_children"]


def _quota_words(node: selectors.UsageNode) -> str:
    """The organisation's quotas and what is left of them, from the figures already read."""
    organisation = node.organisation
    parts = []
    for quota, used, per, period in (
        (organisation.daily_quota, node.own["today"], "a day", "today"),
        (organisation.monthly_quota, node.own["this_month"], "a month", "this month"),
    ):
        if quota is not None:
            parts.append(f"{quota:,} {per} ({max(quota - used, 0):,} left {period})")
    return "; ".join(parts) or "No limit"


@require_http_methods(["GET", "POST"])
def quota(request: HttpRequest, pk: int) -> HttpResponse:
    """Set an organisation's quotas: site operators for any, administrators for those below theirs
    (an organisation does not set its own)."""
    nodes = _usage_scope(request)
    target = next((node.organisation for node in nodes if node.organisation.pk == pk), None)
    if target is None or (target.pk == request.organisation.pk and not request.user.is_superuser):
        audit.record(request, audit.Action.FORBIDDEN, f"Asked to set the quotas of organisation {pk}")
        raise Http404("No such organisation here.")
    form = QuotaForm(request.POST or None, instance=Organisation(pk=target.pk, **_fields(target)))
    if request.method == "POST" and form.is_valid():
        changed = services.organisation_update(organisation=target, changes=form.cleaned_data, request=request)
        messages.success(request, f"Quotas of {target.name} saved." if changed else "Nothing changed.")
        return redirect("organisations:usage")
    context = {"organisation": request.organisation, "target": target, "form": form, "tab": "usage"}
    return render(request, "organisations/quota.html", context, status=400 if form.errors else 200)


@require_GET
def usage_export(request: HttpRequest) -> HttpResponse:
    """One row per organisation for a month (``?month=YYYY-MM``), for billing; formula-safe."""
    month = _month_param(request.GET.get("month"), usage_day())
    nodes = _usage_scope(request)
    selectors.usage_month(nodes, everyone=request.user.is_superuser, month=month)
    writer = csv.writer(Echo())
    lines = ["\ufeff" + writer.writerow(USAGE_COLUMNS)]
    for node in nodes:
        cells = [
            node.organisation.name,
            node.parent.name if node.parent else "",
            f"{month:%Y-%m}",
            node.own["messages"],
            node.own["tests"],
            node.with_children["total"],
        ]
        lines.append(writer.writerow([formula_escape(cell) for cell in cells]))
    audit.record(
        request,
        audit.Action.EXPORT,
        f"Exported the usage of {month:%B %Y} ({len(nodes)} organisations)",
        rows=len(nodes),
    )
    response = HttpResponse("".join(lines), content_type="text/csv; charset=utf-8")
    scope = "all" if request.user.is_superuser else request.organisation.slug
    response["Content-Disposition"] = f'attachment; filename="usage-{scope}-{month:%Y-%m}.csv"'
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


# --- senders --------------------------------------------------------------------------------------


class SenderForm(forms.Form):
    kind = forms.ChoiceField(
        label="Add",
        choices=[
            (SenderIdentity.Kind.DOMAIN, "A domain (recommended): every address at it may send"),
            (SenderIdentity.Kind.ADDRESS, "A single address"),
        ],
        initial=SenderIdentity.Kind.DOMAIN,
        widget=forms.RadioSelect,
    )
    value = forms.CharField(
        label="Domain or address",
        max_length=254,
        widget=forms.TextInput(attrs={"class": "input", "placeholder": "riverside.example", "autocomplete": "off"}),
    )
    mail_from = forms.CharField(
        label="Custom MAIL FROM subdomain (optional, domains only)",
        max_length=63,
        required=False,
        help_text="e.g. “mail” for mail.riverside.example: SPF then passes for your own domain. "
        "Leave it empty to use SES's.",
        widget=forms.TextInput(attrs={"class": "input", "placeholder": "mail", "autocomplete": "off"}),
    )


@require_http_methods(["GET", "POST"])
def senders(request: HttpRequest) -> HttpResponse:
    """The organisation's sender domains and addresses with the DNS records each needs; administrators
    add one (POST)."""
    form = SenderForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            identity = sender_service.sender_add(
                organisation=request.organisation,
                kind=form.cleaned_data["kind"],
                value=form.cleaned_data["value"],
                mail_from_subdomain=form.cleaned_data["mail_from"],
                request=request,
            )
        except sender_service.SenderRefused as refusal:
            form.add_error("value", str(refusal))
        else:
            messages.success(
                request, f"{identity.value} was added in SES. {' '.join(sender_service.missing(identity))}"
            )
            if identity.last_error:
                messages.warning(request, identity.last_error)
            return redirect("organisations:senders")
    identities = [
        (identity, sender_service.dns_records(identity), sender_service.missing(identity))
        for identity in sender_service.identities_of(request.organisation)
    ]
    context = {
        "organisation": request.organisation,
        "identities": identities,
        "shared": sender_service.shared_addresses(),
        "form": form,
        "editable": may(request, Role.ADMINISTRATOR),
        "tab": "senders",
    }
    return render(request, "organisations/senders.html", context, status=400 if form.errors else 200)


@require_POST
def sender_check(request: HttpRequest, pk: int) -> HttpResponse:
    """ "Check now": ask SES at once instead of waiting for the schedule."""
    identity = sender_service.sender_check(identity=get_or_404(request, SenderIdentity, pk=pk))
    if identity.last_error:
        messages.error(request, identity.last_error)
    else:
        messages.success(request, f"{identity.value}: {identity.get_status_display().lower()}.")
    return redirect("organisations:senders")


@require_http_methods(["GET", "POST"])
def sender_remove(request: HttpRequest, pk: int) -> HttpResponse:
    identity = get_or_404(request, SenderIdentity, pk=pk)
    if request.method == "GET":
        return confirm_page(
            request,
            title=f"Remove {identity.value}?",
            text=(
                f"{identity.value} is deleted from SES: campaigns can no longer be sent from it (those set to "
                "send from it are refused until you choose another sender). Adding it again later means "
                "verifying it again."
            ),
            button="Remove",
            cancel=reverse("organisations:senders"),
            crumbs=(("Senders", reverse("organisations:senders")),),
        )
    try:
        sender_service.sender_remove(identity=identity, request=request)
    except sender_service.SenderRefused as refusal:
        messages.error(request, str(refusal))
    else:
        messages.success(request, f"{identity.value} was removed.")
    return redirect("organisations:senders")


# --- reputation -----------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def reputation(request: HttpRequest) -> HttpResponse:
    """Site operators: every organisation's bounce and complaint rates in both windows, worst first
    (held ones at the top). ``?lift=<id>`` asks to lift a hold (GET) and lifts it (POST, audited)."""
    lift_id = id_param(request.GET.get("lift"))
    if lift_id is not None:
        return _lift_hold(request, get_object_or_404(Organisation, pk=lift_id))
    if request.method == "POST":
        return redirect("organisations:reputation")
    found = reputations.reputations_of(list(Organisation.objects.all()))
    found.sort(key=lambda item: (item.organisation.held_at is None, -item.severity, item.organisation.name))
    context = {"reputations": found, "levels": reputations.levels(), "tab": "reputation"}
    return render(request, "organisations/reputation.html", context)


def _lift_hold(request: HttpRequest, organisation: Organisation) -> HttpResponse:
    back = reverse("organisations:reputation")
    if request.method == "GET":
        return confirm_page(
            request,
            title=f"Lift the sending hold on {organisation.name}?",
            text=(
                f"{organisation.name} may send again: {organisation.held_reason or 'it is not on hold now.'} "
                "Its paused campaigns stay paused until its staff resume them, and its figures count afresh "
                "from now, so check that the cause was dealt with first."
            ),
            button="Lift the hold",
            cancel=back,
            crumbs=(("Reputation", back),),
        )
    if reputations.organisation_hold_lift(organisation=organisation, request=request):
        messages.success(
            request, f"The hold on {organisation.name} was lifted. Its staff can now resume its paused campaigns."
        )
    else:
        messages.info(request, f"{organisation.name} was not on hold.")
    return redirect(back)
