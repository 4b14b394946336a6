"""Every response carries the Content-Security-Policy (settings.SECURE_CSP, cobalt_mail/csp.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.urls import path, reverse

from campaigns.composer.rendering import recipient_context
from campaigns.composer.views import PREVIEW_CSP
from campaigns.models import Recipient
from cobalt_mail.csp import policy_with_floor
from cobalt_mail.permissions import VIEW_ROLES
from cobalt_mail.urls import urlpatterns as site_urlpatterns
from organisations.models import Membership, Role
from tests.cobalt_mail.test_access import app_urls
from tests.factories import CampaignFactory, ContactFactory

pytestmark = pytest.mark.django_db

TEMPLATES = Path(settings.BASE_DIR) / "templates"
# URL names answered to forms, htmx posts, SNS or downloads, never opened as a page (the browser
# walk in tests/e2e/test_csp_browser.py opens every other one), plus the public pages it opens
# logged out.
NOT_PAGES = frozenset(
    {
        "login",
        "logout",
        "favicon",
        "tracking:ses_webhook",
        "health",
        "metrics",
        "campaigns:unsubscribe",
        "campaigns:preferences",
        "campaigns:resubscribe",
        "campaigns:layout_colours",
        "campaigns:view_online",
        "campaigns:send",
        "campaigns:schedule",
        "campaigns:unschedule",
        "campaigns:pause",
        "campaigns:resume",
        "campaigns:cancel",
        "campaigns:duplicate",
        "compose:test_send",
        "compose:save_template",
        "compose:template_use",
        "compose:layout_default",
        "compose:attachment_delete",
        "compose:markdown",
        "organisations:switch",  # POST only
        "organisations:member_role",  # POST only
        "organisations:member_remove",  # the shared confirm page (confirm.html), tested elsewhere
        "organisations:audit_export",  # a CSV file
        "organisations:usage_export",  # a CSV file
        "organisations:sender_check",  # POST only
        "organisations:sender_remove",  # the shared confirm page (confirm.html)
        "compose:image_upload",
        "compose:campaign_image",
        "compose:link_check",
        "audiences:contacts_bulk",
        "audiences:segment_preview",
        "audiences:contacts_export",
        "audiences:list_export",
        "audiences:segment_export",
        "audiences:import_rejected",
        "audiences:import_discard",
        "reports:recipients_export",
        "reports:recipients_segment",
        "api-v1:openapi-json",  # JSON for programs
        "api_keys:revoke",  # POST only
        "webhooks:disable",  # POST only
        "webhooks:enable",  # POST only
        "webhooks:renew_secret",  # the shared confirm page (confirm.html), then the secret once
        "webhooks:delete",  # the shared confirm page (confirm.html)
    }
)


def directives(header: str) -> dict[str, list[str]]:
    """A policy header as {directive: [values]}."""
    parsed = {}
    for part in header.split(";"):
        name, *values = part.split()
        parsed[name.lower()] = values
    return parsed


def assert_site_policy(policy: dict[str, list[str]], *, nonce_allowed: bool = False) -> None:
    """The site-wide policy: scripts and styles from our origin only, no plugins, no <base>, no framing."""
    assert policy["default-src"] == ["'self'"]
    for directive in ("script-src", "style-src"):
        values = [value for value in policy[directive] if value != "'report-sample'"]
        nonces = [value for value in values if value.startswith("'nonce-")]
        assert values == ["'self'", *nonces], policy[directive]
        # Our own pages need no nonce; only templates that ask for one (Django's admin) get one.
        assert nonce_allowed or not nonces, policy[directive]
    assert policy["img-src"] == ["'self'", "https:", "data:"]
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    assert policy["form-action"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'self'"]


@pytest.mark.parametrize(("name", "url"), app_urls())
def test_it_sends_the_policy_on_every_url_pattern(staff_client, name, url):
    response = staff_client.get(url)

    # With sample ids most answers are 404, 405 or redirects: all of them carry the site policy.
    # (The campaign HTML views' own policies: test_the_recipient_pages_keep_their_own_policy….)
    # /health/ answers 503 here: no qcluster runs the scheduler during this test.
    assert response.status_code in {200, 302, 400, 404, 405} or (name, response.status_code) in {
        ("health", 503),
        ("organisations:all", 403),  # site operators only
        ("organisations:reputation", 403),  # site operators only
    }, name
    assert_site_policy(directives(response["Content-Security-Policy"]))


def test_it_sends_the_policy_on_redirects_and_refusals(client, member_user, organisation):
    for response in (
        client.get(reverse("campaigns:list")),  # anonymous: redirected to the login page
        Client().post("/tracking/ses/", data=b"{}", content_type="text/plain"),  # 400 from the webhook
    ):
        assert_site_policy(directives(response["Content-Security-Policy"]))
    Membership.objects.create(user=member_user, organisation=organisation, role=Role.VIEWER)
    client.force_login(member_user)
    refused = client.get(reverse("campaigns:create"))  # a viewer may not create campaigns
    assert refused.status_code == 403
    assert_site_policy(directives(refused["Content-Security-Policy"]))


def test_the_csrf_failure_page_styles_itself_with_the_nonce_of_its_own_header():
    response = Client(enforce_csrf_checks=True).post(reverse("login"), {"username": "a", "password": "b"})

    assert response.status_code == 403
    policy = directives(response["Content-Security-Policy"])
    assert_site_policy(policy, nonce_allowed=True)
    nonce = next(value for value in policy["style-src"] if value.startswith("'nonce-"))[7:-1]
    assert f'<style nonce="{nonce}">' in response.content.decode()


def failing_view(request):
    raise RuntimeError("boom")


urlpatterns = [*site_urlpatterns, path("boom/", failing_view, name="boom")]


@pytest.mark.urls(__name__)
def test_a_server_error_page_carries_the_policy_too(staff_user, monkeypatch):
    monkeypatch.setitem(VIEW_ROLES, "boom", (Role.VIEWER, Role.VIEWER))  # a page like any other
    client = Client(raise_request_exception=False)
    client.force_login(staff_user)

    response = client.get("/boom/")

    assert response.status_code == 500
    assert_site_policy(directives(response["Content-Security-Policy"]))


def test_the_recipient_pages_keep_their_own_policy_with_the_site_floor_added(client):
    recipient = Recipient.objects.create(
        campaign=CampaignFactory(), contact=ContactFactory(), email="reader@example.org"
    )
    view_online = client.get(recipient_context(recipient)["view_online_url"].removeprefix(settings.SITE_URL))

    assert view_online.status_code == 200
    policy = directives(view_online["Content-Security-Policy"])
    assert policy["default-src"] == ["'none'"]  # campaign HTML: no script, nothing from anywhere
    assert "script-src" not in policy or policy["script-src"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'self'"]
    assert policy["form-action"] == ["'self'"]
    assert policy["object-src"] == ["'none'"]


def test_the_floor_adds_only_missing_navigation_directives_never_a_fetch_directive():
    site = settings.SECURE_CSP

    assert policy_with_floor(PREVIEW_CSP, site) == PREVIEW_CSP
    merged = directives(policy_with_floor("default-src 'none'; base-uri 'self';", site))
    assert merged == {
        "default-src": ["'none'"],
        "base-uri": ["'self'"],  # the view's own choice stays
        "object-src": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'self'"],
    }  # and no img-src or script-src, which would loosen default-src 'none'


INLINE_CODE = re.compile(
    r"<script(?![^>]*\bsrc=)[^>]*>|<style\b|\sstyle=|\son[a-z]+\s*=|javascript:|hx-on|hx-vals=['\"]\s*js:",
    re.IGNORECASE,
)


def test_it_keeps_inline_scripts_handlers_and_styles_out_of_the_page_templates():
    # Email templates are exempt: campaign HTML is served under its own policy (preview, view online).
    offenders = [
        f"{template.relative_to(TEMPLATES)}: {match.group(0)}"
        for template in TEMPLATES.rglob("*.html")
        if "emails" not in template.parts
        for match in INLINE_CODE.finditer(template.read_text())
    ]

    assert offenders == []
