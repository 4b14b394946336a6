"""Lists: read them with their subscriber counts, create and rename them (editor)."""

from __future__ import annotations

from datetime import datetime

from django.db import IntegrityError, transaction
from django.http import HttpRequest
from ninja import Field, Schema, Status

from api.auth import Router, needs
from api.problems import Problem
from audiences import selectors
from audiences.models import ContactList
from audiences.services import AudienceError, list_save
from organisations.models import Role
from organisations.scope import get_or_404

router = Router(tags=["lists"])


class ListOut(Schema):
    id: int
    name: str
    description: str
    created_at: datetime
    subscribed: int = Field(description="Contacts subscribed to the list now.")
    unsubscribed: int = Field(description="Contacts who left the list (they are never subscribed again by a sync).")


class ListIn(Schema):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=2000)


class ListRename(Schema):
    name: str = Field(min_length=1, max_length=200)


def _out(contact_list: ContactList, counts: dict[str, int] | None = None) -> ListOut:
    if counts is None:
        subscribed, unsubscribed = contact_list.subscribed_count, contact_list.unsubscribed_count
    else:
        subscribed, unsubscribed = counts.get("subscribed", 0), counts.get("unsubscribed", 0)
    return ListOut(
        id=contact_list.pk,
        name=contact_list.name,
        description=contact_list.description,
        created_at=contact_list.created_at,
        subscribed=subscribed,
        unsubscribed=unsubscribed,
    )


def _save(request: HttpRequest, contact_list: ContactList, name: str, description: str) -> ContactList:
    """list_save, with a taken name answered 409 (also when another request takes it meanwhile)."""
    try:
        with transaction.atomic():
            return list_save(contact_list=contact_list, name=name, description=description)
    except AudienceError as error:
        status = 409 if "already exists" in str(error) else 422
        raise Problem(status, f"{error} Choose another name, or use the existing list.") from None
    except IntegrityError:
        raise Problem(409, f"A list named “{name.strip()}” already exists. Choose another name.") from None


@router.get(
    "/lists",
    response=list[ListOut],
    summary="The organisation's lists, with subscriber counts",
    url_name="lists",
    openapi_extra=needs(Role.VIEWER),
)
def lists(request: HttpRequest):
    rows = selectors.lists_with_counts(organisation=request.organisation).order_by("name", "pk")
    return [_out(contact_list) for contact_list in rows]


@router.post(
    "/lists",
    response={201: ListOut},
    summary="Create a list (409 when the name is taken)",
    url_name="list_create",
    openapi_extra=needs(Role.EDITOR),
)
def list_create(request: HttpRequest, payload: ListIn):
    contact_list = _save(request, ContactList(organisation=request.organisation), payload.name, payload.description)
    return Status(201, _out(contact_list, {}))


@router.patch(
    "/lists/{list_id}",
    response=ListOut,
    summary="Rename a list (409 when the name is taken)",
    url_name="list_rename",
    openapi_extra=needs(Role.EDITOR),
)
def list_rename(request: HttpRequest, list_id: int, payload: ListRename):
    contact_list = get_or_404(request, ContactList, pk=list_id)
    contact_list = _save(request, contact_list, payload.name, contact_list.description)
    counts = selectors.list_subscription_counts(organisation=request.organisation, list_id=contact_list.pk)
    return _out(contact_list, counts)
