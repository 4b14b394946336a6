"""The API's front door: keys (hash only, shown once, revoked, expired, audited), problem+json
errors, the per-key rate limit, the OpenAPI document and its docs page, the keys page and
``manage.py apikey_create``."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone
from openapi_spec_validator import validate

from api.keys import api_key_revoke, key_hash
from api.models import ApiKey
from organisations.models import AuditEntry, Membership, Role
from tests.api.conftest import KeyClient

pytestmark = pytest.mark.django_db


def problem(response) -> dict:
    assert response["Content-Type"] == "application/problem+json"
    body = json.loads(response.content)
    assert body["status"] == response.status_code and body["title"] and body["detail"]
    return body


# --- authentication -----------------------------------------------------------------------------


def test_a_key_answers_for_its_organisation_and_role_and_records_its_last_use(club, key_for):
    key, client = key_for(club, Role.SENDER)

    response = client.get("/api/v1/me")

    assert response.status_code == 200
    assert response.json() == {
        "organisation": "riverside",
        "organisation_name": "Riverside Rowing",
        "role": "sender",
        "key": key.prefix,
    }
    key.refresh_from_db()
    assert key.last_used_at is not None


def test_only_the_hash_of_a_key_is_stored(club, key_for):
    key, client = key_for(club)

    stored = ApiKey.objects.filter(pk=key.pk).values().get()

    assert client.raw not in json.dumps(stored, default=str)
    assert stored["key_hash"] == key_hash(client.raw)
    assert client.raw.startswith(key.prefix + "_")


def test_without_a_key_the_answer_is_401_problem_json_saying_how_to_authenticate(club):
    response = KeyClient(None).get("/api/v1/me")

    assert response.status_code == 401
    assert "Bearer" in problem(response)["detail"]
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("state", ["unknown", "revoked", "expired"])
def test_an_unknown_revoked_or_expired_key_gets_401_and_an_audit_entry(club, key_for, state):
    key, client = key_for(club)
    if state == "unknown":
        client = KeyClient(client.raw[:-4] + "abcd")
    elif state == "revoked":
        api_key_revoke(key=key)
    else:
        ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    response = client.get("/api/v1/me")

    assert response.status_code == 401
    problem(response)
    entry = AuditEntry.objects.filter(action=AuditEntry.Action.API_AUTH_FAILED).get()
    assert "/api/v1/me" in entry.summary and state in entry.summary
    # A known key's failure is shown to its organisation; an unknown key's to site operators.
    assert entry.organisation == (None if state == "unknown" else club)


def test_a_key_of_a_switched_off_organisation_gets_401(club, key_for):
    _, client = key_for(club)
    club.is_active = False
    club.save()

    assert client.get("/api/v1/me").status_code == 401


# --- rate limit ---------------------------------------------------------------------------------


def test_a_key_over_its_rate_limit_gets_429_with_retry_after_and_other_keys_do_not(club, key_for, settings):
    settings.API_RATE_LIMIT = 3
    _, client = key_for(club)
    _, other = key_for(club)

    answers = [client.get("/api/v1/me").status_code for _ in range(4)]

    assert answers == [200, 200, 200, 429]
    response = client.get("/api/v1/me")
    assert response.status_code == 429
    assert "3 requests in a minute" in problem(response)["detail"]
    assert 1 <= int(response["Retry-After"]) <= 60
    assert other.get("/api/v1/me").status_code == 200


def test_the_rate_limit_window_starts_again_after_a_minute(club, key_for, settings, time_machine):
    settings.API_RATE_LIMIT = 1
    time_machine.move_to(timezone.now(), tick=False)
    _, client = key_for(club)
    assert client.get("/api/v1/me").status_code == 200
    assert client.get("/api/v1/me").status_code == 429

    time_machine.shift(timedelta(seconds=61))

    assert client.get("/api/v1/me").status_code == 200


# --- the OpenAPI document and the docs ------------------------------------------------------------


def test_the_openapi_document_validates_and_names_the_bearer_scheme(staff_client):
    response = staff_client.get("/api/v1/openapi.json")

    assert response.status_code == 200
    document = response.json()
    validate(document)
    assert document["openapi"].startswith("3.")
    assert any(scheme.get("scheme") == "bearer" for scheme in document["components"]["securitySchemes"].values())
    assert "/api/v1/me" in document["paths"]


def test_the_docs_need_a_login_and_serve_their_own_files_under_the_csp(staff_client):
    assert Client().get("/api/v1/docs")["Location"].startswith("/login/")
    assert Client().get("/api/v1/openapi.json")["Location"].startswith("/login/")

    response = staff_client.get("/api/v1/docs")

    assert response.status_code == 200
    page = response.content.decode()
    assert "/static/ninja/swagger-ui-bundle.js" in page
    assert "cdn" not in page.lower()
    assert "script-src" in response["Content-Security-Policy"]


# --- the keys page ------------------------------------------------------------------------------


@pytest.fixture
def admin_client(client, club, django_user_model):
    user = django_user_model.objects.create_user(username="ada.admin", password="correct-horse-battery")
    Membership.objects.create(user=user, organisation=club, role=Role.ADMINISTRATOR)
    client.force_login(user)
    return client


def test_an_administrator_makes_a_key_that_is_shown_once_and_works(admin_client, club):
    response = admin_client.post("/organisations/api-keys/", {"name": "Membership site", "role": "editor"})

    assert response.status_code == 200
    raw = response.context["created"][1]
    assert raw in response.content.decode()
    assert KeyClient(raw).get("/api/v1/me").json()["role"] == "editor"
    again = admin_client.get("/organisations/api-keys/").content.decode()
    assert raw not in again and ApiKey.objects.get().prefix in again
    assert AuditEntry.objects.filter(action=AuditEntry.Action.API_KEY, organisation=club).count() == 1


def test_a_revoked_key_stops_working_at_once_and_the_revocation_is_audited(admin_client, club, key_for):
    key, client = key_for(club)

    response = admin_client.post(f"/organisations/api-keys/{key.pk}/revoke/", follow=True)

    assert "is revoked" in response.content.decode()
    assert client.get("/api/v1/me").status_code == 401
    assert AuditEntry.objects.filter(action=AuditEntry.Action.API_KEY, summary__startswith="Revoked").exists()


def test_another_organisations_key_cannot_be_revoked_and_answers_404(admin_client, other_club, key_for):
    key, client = key_for(other_club)

    assert admin_client.post(f"/organisations/api-keys/{key.pk}/revoke/").status_code == 404
    assert client.get("/api/v1/me").status_code == 200


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "", "role": "editor"}, "This field is required"),
        ({"name": "Site", "role": "administrator"}, "Select a valid choice"),
        ({"name": "Site", "role": "editor", "expires_on": "2001-01-01"}, "The expiry date is in the past"),
    ],
)
def test_a_bad_key_form_says_what_to_fix_and_makes_no_key(admin_client, fields, message):
    response = admin_client.post("/organisations/api-keys/", fields)

    assert response.status_code == 400
    assert message in response.content.decode()
    assert not ApiKey.objects.exists()


def test_a_key_name_is_shown_as_text(admin_client, club, key_for):
    admin_client.post("/organisations/api-keys/", {"name": "<script>alert(1)</script>", "role": "viewer"})

    page = admin_client.get("/organisations/api-keys/").content.decode()

    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page


def test_an_editor_cannot_open_the_keys_page(client, club, django_user_model):
    user = django_user_model.objects.create_user(username="ed.editor", password="correct-horse-battery")
    Membership.objects.create(user=user, organisation=club, role=Role.EDITOR)
    client.force_login(user)

    assert client.get("/organisations/api-keys/").status_code == 403


# --- the command ----------------------------------------------------------------------------------


def test_apikey_create_prints_a_working_key_once(club):
    out, err = io.StringIO(), io.StringIO()

    call_command("apikey_create", "riverside", "viewer", "--name", "Nightly sync", stdout=out, stderr=err)

    raw = out.getvalue().strip()
    assert KeyClient(raw).get("/api/v1/me").json()["role"] == "viewer"
    assert "shown once" in err.getvalue()
    assert ApiKey.objects.get().name == "Nightly sync"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["nowhere", "viewer"], "no organisation with the slug"),
        (["riverside", "administrator"], "not a role for a key"),
        (["riverside", "viewer", "--expires", "soon"], "not a date"),
        (["riverside", "viewer", "--expires", "2001-01-01"], "in the past"),
    ],
)
def test_apikey_create_refuses_bad_arguments_in_plain_words(club, arguments, message):
    with pytest.raises(CommandError, match=message):
        call_command("apikey_create", *arguments, stdout=io.StringIO(), stderr=io.StringIO())
    assert not ApiKey.objects.exists()
