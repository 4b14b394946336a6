"""Contacts by the membership database's own id (``external_id``): read one, page through the
changes, create or update one (PUT), sync up to 10,000 at once, and erase one.

Every write goes through ``audiences.sync`` (the PUT is a sync of one contact, so both follow
the same rules: no resubscription of anyone who refused mail, names matched case-insensitively).
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any, Literal

from django.db import transaction
from django.db.models import Q
from django.http import HttpRequest
from django.utils.dateparse import parse_datetime
from ninja import Field, Query, Schema, Status

from api.auth import Router, needs
from api.problems import Problem
from audiences.models import Contact, Subscription
from audiences.sync import (
    SYNC_MAX_CONTACTS,
    SYNC_RUN_HOURS,
    SyncError,
    SyncRunConflict,
    contact_erase,
    contacts_sync,
)
from organisations import audit
from organisations.models import Role
from organisations.scope import get_or_404

router = Router(tags=["contacts"])

PAGE_DEFAULT, PAGE_MAX = 100, 1000


class ContactOut(Schema):
    external_id: str | None = Field(description="The membership database's id; null for contacts added otherwise.")
    email: str
    first_name: str
    last_name: str
    attributes: dict[str, Any]
    status: Literal["active", "unsubscribed", "bounced", "complained"]
    lists: list[str] = Field(description="Names of the lists the contact is subscribed to.")
    created_at: datetime
    updated_at: datetime


class ContactIn(Schema):
    email: str = Field(max_length=1000)
    first_name: str | None = Field(None, description="Left as it is when absent or null.")
    last_name: str | None = Field(None, description="Left as it is when absent or null.")
    attributes: dict[str, Any] | None = Field(
        None, description="Merged into the stored attributes; an attribute set to null is removed."
    )
    lists: list[str] | None = Field(
        None, description="Lists to subscribe the contact to (created when missing). It never leaves a list here."
    )


class PageQuery(Schema):
    updated_since: datetime | None = Field(None, description="Only contacts changed at or after this time.")
    cursor: str | None = Field(None, max_length=200, description="`next_cursor` of the previous page.")
    limit: int = Field(PAGE_DEFAULT, ge=1, le=PAGE_MAX)


class ContactPage(Schema):
    contacts: list[ContactOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class SyncIn(Schema):
    mode: Literal["merge", "replace"] = "merge"
    lists: list[str] = Field(
        default_factory=list,
        description="The lists `replace` applies to: their members not named for them in this payload leave them.",
    )
    contacts: list[Any] = Field(
        description=f"Up to {SYNC_MAX_CONTACTS:,} objects: external_id, email, first_name, last_name, "
        "attributes, lists."
    )
    run: str | None = Field(
        None,
        min_length=1,
        max_length=100,
        description="Replace mode, more contacts than one call takes: an id you choose for the run, the same in "
        "each of its calls. Each call adds and updates; the call with `final: true` removes the members no call "
        f"named, and ends the run. A run not finished within {SYNC_RUN_HOURS} hours is abandoned (nothing removed).",
    )
    final: bool | None = Field(
        None, description="With `run` (required there): true on the run's last call, false on the others."
    )


class RejectedRow(Schema):
    index: int
    external_id: str | None
    reason: str


class SyncOut(Schema):
    created: int
    updated: int
    unchanged: int
    rejected: list[RejectedRow]
    lists_created: list[str] = Field(description="Lists named in the payload that did not exist and were created.")
    removed_from_lists: int = Field(description="Replace mode: memberships ended (not unsubscribes).")


def _lists_of(contact_ids: list[int]) -> dict[int, list[str]]:
    names: dict[int, list[str]] = {pk: [] for pk in contact_ids}
    subscriptions = (
        Subscription.objects.filter(contact_id__in=contact_ids, status=Subscription.Status.SUBSCRIBED)
        .order_by("contact_list__name")
        .values_list("contact_id", "contact_list__name")
    )
    for contact_id, name in subscriptions:
        names[contact_id].append(name)
    return names


def _out(contact: Contact, lists: list[str]) -> dict:
    return {
        "external_id": contact.external_id or None,
        "email": contact.email,
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "attributes": contact.attributes,
        "status": contact.status,
        "lists": lists,
        "created_at": contact.created_at,
        "updated_at": contact.updated_at,
    }


def _one(request: HttpRequest, external_id: str) -> Contact:
    return get_or_404(request, Contact, external_id=external_id.strip() or "\x00")


def _cursor_encode(contact: Contact) -> str:
    text = json.dumps([contact.updated_at.isoformat(), contact.pk])
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _cursor_decode(cursor: str) -> Q:
    try:
        stamp, pk = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        updated_at = parse_datetime(stamp)
        if updated_at is None or not isinstance(pk, int):
            raise ValueError
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise Problem(
            422, "The cursor is not one this API gave: pass `next_cursor` from the previous page as is."
        ) from None
    return Q(updated_at__gt=updated_at) | Q(updated_at=updated_at, pk__gt=pk)


@router.get(
    "/contacts",
    response=ContactPage,
    summary="The organisation's contacts, oldest change first, a page at a time",
    url_name="contacts",
    openapi_extra=needs(Role.VIEWER),
)
def contacts(request: HttpRequest, query: Query[PageQuery]):
    """Pages in a stable order (updated_at, id): a contact changed while you page moves to the end
    and is seen again, so none is missed. Keep the last page's time for the next `updated_since`."""
    found = Contact.objects.filter(organisation=request.organisation)
    if query.updated_since is not None:
        found = found.filter(updated_at__gte=query.updated_since)
    if query.cursor:
        found = found.filter(_cursor_decode(query.cursor))
    limit = query.limit
    page = list(found.order_by("updated_at", "pk")[:limit])
    lists = _lists_of([contact.pk for contact in page])
    return {
        "contacts": [_out(contact, lists[contact.pk]) for contact in page],
        "next_cursor": _cursor_encode(page[-1]) if len(page) == limit else None,
    }


# Before the {external_id} operations: Django tries the URL patterns in order.
@router.post(
    "/contacts/sync",
    response=SyncOut,
    summary=f"Create, update and list up to {SYNC_MAX_CONTACTS:,} contacts in one call",
    url_name="contacts_sync",
    openapi_extra=needs(Role.EDITOR),
)
def contacts_sync_post(request: HttpRequest, body: SyncIn):
    """Rows that cannot be applied come back in `rejected` with their index and reason; the others
    are applied. Nobody who unsubscribed, bounced, complained or is suppressed is subscribed again,
    and the same call twice changes nothing the second time. `mode=replace` makes the lists named
    in `lists` hold exactly the payload's members of them (the others leave them: not an unsubscribe);
    with a `run`, exactly the members named in any of the run's calls, when its `final` call comes.
    409 for a call that does not fit its run (unknown or abandoned run, other lists)."""
    if len(body.contacts) > SYNC_MAX_CONTACTS:
        raise Problem(
            413,
            f"This call has {len(body.contacts):,} contacts; the limit is {SYNC_MAX_CONTACTS:,} per call. "
            "Send them in several calls (with mode=replace, give every call the same `run` id and "
            "`final: false`, and the last one `final: true`).",
        )
    report = _sync(request, body.contacts, mode=body.mode, list_names=body.lists, run=body.run, final=body.final)
    run = f", run “{body.run}”{' final call' if body.final else ''}" if body.run else ""
    audit.record(
        request,
        audit.Action.IMPORT,
        f"API sync ({body.mode}{run}) with key {request.api_key.prefix}: {report.created} created, "
        f"{report.updated} updated, {report.unchanged} unchanged, {len(report.rejected)} rejected, "
        f"{report.removed_from_lists} list memberships ended",
        object_type="contact",
        rows=len(body.contacts),
    )
    return {
        "created": report.created,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "rejected": [rejection.as_dict() for rejection in report.rejected],
        "lists_created": report.lists_created,
        "removed_from_lists": report.removed_from_lists,
    }


def _sync(
    request: HttpRequest,
    items: list,
    *,
    mode: str,
    list_names: list[str],
    run: str | None = None,
    final: bool | None = None,
):
    try:
        return contacts_sync(
            organisation_id=request.organisation.pk,
            contacts=items,
            mode=mode,
            list_names=list_names,
            source=f"API key {request.api_key.prefix}",
            run=run,
            final=final,
        )
    except SyncRunConflict as error:
        raise Problem(409, f"Nothing was written: {error}.") from None
    except SyncError as error:
        raise Problem(422, f"Nothing was written: {error}.") from None


@router.get(
    "/contacts/{external_id}",
    response=ContactOut,
    summary="One contact, with the lists it is subscribed to",
    url_name="contact",
    openapi_extra=needs(Role.VIEWER),
)
def contact(request: HttpRequest, external_id: str):
    found = _one(request, external_id)
    return _out(found, _lists_of([found.pk])[found.pk])


@router.put(
    "/contacts/{external_id}",
    response={200: ContactOut, 201: ContactOut},
    summary="Create or update one contact (201 when created)",
    url_name="contact_put",
    openapi_extra=needs(Role.EDITOR),
)
def contact_put(request: HttpRequest, external_id: str, body: ContactIn):
    item = {"external_id": external_id, **body.model_dump(exclude_none=True)}
    if body.attributes is not None:
        item["attributes"] = body.attributes  # keep its null values: they remove attributes
    with transaction.atomic():  # a refused contact leaves nothing behind (not even its new lists)
        report = _sync(request, [item], mode="merge", list_names=[])
        if report.rejected:
            rejection = report.rejected[0]
            raise Problem(409 if rejection.conflict else 422, f"The contact was not saved: {rejection.reason}.")
    found = Contact.objects.get(organisation=request.organisation, external_id=item["external_id"].strip())
    return Status(201 if report.created else 200, _out(found, _lists_of([found.pk])[found.pk]))


@router.delete(
    "/contacts/{external_id}",
    response={204: None},
    summary="Erase a contact (personal data removed; an opt-out is kept as a hash)",
    url_name="contact_erase",
    openapi_extra=needs(Role.EDITOR),
)
def contact_delete(request: HttpRequest, external_id: str):
    """The contact and its personal data go: its past campaign recipients stay (the figures keep
    their counts) with the address replaced. If it had unsubscribed, bounced or complained, its
    address is kept as a SHA-256 hash so a later sync does not mail it again."""
    found = _one(request, external_id)
    erasure = contact_erase(contact=found)
    audit.record(
        request,
        audit.Action.DELETE,
        f"Erased contact {found.external_id} with key {request.api_key.prefix}: {erasure.recipients} campaign "
        f"recipients and {erasure.events} events anonymised"
        + (", opt-out kept as a hash" if erasure.kept_hash else ""),
        object_type="contact",
        object_id=found.external_id,
        rows=1,
    )
    return Status(204, None)
