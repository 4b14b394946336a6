"""Browser-test fixtures: every Chromium test here fails on any Content-Security-Policy violation.

The ``page`` fixture of tests/conftest.py is wrapped so that a test which makes the browser block
or report anything under a policy (an inline script, a style attribute, an eval, a stray origin)
fails at teardown with the browser's own words. Two sources, because neither sees everything:
the ``securitypolicyviolation`` event (directive, source line and a sample; in every frame that
can run script) and Chromium's console message (also from sandboxed frames, where no script runs).
A test that provokes a violation on purpose takes it with ``csp_violations.take()``.

The same wrapper fails a test on any request the page made that failed (a 4xx/5xx answer, or one
that never got an answer) and on any console error or uncaught exception: no page may show a
broken image, a missing favicon or a script error. The document a test navigates to itself is
exempt (``page.goto`` returns its status for the test to assert, e.g. a 404 page or a 410 link);
a test that provokes a failure on purpose takes it with ``page_problems.take()``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Recipient
from tests.cobalt_mail.test_access import app_urls
from tests.cobalt_mail.test_csp import NOT_PAGES

# Signed-SNS fixtures of the tracking tests, for browser tests that feed the webhook.
from tests.sns import cert_server, signing, sns_settings  # noqa: F401

REPORT_BINDING = "__cobaltReportCspViolation"
# Runs before any script of every document (Playwright injects it outside the page's policy).
LISTENER = f"""
document.addEventListener("securitypolicyviolation", (event) => {{
  window.{REPORT_BINDING}({{
    directive: event.effectiveDirective, blocked: event.blockedURI, disposition: event.disposition,
    source: event.sourceFile, line: event.lineNumber, sample: event.sample, document: event.documentURI,
  }});
}});
"""


class CspViolations:
    """What the browser reported on one page, as readable lines."""

    def __init__(self) -> None:
        self.reports: list[str] = []

    def attach(self, page) -> None:
        page.expose_binding(REPORT_BINDING, lambda _source, violation: self._event(violation))
        page.add_init_script(LISTENER)
        page.on("console", self._console)

    def _event(self, violation: dict) -> None:
        self.reports.append(
            f"{violation['disposition']} {violation['directive']} blocked {violation['blocked'] or '?'} "
            f"on {violation['document']} at {violation['source']}:{violation['line']} {violation['sample']!r}"
        )

    def _console(self, message) -> None:
        if "Content Security Policy" in message.text:
            self.reports.append(f"console: {message.text} ({message.location.get('url', '')})")

    def settle(self, page) -> None:
        """Let reports already sent by the page reach us: any round trip delivers them first."""
        if not page.is_closed():
            try:
                page.evaluate("0")
            except Exception:  # the page may be navigating or its context gone; nothing left to flush
                pass

    def take(self) -> list[str]:
        """The reports so far, which the test then owns (teardown will not fail on them)."""
        taken, self.reports = self.reports, []
        return taken


@pytest.fixture
def csp_violations() -> CspViolations:
    return CspViolations()


class PageProblems:
    """Failed sub-requests, console errors and uncaught exceptions on one page, as readable lines."""

    def __init__(self) -> None:
        self.reports: list[str] = []

    def attach(self, page) -> None:
        page.on("response", self._response)
        page.on("requestfailed", self._request_failed)
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.reports.append(f"uncaught exception: {error}"))

    def _response(self, response) -> None:
        if response.status < 400 or _is_navigation(response.request):
            return
        request = response.request
        self.reports.append(f"{request.method} {request.url} answered {response.status} ({request.resource_type})")

    def _request_failed(self, request) -> None:
        failure = request.failure or ""
        # A navigation that replaces the page cancels what the old page was still loading.
        if _is_navigation(request) or "ERR_ABORTED" in failure:
            return
        self.reports.append(f"{request.method} {request.url} failed: {failure} ({request.resource_type})")

    def _console(self, message) -> None:
        if message.type != "error" or "Content Security Policy" in message.text:
            return  # CSP messages are CspViolations' (with the directive and source)
        if "Failed to load resource" in message.text:
            return  # the browser's echo of a failed response, which _response reports with its address
        self.reports.append(f"console error: {message.text} ({message.location.get('url', '')})")

    def take(self) -> list[str]:
        """The reports so far, which the test then owns (teardown will not fail on them)."""
        taken, self.reports = self.reports, []
        return taken


def _is_navigation(request) -> bool:
    # The page the test opened (page.goto, a link, a form): its status is the test's to check.
    try:
        return request.is_navigation_request() and request.frame.parent_frame is None
    except Exception:  # the frame is gone (the page navigated on): not the document under test
        return False


@pytest.fixture
def page_problems() -> PageProblems:
    return PageProblems()


@pytest.fixture
def page(page, csp_violations, page_problems):
    csp_violations.attach(page)
    page_problems.attach(page)
    yield page
    csp_violations.settle(page)
    failures = []
    if csp_violations.reports:
        failures.append("Content-Security-Policy violations in the browser:\n  " + "\n  ".join(csp_violations.reports))
    if page_problems.reports:
        failures.append("Failed requests and errors in the browser:\n  " + "\n  ".join(page_problems.reports))
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)


# --- every page of the site, with realistic data (the phone-width and accessibility tests) ------

# URL names that answer with a piece of a page (htmx partials, the preview's framed email), shown
# inside a page that is itself visited, or with something other than a page (a POST-only action,
# a file). tests/cobalt_mail/test_csp.py's NOT_PAGES lists most of the latter.
PARTIALS = frozenset(
    {
        "reports:campaign_live",
        "reports:timeline",
        "audiences:import_progress",
        "campaigns:progress",
        "compose:preview_html",
        "compose:link_results",
    }
)
NOT_STAFF_PAGES = (
    NOT_PAGES
    | PARTIALS
    | {"favicon", "compose:link_check", "compose:image_upload", "compose:campaign_image"}
    # Its DNS lookups need the loopback DNS server: its own 390 px test is in tests/reports/test_sender_dns.py.
    | {"reports:senders"}
    # The API's Swagger UI, a page for developers: tests/api/test_api_core.py checks it serves its
    # own files under the CSP.
    | {"api-v1:openapi-view"}
)

LONG_ADDRESS = "alexandra.konstantinopoulou-whitfield@members.riverside-rowing-club.example.org"
LONG_LINK = "https://riverside-rowing-club.example.org/news/2026/spring-regatta-results-and-photos?utm_source=cobalt"

LOGO_URL = "https://images.riverside-rowing-club.example.org/logo.png"
SENT_BODY = (
    '<h1>Spring regatta results</h1><p>Hi {{ first_name|default:"member" }},</p>'
    "<p>What a weekend: three wins for the juniors and a new course record in the coxed four.</p>"
    f'<p><a href="{LONG_LINK}">Read the results and see the photos</a></p>'
    "<p>The boathouse now opens at 6:30 on weekdays. See you on the water!</p>"
)


def serve_logo(page) -> None:
    """Answer the layout's logo address (an outside https: host) with our icon, as its host would."""
    icon = (Path(__file__).resolve().parents[2] / "static" / "favicon.ico").read_bytes()
    page.route(LOGO_URL, lambda route: route.fulfill(body=icon, content_type="image/x-icon"))


# Every staff page, by URL name, with the arguments its path takes from ``site_data``. Kept complete
# by tests/e2e/test_phone_width_browser.py::test_the_staff_page_list_matches_the_url_resolver.
STAFF_PAGES: dict[str, Callable[[dict], list]] = {
    "home": lambda data: [],
    "settings": lambda data: [],
    "reports:index": lambda data: [],
    "reports:compare": lambda data: [],
    "reports:campaign": lambda data: [data["sent"].pk],
    "reports:recipients": lambda data: [data["sent"].pk],
    "reports:messages": lambda data: [],
    "audiences:index": lambda data: [],
    "audiences:contacts": lambda data: [],
    "audiences:contact_create": lambda data: [],
    "audiences:contact_edit": lambda data: [data["contact"].pk],
    "audiences:contact_delete": lambda data: [data["contact"].pk],
    "audiences:lists": lambda data: [],
    "audiences:list_detail": lambda data: [data["list"].pk],
    "audiences:list_delete": lambda data: [data["list"].pk],
    "audiences:segments": lambda data: [],
    "audiences:segment_create": lambda data: [],
    "audiences:segment_edit": lambda data: [data["segment"].pk],
    "audiences:segment_delete": lambda data: [data["segment"].pk],
    "audiences:imports": lambda data: [],
    "audiences:import_detail": lambda data: [data["import"].pk],
    "audiences:import_mapping": lambda data: [data["import_mapping"].pk],
    "audiences:suppressions": lambda data: [],
    "audiences:suppression_remove": lambda data: [data["suppression"].pk],
    "compose:preview": lambda data: [data["draft"].pk],
    "compose:attachments": lambda data: [data["draft"].pk],
    "compose:templates": lambda data: [],
    "compose:layouts": lambda data: [],
    "compose:layout_create": lambda data: [],
    "compose:layout_edit": lambda data: [data["layout"].pk],
    "compose:layout_delete": lambda data: [data["layout"].pk],
    "campaigns:list": lambda data: [],
    "campaigns:create": lambda data: [],
    "campaigns:detail": lambda data: [data["draft"].pk],
    "campaigns:edit": lambda data: [data["draft"].pk],
    "tracking:events": lambda data: [],
    "organisations:detail": lambda data: [],
    "organisations:members": lambda data: [],
    "organisations:children": lambda data: [],
    "organisations:audit": lambda data: [],
    "organisations:usage": lambda data: [],
    "organisations:senders": lambda data: [],
    "organisations:sender_remove": lambda data: [data["sender_identity"].pk],
    "organisations:quota": lambda data: [data["child"].pk],
    "api_keys:list": lambda data: [],
    "webhooks:list": lambda data: [],
    "webhooks:detail": lambda data: [data["webhook"].pk],
    "organisations:all": lambda data: [],
    "organisations:reputation": lambda data: [],
}


@dataclass
class SitePages:
    """Paths of every staff page (by URL name, plus a few variants) and of the recipient pages."""

    staff: dict[str, str]
    recipient: dict[str, str]


def staff_page_paths(data: dict) -> dict[str, str]:
    """A path for each staff page of STAFF_PAGES that the URL resolver knows, plus variants."""
    known = {name for name, _ in app_urls()}
    pages = {name: reverse(name, args=arguments(data)) for name, arguments in STAFF_PAGES.items() if name in known}
    draft, sent = data["draft"], data["sent"]
    pages["reports:compare"] += f"?ids={sent.pk}&ids={data['other_sent'].pk}"
    pages["sent-campaign"] = reverse("campaigns:detail", args=[sent.pk])
    pages["preview-mobile"] = reverse("compose:preview", args=[draft.pk]) + "?view=mobile"
    pages["preview-text"] = reverse("compose:preview", args=[draft.pk]) + "?view=text"
    pages["contacts-search"] = reverse("audiences:contacts") + "?q=alexandra"
    pages["not-found"] = "/campaigns/999999/"
    return pages


def site_data(staff_user) -> dict:
    """A club's site after a few weeks: lists, a segment, an import with rejected rows, a sent
    campaign with its events (long addresses, long links, bounce diagnostics), a draft and a layout."""
    from audiences.models import Contact, ImportJob, Segment, Subscription, Suppression
    from campaigns.composer.layouts import DEFAULT_LAYOUT_CSS, DEFAULT_LAYOUT_HTML
    from campaigns.models import Campaign, CampaignAttachment, CampaignTemplate, Layout, Recipient
    from campaigns.snapshot import audience_snapshot, recipient_domains
    from stats.counters import snapshot_recorded
    from stats.models import CampaignStats
    from tests.factories import ContactFactory, campaign_to, list_with_contacts
    from tracking.models import Event

    members = list_with_contacts(8, name="Riverside members (all sections, including juniors and veterans)")
    long_contact = ContactFactory(
        email=LONG_ADDRESS,
        first_name="Alexandra",
        last_name="Konstantinopoulou-Whitfield",
        attributes={"club": "Rowing", "membership": "Family (two adults, three juniors)", "joined": "2019"},
    )
    Subscription.objects.create(contact=long_contact, contact_list=members)
    Contact.objects.filter(email="person3@example.org").update(status=Contact.Status.UNSUBSCRIBED)
    segment = Segment.objects.create(
        name="Rowers who joined before 2020",
        rules=[{"field": "attribute:club", "operator": "equals", "value": "Rowing"}],
    )
    layout = Layout.objects.create(
        name="Riverside layout",
        html=DEFAULT_LAYOUT_HTML,
        css=DEFAULT_LAYOUT_CSS,
        primary_colour="#0b6e4f",
        background_colour="#eef6f2",
        logo_url=LOGO_URL,
    )
    # Caused by the club's own mail (and staff): the club sees and lifts them although a child
    # organisation exists (``_child_with_quotas``).
    club_id = staff_user.memberships.get().organisation_id
    suppression = Suppression.objects.create(
        email="bounced.member.with.a.long.address@old-provider.example.net",
        reason=Suppression.Reason.HARD_BOUNCE,
        note="550 5.1.1 The email account that you tried to reach does not exist",
        organisation_id=club_id,
    )
    Suppression.objects.create(
        email="gone@example.org", reason=Suppression.Reason.MANUAL, created_by=staff_user, organisation_id=club_id
    )
    CampaignTemplate.objects.create(name="Monthly newsletter", subject="News", html_body="<p>x</p>", layout=layout)
    job = ImportJob.objects.create(
        original_name="members-export-from-the-old-spreadsheet-2026-final-v3.csv",
        contact_list=members,
        status=ImportJob.Status.DONE,
        rows_read=2000,
        created=1990,
        rejected=10,
        size_bytes=180_000,
        bytes_read=180_000,
        rejected_preview=[
            {
                "line": line,
                "reason": "not an email address (no @ sign)",
                "email": f"very.long.value.without.any.at.sign.{line}.example.org",
                "values": [f"row-{line}-value-{n}-with-quite-a-lot-of-text-in-it" for n in range(8)],
            }
            for line in range(2, 12)
        ],
    )
    # An upload waiting for its columns to be confirmed (German headers, as a club's spreadsheet has).
    mapping_job = ImportJob.objects.create(
        original_name="Mitglieder 2026.csv",
        contact_list=members,
        status=ImportJob.Status.MAPPING,
        column_mapping=[
            {"name": "E-Mail", "field": "email"},
            {"name": "Vorname", "field": "first_name"},
            {"name": "Nachname", "field": "last_name"},
            {"name": "Mitgliedschaft seit dem Jahr (bitte vierstellig)", "field": "attribute"},
        ],
        sample_rows=[
            [LONG_ADDRESS, "Alexandra", "Konstantinopoulou-Whitfield", "2019"],
            ["jo@example.org", "Jo", "Brandt", "2021"],
        ],
    )
    subject = "Spring regatta results, the new boathouse opening hours and the annual general meeting agenda"
    draft = campaign_to(
        members,
        name="Autumn newsletter for every section of the club (draft)",
        subject=subject,
        layout=layout,
        body_mode="rich",
        html_body=f'<p>Hi {{{{ first_name|default:"member" }}}}, <a href="{LONG_LINK}">read the news</a></p>',
    )
    CampaignAttachment.objects.create(
        campaign=draft,
        file="attachments/programme.pdf",
        filename="regatta-programme-and-timetable-2026.pdf",
        content_type="application/pdf",
        size=120_000,
    )
    sent = campaign_to(
        members,
        name="Spring news",
        subject=subject,
        layout=layout,
        from_email='"Riverside Rowing Club" <news@riverside-rowing-club.example.org>',
        html_body=SENT_BODY,
    )
    audience_snapshot(campaign_id=sent.pk)
    now = timezone.now()
    Recipient.objects.filter(campaign=sent).update(status=Recipient.Status.SENT, sent_at=now)
    Campaign.objects.filter(pk=sent.pk).update(status=Campaign.Status.SENT, started_at=now, finished_at=now)
    recipients = list(Recipient.objects.filter(campaign=sent).order_by("pk"))
    CampaignStats.objects.update_or_create(
        campaign=sent,
        defaults={"sent": 9, "delivered": 8, "bounced_hard": 1, "opens": 6, "human_opens": 4, "clicks": 3},
    )
    snapshot_recorded(campaign_id=sent.pk, recipients=len(recipients), domains=recipient_domains(campaign_id=sent.pk))
    long_recipient = next(r for r in recipients if r.email == LONG_ADDRESS)
    events = [(Event.Type.DELIVERY, recipient, {}) for recipient in recipients[:8]] + [
        (Event.Type.OPEN, long_recipient, {"user_agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X)"}),
        (Event.Type.CLICK, long_recipient, {"link": LONG_LINK, "ip_address": "2001:db8:85a3::8a2e:370:7334"}),
        (
            Event.Type.BOUNCE,
            recipients[-1],
            {
                "bounce_type": "Permanent",
                "bounce_subtype": "General",
                "detail": "smtp; 550 5.1.1 <someone@old-provider.example.net>: Recipient address rejected: "
                "User unknown in virtual mailbox table",
            },
        ),
    ]
    for number, (kind, recipient, fields) in enumerate(events):
        Event.objects.create(
            sns_message_id=f"site-{number}",
            event_type=kind,
            campaign=sent,
            recipient=recipient,
            email=recipient.email,
            occurred_at=now,
            **fields,
        )
    other_sent = campaign_to(members, name="Winter news", status=Campaign.Status.SENT, finished_at=now)
    CampaignStats.objects.create(campaign=other_sent, sent=9, delivered=9)
    snapshot_recorded(campaign_id=other_sent.pk, recipients=9, domains=recipient_domains(campaign_id=other_sent.pk))
    return {
        "list": members,
        "contact": long_contact,
        "segment": segment,
        "layout": layout,
        "suppression": suppression,
        "import": job,
        "import_mapping": mapping_job,
        "draft": draft,
        "sent": sent,
        "other_sent": other_sent,
        "recipient": long_recipient,
        "webhook": _webhook_with_log(),
        "sender_identity": _sender_domain_waiting_for_dns(),
        "child": _child_with_quotas(),
    }


def _sender_domain_waiting_for_dns():
    """A long sender domain whose DKIM and MAIL FROM records are not published yet (the longest page)."""
    from organisations.models import SenderIdentity, sole_organisation_id

    return SenderIdentity.objects.create(
        organisation_id=sole_organisation_id(),
        kind=SenderIdentity.Kind.DOMAIN,
        value="members.riverside-rowing-club.example.org",
        dkim_tokens=["a" * 32, "b" * 32, "c" * 32],
        dkim_status="PENDING",
        mail_from_domain="mail.members.riverside-rowing-club.example.org",
        mail_from_status="pending",
    )


def _child_with_quotas():
    """A club below the staff member's organisation, with quotas (its parent's administrators set them)."""
    from organisations.models import Organisation, sole_organisation_id

    parent = Organisation.objects.get(pk=sole_organisation_id())
    return Organisation.objects.create(
        name="Riverside juniors",
        slug="riverside-juniors",
        parent=parent,
        daily_quota=2_000,
        monthly_quota=25_000,
    )


def _webhook_with_log():
    """A webhook endpoint with a long address and a delivery log with a long error."""
    from api.models import WebhookDelivery
    from api.webhooks import webhook_endpoint_create
    from organisations.models import Organisation, sole_organisation_id

    endpoint = webhook_endpoint_create(
        organisation=Organisation.objects.get(pk=sole_organisation_id()),
        url="https://1.1.1.1/riverside-rowing-club/membership/integrations/cobalt-mail/webhooks?token=abcdef0123456789",
        event_types=["bounce", "complaint", "unsubscribe", "delivery", "campaign_finished"],
        description="Membership site (nightly sync and bounce flags)",
    )
    for number, (status, code, error) in enumerate(
        [
            ("delivered", 200, ""),
            (
                "retrying",
                302,
                "Answered 302 Found to https://riverside-rowing-club.example.org/accounts/login/"
                "?next=/membership/integrations/cobalt-mail/webhooks: register the final address instead.",
            ),
        ]
    ):
        WebhookDelivery.objects.create(
            endpoint=endpoint,
            delivery_id=f"wh_e2e{number}",
            after_cursor="v1.0.0.0",
            last_cursor="v1.0.0.0",
            item_count=100,
            event_types="bounce, complaint, unsubscribe, delivery",
            status=status,
            attempts=number + 1,
            response_code=code,
            error=error,
        )
    return endpoint


@pytest.fixture
def site_pages(staff_user) -> SitePages:
    """Realistic data, the path of every staff page, and the recipient pages of one recipient."""
    from campaigns.composer.rendering import recipient_context
    from campaigns.tokens import LinkPurpose, link_token
    from campaigns.unsubscribe import unsubscribe_recipient

    # A site operator: the operators' page (every organisation) is a page too.
    staff_user.is_superuser = True
    staff_user.save(update_fields=["is_superuser"])
    data = site_data(staff_user)
    recipient = data["recipient"]
    links = recipient_context(recipient)
    # A second recipient, already unsubscribed: the page that offers to resubscribe.
    other = Recipient.objects.filter(campaign=data["sent"]).exclude(pk=recipient.pk).order_by("pk").first()
    unsubscribe_recipient(recipient=other)
    return SitePages(
        staff=staff_page_paths(data),
        recipient={
            "unsubscribe": urlsplit(links["unsubscribe_url"]).path,
            "unsubscribed": f"/u/{link_token(recipient_id=other.pk, purpose=LinkPurpose.UNSUBSCRIBE)}/",
            "preferences": urlsplit(links["preferences_url"]).path,
            "view-online": urlsplit(links["view_online_url"]).path,
            "link-invalid": "/u/1:forged-signature/",
            "login": "/login/",
        },
    )
