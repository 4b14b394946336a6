"""The API's permission walk: every operation in the OpenAPI document, called by every kind of key,
answers as its declared minimum role (``x-minimum-role``) says.

- no key, an unknown, a revoked or an expired key: 401 problem+json;
- each role of organisation A: 403 below the operation's minimum role, anything but 401/403 at
  or above it (a 422 for the empty body is fine: the role check comes first);
- a key of organisation B reading or deleting with A's ids in the path: 404, as if they did not
  exist;

and never a 500. Path parameters are filled with A's real objects (``PATH_OBJECTS``): a new
operation with a new parameter fails until it says which object it names.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from api.auth import MINIMUM_ROLE
from api.keys import api_key_revoke
from api.models import ApiKey
from api.v1 import api
from organisations.models import ROLE_RANK, Organisation, Role
from tests.api.conftest import KeyClient

pytestmark = pytest.mark.django_db

KEY_ROLES = [Role.VIEWER, Role.EDITOR, Role.SENDER]


def operations() -> list[tuple[str, str, str]]:
    """(method, path template, minimum role) for every operation the API documents."""
    schema = api.get_openapi_schema(path_prefix="/api/v1")
    found = []
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            found.append((method.upper(), path, operation.get(MINIMUM_ROLE)))
    return sorted(found)


def a_objects(club: Organisation) -> dict[str, str]:
    """Organisation A's objects, by the path parameter that names them (extend with new ones)."""
    from audiences.models import Contact, ContactList, Segment
    from campaigns.models import Campaign, CampaignTemplate
    from campaigns.services import message_send

    template = CampaignTemplate.objects.create(
        organisation=club, name="Walk template", subject="s", html_body="<p>x</p>"
    )
    return {
        "list": ContactList.objects.create(organisation=club, name="Walk list").pk,
        "segment": Segment.objects.create(organisation=club, name="Walk segment", rules=[]).pk,
        "campaign": Campaign.objects.create(organisation=club, name="Walk", subject="s", from_email="a@b.example").pk,
        "email": Contact.objects.create(organisation=club, email="walk@example.org").email,
        "external_id": Contact.objects.create(
            organisation=club, email="walk-member@example.org", external_id="walk-1"
        ).external_id,
        "message": message_send(template=template, email="walk-message@example.org", from_email="a@b.example").pk,
    }


# Path parameters and which of A's objects they name (the keys of a_objects()).
PATH_OBJECTS: dict[str, str] = {
    "list_id": "list",
    "segment_id": "segment",
    "campaign_id": "campaign",
    "email": "email",
    "external_id": "external_id",
    "message_id": "message",
}


def fill(path: str, objects: dict[str, str]) -> str:
    def value(match: re.Match) -> str:
        name = match.group(1)
        assert name in PATH_OBJECTS, f"{path}: say in PATH_OBJECTS which of A's objects {{{name}}} names"
        return str(objects[PATH_OBJECTS[name]])

    return re.sub(r"\{(\w+)\}", value, path)


def call(client: KeyClient, method: str, path: str):
    if method == "GET":
        return client.get(path)
    if method == "DELETE":
        return client.delete(path)
    if method == "PUT":
        return client.put(path, {})
    if method == "PATCH":
        return client.client.patch(path, {}, content_type="application/json", headers=client._headers())
    return client.post(path, {})


def test_every_operation_declares_its_minimum_role():
    found = operations()
    assert ("GET", "/api/v1/me", Role.VIEWER) in found
    assert [op for op in found if op[2] not in ROLE_RANK] == []


def test_every_operation_answers_each_key_as_its_minimum_role_says(club, other_club, key_for):
    objects = a_objects(club)
    clients = {role: key_for(club, role)[1] for role in KEY_ROLES}
    revoked_key, revoked = key_for(club, Role.SENDER)
    api_key_revoke(key=revoked_key)
    expired_key, expired = key_for(club, Role.SENDER)
    ApiKey.objects.filter(pk=expired_key.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    outsiders = {
        "no key": KeyClient(None),
        "unknown key": KeyClient("cm_00000000_" + "x" * 43),
        "revoked key": revoked,
        "expired key": expired,
    }
    other = key_for(other_club, Role.SENDER)[1]
    wrong = []
    for method, template, minimum in operations():
        path = fill(template, objects)
        for who, client in outsiders.items():
            status = call(client, method, path).status_code
            if status != 401:
                wrong.append(f"{method} {template} with {who}: {status}, expected 401")
        for role, client in clients.items():
            status = call(client, method, path).status_code
            allowed = ROLE_RANK[role] >= ROLE_RANK[minimum]
            if status >= 500 or (status == 403) == allowed or status == 401:
                wrong.append(f"{method} {template} as {role}: {status}, expected {'not 403' if allowed else 403}")
        # Reads and deletes; writes are checked with valid bodies in their own tests (an empty body
        # is refused with 422 before any lookup, and PUT by external id creates in the key's own).
        if "{" in template and method in {"GET", "DELETE"}:
            status = call(other, method, path).status_code
            if status != 404:
                wrong.append(f"{method} {template} with another organisation's key: {status}, expected 404")
    assert wrong == []
