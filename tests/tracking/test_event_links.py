"""Links from SES click events become hrefs only if they are http(s): a hostile link stays text."""

from __future__ import annotations

import html
import re

import pytest

from campaigns.templatetags.safe_links import http_url
from tests.sns import campaign_with_recipients
from tests.tracking.records import event

pytestmark = pytest.mark.django_db

HOSTILE_LINKS = [
    "javascript:alert(document.domain)//",
    " JaVaScRiPt:alert(1)",
    "java\tscript:alert(2)",
    "java\nscript:alert(3)",
    "\x01javascript:alert(4)",
    "&#106;avascript:alert(5)",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "VBScript:msgbox(6)",
    "https:javascript:alert(7)",
]
HREF = re.compile(r"""\shref\s*=\s*["']([^"']*)["']""", re.IGNORECASE)


def dangerous_hrefs(page: str) -> list[str]:
    """Every href a browser would run as script or inline content (after it forgives case and whitespace)."""
    found = []
    for raw in HREF.findall(page):
        folded = re.sub(r"[\x00-\x20\x7f]", "", html.unescape(raw)).lower()
        if folded.startswith(("javascript:", "data:", "vbscript:")):
            found.append(raw)
    return found


@pytest.fixture
def clicked(notify):
    """A campaign whose one recipient clicked every hostile link and one good link (signed webhook posts)."""
    campaign, (recipient,) = campaign_with_recipients(1)
    for index, link in enumerate([*HOSTILE_LINKS, "https://example.com/read?a=1&b=2"]):
        record = event(
            "Click",
            address=recipient.email,
            message_id=recipient.ses_message_id,
            campaign=campaign.pk,
            recipient=recipient.pk,
            after=600 + index,
            link=link,
        )
        assert notify(record).status_code == 200
    return campaign, recipient


def test_it_shows_hostile_click_links_on_the_events_page_as_text_not_links(staff_client, clicked):
    page = staff_client.get("/tracking/events/").content.decode()

    assert page.count('data-testid="event-row"') == len(HOSTILE_LINKS) + 1
    assert dangerous_hrefs(page) == []
    assert page.count('data-testid="inert-link"') == len(HOSTILE_LINKS)
    assert "javascript:alert(document.domain)//" in page
    assert html.escape("&#106;avascript:alert(5)") in page
    assert '<a href="https://example.com/read?a=1&amp;b=2" rel="noopener noreferrer">' in page


def test_it_makes_no_hostile_link_clickable_on_the_report_pages(staff_client, clicked):
    campaign, recipient = clicked
    pages = [
        f"/reports/campaigns/{campaign.pk}/",
        f"/reports/campaigns/{campaign.pk}/live/",
        f"/reports/campaigns/{campaign.pk}/recipients/?outcome=clicked",
        f"/reports/campaigns/{campaign.pk}/recipients/?link=javascript:alert(document.domain)//",
        f"/reports/recipients/{recipient.pk}/timeline/",
    ]
    for path in pages:
        response = staff_client.get(path)
        assert response.status_code == 200, path
        assert dangerous_hrefs(response.content.decode()) == [], path
    timeline = staff_client.get(f"/reports/recipients/{recipient.pk}/timeline/").content.decode()
    assert "javascript:alert(document.domain)//" in timeline


@pytest.mark.parametrize("link", [*HOSTILE_LINKS, "http://", "ftp://example.com/", "//example.com/x", "", None])
def test_http_url_refuses_anything_but_an_absolute_http_link(link):
    assert http_url(link) == ""


@pytest.mark.parametrize("link", ["http://example.com", "HTTPS://Example.com/a?b=c#d", "https://[::1]:8000/x"])
def test_http_url_keeps_http_and_https_links(link):
    assert http_url(link) == link
