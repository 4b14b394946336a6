"""Every page is staff-only except the webhook and the recipients' own pages."""

from __future__ import annotations

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from cobalt_mail.permissions import PUBLIC_URL_NAMES

pytestmark = pytest.mark.django_db


def app_urls() -> list[tuple[str, str]]:
    """(name, example path) for every named URL of the project, with sample arguments."""
    found = []

    def walk(patterns, prefix="", namespace=""):
        for entry in patterns:
            if isinstance(entry, URLResolver):
                if entry.app_name == "admin":
                    continue
                child_ns = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
                walk(entry.url_patterns, prefix + str(entry.pattern), child_ns)
            elif isinstance(entry, URLPattern) and entry.name:
                route = prefix + str(entry.pattern)
                path = "/" + re.sub(r"<int:\w+>", "1", route).replace("<str:token>", "x")
                found.append((namespace + entry.name, path))

    walk(get_resolver().url_patterns)
    return found


def staff_urls() -> list[tuple[str, str]]:
    return [(name, path) for name, path in app_urls() if name not in PUBLIC_URL_NAMES and "<" not in path]


def test_the_url_list_covers_the_main_pages():
    names = {name for name, _ in staff_urls()}
    assert {"home", "campaigns:list", "campaigns:create", "audiences:index", "settings", "reports:index"} <= names


@pytest.mark.parametrize(("name", "path"), staff_urls())
def test_anonymous_visitors_are_sent_to_the_login_page(client, name, path):
    response = client.get(path)
    assert response.status_code == 302, name
    assert response["Location"].startswith("/login/?next=")


@pytest.mark.parametrize(("name", "path"), staff_urls())
def test_logged_in_non_staff_users_get_403(client, member_user, name, path):
    client.force_login(member_user)
    response = client.get(path)
    assert response.status_code == 403, name
    assert b"staff only" in response.content


def test_admin_is_staff_only_too(client):
    response = client.get("/admin/")
    assert response.status_code == 302


def test_the_public_pages_answer_without_login(client):
    assert client.get("/u/not-a-token/").status_code == 404  # a plain "link not valid" page
    assert client.get("/login/").status_code == 200
    assert client.post("/tracking/ses/", data=b"{}", content_type="text/plain").status_code == 400


def test_staff_see_the_home_page_with_navigation(staff_client):
    response = staff_client.get("/")
    assert response.status_code == 200
    for label in (b"Campaigns", b"Audiences", b"Reports", b"Settings", b"Log out"):
        assert label in response.content


def test_logout_requires_post_and_ends_the_session(staff_client):
    assert staff_client.post("/logout/").status_code == 302
    assert staff_client.get("/").status_code == 302
