"""Keys of each role for the club of tests/organisations (and one of its sibling), and a client
that sends one."""

from __future__ import annotations

import pytest
from django.test import Client

from api.keys import api_key_create
from organisations.models import Organisation, Role


@pytest.fixture
def club(organisation):
    organisation.name, organisation.slug = "Riverside Rowing", "riverside"
    organisation.save()
    return organisation


@pytest.fixture
def other_club(club):
    return Organisation.objects.create(name="Hilltop Chess", slug="hilltop")


class KeyClient:
    """A test client that sends ``Authorization: Bearer <key>`` (or none) and JSON bodies."""

    def __init__(self, raw: str | None) -> None:
        self.raw = raw
        self.client = Client()

    def _headers(self) -> dict:
        return {"Authorization": f"Bearer {self.raw}"} if self.raw else {}

    def get(self, path: str, **params):
        return self.client.get(path, params, headers=self._headers())

    def delete(self, path: str):
        return self.client.delete(path, headers=self._headers())

    def post(self, path: str, body=None, **extra):
        return self.client.post(path, body, content_type="application/json", headers=self._headers(), **extra)

    def put(self, path: str, body=None):
        return self.client.put(path, body, content_type="application/json", headers=self._headers())


@pytest.fixture
def key_for():
    """key_for(organisation, role) → (ApiKey, KeyClient)."""

    def make(organisation, role=Role.EDITOR, **extra):
        key, raw = api_key_create(organisation=organisation, role=role, name=f"{role} key", **extra)
        return key, KeyClient(raw)

    return make


@pytest.fixture
def api_client(club, key_for):
    """An editor key of the club."""
    return key_for(club, Role.EDITOR)[1]
