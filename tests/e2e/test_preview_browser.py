"""The preview page in Chromium: the recipient search filters as you type, and the link check runs in a
real qcluster worker against a local web server and fills the page in by itself."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from audiences.models import Contact, Subscription
from campaigns.composer.layouts import default_layout
from tests.conftest import screenshot
from tests.factories import ContactListFactory, campaign_to
from tests.link_server import LinkServer

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def club_with(*emails: str):
    club = ContactListFactory(name="Rowing club")
    for email in emails:
        contact = Contact.objects.create(email=email, first_name=email.split(".")[0].title())
        Subscription.objects.create(contact=contact, contact_list=club)
    return club


def test_the_recipient_search_filters_the_choices_as_you_type(logged_in_page, live_server):
    campaign = campaign_to(
        club_with("ada.lovelace@rowing.example", "adam.smith@rowing.example", "grace.hopper@rowing.example"),
        html_body="<p>Hi {{ first_name }}</p>",
    )
    page = logged_in_page
    url = f"{live_server.url}/campaigns/{campaign.pk}/preview/"
    page.goto(url)
    options = page.locator("#preview-contact option")
    expect(options).to_have_count(4)  # the sample contact and three members
    searches = []
    page.on("request", lambda request: searches.append(request.url) if "q=" in request.url else None)

    page.locator("#preview-search").press_sequentially("ada", delay=60)

    expect(options).to_have_count(3)
    expect(options.nth(1)).to_contain_text("ada.lovelace@rowing.example")
    expect(options.nth(2)).to_contain_text("adam.smith@rowing.example")
    expect(page.locator("#preview-matches")).to_contain_text("2 recipients with “ada” in the address")
    assert page.url == url  # nobody pressed Show: the page stayed, only the list changed
    assert len(searches) == 1, searches  # one request after the typing stopped, not one per key

    page.locator("#preview-search").fill("hopper")
    expect(options.nth(1)).to_contain_text("grace.hopper@rowing.example")
    page.select_option("#preview-contact", index=1)
    page.click("#preview-chooser button[type=submit]")
    expect(page.locator("#inbox-subject")).to_have_text("Hello Grace")


@pytest.mark.worker
def test_the_link_check_runs_in_a_worker_and_shows_each_result(logged_in_page, live_server, workers):
    with LinkServer() as server:
        campaign = campaign_to(
            club_with("ada.lovelace@rowing.example"),
            html_body=(
                f'<p><a href="{server.url("/ok")}">Fixtures</a> · <a href="{server.url("/missing")}">Old results</a>'
                f' · <a href="{server.url("/hop/2")}">Club house</a></p>'
            ),
            layout=default_layout(),
        )
        workers.start(1, LINK_CHECK_ALLOW_PRIVATE="1")
        page = logged_in_page

        page.goto(f"{live_server.url}/campaigns/{campaign.pk}/preview/")

        results = page.locator("#link-results")
        expect(page.locator("#link-check-status")).to_contain_text("Each address was opened at", timeout=60_000)
        fixtures = results.locator("tr", has_text="Fixtures")
        expect(fixtures.get_by_test_id("link-status")).to_have_text("200 OK")
        expect(fixtures.get_by_test_id("link-final")).to_have_text("same address")
        expect(fixtures.get_by_test_id("link-time")).to_contain_text(" s")
        old = results.locator("tr", has_text="Old results")
        expect(old.get_by_test_id("link-status")).to_have_text("404")
        expect(old).to_contain_text("the page does not exist")
        expect(results.locator("tr", has_text="Club house").get_by_test_id("link-final")).to_have_text(
            server.url("/hop/0")
        )
        unsubscribe = results.locator("tr", has_text="{{ unsubscribe_url }}")
        expect(unsubscribe).to_contain_text("Holds a merge field")
        screenshot(page, "compose-preview-link-check")

        fetched = {path for _, path, _ in server.requests}
        assert fetched == {"/ok", "/missing", "/hop/2", "/hop/1", "/hop/0"}
