"""Every page under the Content-Security-Policy in Chromium, with no violation (tests/e2e/conftest.py)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from api.webhooks import webhook_endpoint_create
from audiences.models import Contact, ImportJob, Segment, Suppression
from campaigns.composer.rendering import recipient_context
from campaigns.models import Campaign, CampaignAttachment, CampaignTemplate, Layout, Recipient
from organisations.models import Organisation
from stats.counters import snapshot_recorded
from stats.models import CampaignStats
from tests.cobalt_mail.test_access import app_urls
from tests.cobalt_mail.test_csp import NOT_PAGES, assert_site_policy, directives
from tests.factories import campaign_to, list_with_contacts
from tracking.models import Event

# A 1 x 1 transparent PNG.
TINY_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def staff_pages(staff_user) -> dict[str, str]:
    """A path for every page of the URL list (arguments from real rows), keyed by URL name."""
    contact_list = list_with_contacts(3, name="Choir")
    contact = Contact.objects.filter(email__startswith="person").first()
    segment = Segment.objects.create(
        name="Rowers", rules=[{"field": "attribute:club", "operator": "equals", "value": "Rowing"}]
    )
    layout = Layout.objects.create(
        name="Club layout", html='{{ content }}<a href="{{ unsubscribe_url }}">Unsubscribe</a>'
    )
    suppression = Suppression.objects.create(  # the club's own: it sees it beside its child organisation
        email="gone@example.org",
        reason=Suppression.Reason.MANUAL,
        created_by=staff_user,
        organisation=staff_user.memberships.get().organisation,
    )
    CampaignTemplate.objects.create(name="Monthly", subject="Hi", html_body="<p>x</p>", layout=layout)
    job = ImportJob.objects.create(
        original_name="members.csv",
        contact_list=contact_list,
        status=ImportJob.Status.DONE,
        rows_read=4,
        created=3,
        rejected=1,
        rejected_preview=[{"line": 5, "reason": "not an email address", "email": "nope"}],
    )
    waiting = ImportJob.objects.create(
        original_name="Mitglieder.csv",
        contact_list=contact_list,
        status=ImportJob.Status.MAPPING,
        column_mapping=[{"name": "E-Mail", "field": "email"}, {"name": "Vorname", "field": "first_name"}],
        sample_rows=[["jo@example.org", "Jo"]],
    )
    # A remote image in a rich-text body: the editor shows it on the staff page (img-src https:).
    draft = campaign_to(
        contact_list,
        name="Autumn draft",
        layout=layout,
        body_mode="rich",
        html_body='<p>Hi {{ first_name }}</p><img src="https://images.example.org/a.png" alt="remote">',
    )
    CampaignAttachment.objects.create(
        campaign=draft, file="attachments/x.pdf", filename="programme.pdf", content_type="application/pdf", size=10
    )
    sent = campaign_to(contact_list, name="Spring news", status=Campaign.Status.SENT, finished_at=timezone.now())
    CampaignStats.objects.create(campaign=sent, sent=1, delivered=1)
    snapshot_recorded(campaign_id=sent.pk, recipients=1)
    recipient = Recipient.objects.create(
        campaign=sent, contact=contact, email=contact.email, status=Recipient.Status.SENT
    )
    Event.objects.create(
        sns_message_id="csp-click",
        event_type=Event.Type.CLICK,
        campaign=sent,
        recipient=recipient,
        email=contact.email,
        occurred_at=timezone.now(),
        link="https://example.org/read",
    )
    endpoint = webhook_endpoint_create(
        organisation=sent.organisation, url="https://1.1.1.1/hooks/cobalt", event_types=["bounce"]
    )
    # Named to sort after the staff member's own organisation (a site operator works in the first by name).
    child = Organisation.objects.create(
        name="Riverside juniors", slug="juniors", parent=sent.organisation, daily_quota=100
    )
    with_arguments = {
        "organisations:quota": [child.pk],
        "webhooks:detail": [endpoint.pk],
        "reports:campaign": [sent.pk],
        "reports:campaign_live": [sent.pk],
        "reports:recipients": [sent.pk],
        "reports:timeline": [recipient.pk],
        "audiences:contact_edit": [contact.pk],
        "audiences:contact_delete": [contact.pk],
        "audiences:list_detail": [contact_list.pk],
        "audiences:list_delete": [contact_list.pk],
        "audiences:segment_edit": [segment.pk],
        "audiences:segment_delete": [segment.pk],
        "audiences:import_detail": [job.pk],
        "audiences:import_progress": [job.pk],
        "audiences:import_mapping": [waiting.pk],
        "audiences:suppression_remove": [suppression.pk],
        "compose:preview": [draft.pk],
        "compose:preview_html": [draft.pk],
        "compose:link_results": [draft.pk],
        "compose:attachments": [draft.pk],
        "compose:layout_edit": [layout.pk],
        "compose:layout_delete": [layout.pk],
        "campaigns:detail": [draft.pk],
        "campaigns:edit": [draft.pk],
        "campaigns:progress": [sent.pk],
    }
    pages = {}
    for name, path in app_urls():
        if name in NOT_PAGES:
            continue
        # A new page with arguments must be added above (or to NOT_PAGES): reverse() says which.
        pages[name] = reverse(name, args=with_arguments[name]) if "/1/" in path else reverse(name)
    pages["reports:compare"] += f"?ids={sent.pk}"
    pages["sent-campaign"] = reverse("campaigns:detail", args=[sent.pk])
    pages["preview-mobile"] = reverse("compose:preview", args=[draft.pk]) + "?view=mobile"
    pages["preview-text"] = reverse("compose:preview", args=[draft.pk]) + "?view=text"
    for admin_path in ("/admin/", "/admin/auth/user/", f"/admin/auth/user/{staff_user.pk}/change/"):
        pages[admin_path] = admin_path
    context = recipient_context(recipient)
    pages["recipient-pages"] = [
        urlsplit(context[key]).path for key in ("unsubscribe_url", "preferences_url", "view_online_url")
    ]
    return pages


def test_it_serves_every_page_under_the_policy_without_a_violation(logged_in_page, live_server, staff_user):
    staff_user.is_superuser = True  # the admin's own pages too
    staff_user.save(update_fields=["is_superuser"])
    pages = staff_pages(staff_user)
    recipient_pages = pages.pop("recipient-pages")
    page = logged_in_page
    # The body's remote image, served without a network. The browser applies the policy before a
    # request is made, so an image the policy refused would still be reported as a violation.
    page.route("https://images.example.org/**", lambda route: route.fulfill(body=TINY_PNG, content_type="image/png"))

    for name, path in pages.items():
        response = page.goto(f"{live_server.url}{path}")
        assert response.ok, (name, path, response.status)  # 286: htmx's "stop polling", a finished import
        policy = directives(response.headers["content-security-policy"])
        if name == "compose:preview_html":
            assert policy["script-src"] == ["'none'"] and "sandbox" in policy, path  # its stricter own policy
            continue
        assert_site_policy(policy, nonce_allowed=path.startswith("/admin/"))
        if name == "campaigns:edit":  # the rich-text editor shows the body's remote image (img-src https:)
            expect(page.locator(".ql-editor img[src^='https://']")).to_be_attached()
        if path.startswith("/admin/"):
            continue
        # No <style> elements (htmx's indicator styles); style attributes that script sets through
        # the CSSOM (Quill's tooltip) are allowed by CSP, markup ones would have been reported.
        assert page.locator("style").count() == 0, path
        if page.locator("script[src*='htmx']").count():  # a whole page, not an htmx partial
            # htmx runs without eval and without injecting its indicator styles.
            assert page.evaluate("htmx.config.allowEval === false && htmx.config.includeIndicatorStyles === false")

    response = page.goto(f"{live_server.url}/campaigns/999999/")
    assert response.status == 404
    assert_site_policy(directives(response.headers["content-security-policy"]))

    page.goto(f"{live_server.url}/")
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/login/")
    for path in ["/login/", *recipient_pages]:
        response = page.goto(f"{live_server.url}{path}")
        assert response.status == 200, path
        policy = directives(response.headers["content-security-policy"])
        for directive, value in {
            "object-src": ["'none'"],
            "base-uri": ["'none'"],
            "frame-ancestors": ["'self'"],
        }.items():
            assert policy[directive] == value, (path, directive)
        assert "'unsafe-inline'" not in policy.get("script-src", policy["default-src"]), path


def test_the_rich_text_editor_and_htmx_work_under_the_policy(logged_in_page, live_server):
    contact_list = list_with_contacts(2, name="Choir")
    draft = campaign_to(contact_list, name="Autumn draft", html_body="<p>Old text</p>")
    page = logged_in_page
    page.on("dialog", lambda dialog: dialog.accept())

    page.goto(f"{live_server.url}/campaigns/{draft.pk}/edit/")
    page.click("label.body-mode-choice:has-text('Rich text')")
    page.locator(".ql-editor").click()
    page.keyboard.press("Control+A")
    page.keyboard.type("Bold news")
    page.keyboard.press("Control+A")
    page.keyboard.press("Control+B")
    page.locator(".ql-toolbar .ql-link").click()  # the snow theme's link tooltip, placed by script
    page.locator(".ql-tooltip input[type=text]").fill("https://example.org/news")
    page.keyboard.press("Enter")
    page.locator(".ql-toolbar .ql-header .ql-picker-label").click()  # the heading picker's drop-down
    page.locator(".ql-toolbar .ql-header .ql-picker-item[data-value='2']").click()
    page.click("button:has-text('Save draft')")
    page.wait_for_url(re.compile(rf"/campaigns/{draft.pk}/$"))
    draft.refresh_from_db()
    assert draft.html_body == (
        '<h2><strong><a href="https://example.org/news" rel="noopener noreferrer" target="_blank">'
        "Bold news</a></strong></h2>"
    )

    page.goto(f"{live_server.url}/audiences/contacts/")
    page.fill("#id_q", "person")
    expect(page.locator("#contact-results tbody tr")).to_have_count(2)  # swapped in by htmx


def test_the_collector_catches_an_inline_script_and_style_under_the_site_policy(
    page, live_server, csp_violations, page_problems
):
    injected = (
        '<script>document.title = "injected ran"</script>'
        '<p id="styled" style="color: rgb(255, 0, 0)">styled</p>'
        '<img id="handler" src="/static/no-such.png" onerror="document.title = \'handler ran\'">'
    )

    def inject(route):
        # The real login page with its real headers (and policy), plus an injection before </body>.
        response = route.fetch()
        route.fulfill(response=response, body=response.text().replace("</body>", f"{injected}</body>"))

    page.route(f"{live_server.url}/login/", inject)
    page.goto(f"{live_server.url}/login/")
    expect(page.locator("#handler")).to_be_attached()
    page.wait_for_timeout(300)  # the broken image's error event, had its handler been allowed

    assert page.title() == "Log in · Cobalt Mail"
    assert page.locator("#styled").evaluate("element => getComputedStyle(element).color") != "rgb(255, 0, 0)"
    csp_violations.settle(page)
    reports = "\n".join(csp_violations.take())
    for directive in ("script-src-elem", "script-src-attr", "style-src-attr"):
        assert f"enforce {directive} blocked inline" in reports, reports
    assert "console: " in reports and "Content Security Policy" in reports
    # The injected image is missing on purpose: the failed-request rule reports it, and this test takes it.
    assert any("/static/no-such.png answered 404" in line for line in page_problems.take())
