"""Which organisations a request may see, and at which role: the reads every view scopes by.

``cobalt_mail.permissions`` resolves the request's organisation once (``request.organisation``,
``request.role``); views pass it to the selectors, and fetch single objects with ``get_or_404``,
which answers 404 for another organisation's ids (their existence is not revealed) and writes an
audit entry.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import DEFAULT_DB_ALIAS, connection
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest

from organisations import audit
from organisations.models import Membership, Organisation, Role, role_at_least

SESSION_KEY = "organisation_id"


@dataclass(frozen=True)
class Access:
    """The request's organisation, the user's role in it, and the organisations they may switch to."""

    organisation: Organisation
    role: str
    choices: tuple[Organisation, ...]


def memberships_of(user) -> dict[int, tuple[Organisation, str]]:
    """{organisation id: (organisation, role)} over the user's active organisations.

    Site operators (``is_superuser``) are administrators of every organisation.
    """
    if user.is_superuser:
        return {org.id: (org, Role.ADMINISTRATOR) for org in Organisation.objects.filter(is_active=True)}
    # Every request of every member runs this (cobalt_mail.permissions), so it is one hand-written
    # SELECT: the ORM spent about 0.7 ms building and compiling the same join each time, 20 times
    # the query itself (bench.orgscale, docs/performance.md). The columns come from the models.
    with connection.cursor() as cursor:
        cursor.execute(_MEMBERSHIPS_SQL, [user.pk])
        rows = cursor.fetchall()
    return {row[1]: (Organisation.from_db(DEFAULT_DB_ALIAS, _ORGANISATION_FIELDS, row[1:]), row[0]) for row in rows}


_ORGANISATION_FIELDS = [field.attname for field in Organisation._meta.concrete_fields]
_MEMBERSHIPS_SQL = (
    "SELECT m.{role}, {columns} FROM {memberships} m JOIN {organisations} o ON o.{pk} = m.{org} "
    "WHERE m.{user} = %s AND o.{active}"
).format(
    role=connection.ops.quote_name(Membership._meta.get_field("role").column),
    columns=", ".join("o." + connection.ops.quote_name(field.column) for field in Organisation._meta.concrete_fields),
    memberships=connection.ops.quote_name(Membership._meta.db_table),
    organisations=connection.ops.quote_name(Organisation._meta.db_table),
    pk=connection.ops.quote_name(Organisation._meta.pk.column),
    org=connection.ops.quote_name(Membership._meta.get_field("organisation").column),
    user=connection.ops.quote_name(Membership._meta.get_field("user").column),
    active=connection.ops.quote_name(Organisation._meta.get_field("is_active").column),
)


def access_for(request: HttpRequest) -> Access | None:
    """The organisation the request works in (the one chosen in the navbar, else the first)."""
    found = memberships_of(request.user)
    if not found:
        return None
    chosen = request.session.get(SESSION_KEY)
    if chosen not in found:
        chosen = min(found, key=lambda org_id: (found[org_id][0].name.lower(), org_id))
    organisation, role = found[chosen]
    choices = tuple(sorted((org for org, _ in found.values()), key=lambda org: (org.name.lower(), org.id)))
    return Access(organisation=organisation, role=role, choices=choices)


def descendant_ids(organisation: Organisation) -> list[int]:
    """The organisation and every organisation below it, at any depth."""
    found, frontier = [organisation.id], [organisation.id]
    while frontier:
        frontier = list(Organisation.objects.filter(parent_id__in=frontier).values_list("id", flat=True))
        found.extend(frontier)
    return found


def ancestor_ids(organisation: Organisation) -> list[int]:
    found, parent_id = [], organisation.parent_id
    while parent_id is not None and parent_id not in found:
        found.append(parent_id)
        parent_id = Organisation.objects.filter(id=parent_id).values_list("parent_id", flat=True).first()
    return found


def may(request: HttpRequest, minimum: str) -> bool:
    return role_at_least(getattr(request, "role", None), minimum)


def get_or_404(
    request: HttpRequest, queryset: QuerySet | type[Model], *, path: str = "organisation", **lookup
) -> Model:
    """One object of the request's organisation; another organisation's answers 404 (audited).

    ``path`` is how the object reaches its organisation ("organisation", "campaign__organisation").
    """
    queryset = queryset._default_manager.all() if isinstance(queryset, type) else queryset
    # get() by the foreign key's id: the cheapest statement to build (every campaign poll runs it).
    try:
        return queryset.get(**{f"{path}_id": getattr(request.organisation, "id", None)}, **lookup)
    except queryset.model.DoesNotExist:
        pass
    if queryset.filter(**lookup).exists():
        audit.record(
            request,
            audit.Action.FORBIDDEN,
            f"Asked for {queryset.model._meta.verbose_name} {lookup} of another organisation",
            object_type=queryset.model._meta.model_name,
        )
    raise Http404("No such page in this organisation.")


def in_organisation(queryset: QuerySet, request_or_organisation, *, path: str = "organisation") -> QuerySet:
    organisation = getattr(request_or_organisation, "organisation", request_or_organisation)
    return queryset.filter(**{path: organisation})
