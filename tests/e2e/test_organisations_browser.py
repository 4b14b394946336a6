"""Two clubs under a national body, in Chromium: club A's editor and sender do the whole flow
inside their club (a list, a contact, a campaign to that list, preview, test send, send), club B's
administrator sees none of it, and a user of two organisations switches between them on a phone."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from playwright.sync_api import expect

from audiences.models import Contact, ContactList, Subscription
from campaigns.models import Campaign
from organisations.models import Membership, Organisation, Role
from tests.conftest import screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct-horse-battery"


@dataclass
class Federation:
    national: Organisation
    rowing: Organisation  # club A
    chess: Organisation  # club B


@pytest.fixture
def federation(django_user_model) -> Federation:
    national = Organisation.objects.create(name="National Sports Federation", slug="national")
    rowing = Organisation.objects.create(name="Riverside Rowing", slug="riverside", parent=national)
    chess = Organisation.objects.create(name="Hilltop Chess", slug="hilltop", parent=national)
    chess_members = ContactList.objects.create(organisation=chess, name="Hilltop members")
    chess_player = Contact.objects.create(organisation=chess, email="magnus@hilltop.example", first_name="Magnus")
    Subscription.objects.create(contact=chess_player, contact_list=chess_members)
    for username, organisation, role in [
        ("rita.editor", rowing, Role.EDITOR),
        ("sam.sender", rowing, Role.SENDER),
        ("hilda.admin", chess, Role.ADMINISTRATOR),
        ("tom.two-clubs", rowing, Role.EDITOR),
        ("tom.two-clubs", chess, Role.VIEWER),
    ]:
        user, _ = django_user_model.objects.get_or_create(username=username)
        user.set_password(PASSWORD)
        user.save()
        Membership.objects.create(user=user, organisation=organisation, role=role)
    return Federation(national=national, rowing=rowing, chess=chess)


def log_in(page, live_server, username: str) -> None:
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")


def log_out(page) -> None:
    page.click("button:has-text('Log out')")
    page.wait_for_url(re.compile(r"/login/"))


def editor_prepares_the_campaign(page, live_server, ses) -> Campaign:
    """Club A's editor: a list, a contact on it, a campaign to it, its preview and a test send."""
    log_in(page, live_server, "rita.editor")
    page.goto(f"{live_server.url}/audiences/lists/")
    expect(page.get_by_test_id("current-organisation")).to_have_text("Riverside Rowing")
    page.fill("#id_name", "Riverside juniors")
    page.click("button:has-text('Create list')")
    expect(page.locator(".htmx-results")).to_contain_text("Riverside juniors")
    expect(page.locator(".htmx-results")).not_to_contain_text("Hilltop members")

    page.goto(f"{live_server.url}/audiences/contacts/new/")
    page.fill("#id_email", "grace@riverside.example")
    page.fill("#id_first_name", "Grace")
    page.get_by_label("Riverside juniors").check()
    expect(page.locator("main")).not_to_contain_text("Hilltop members")
    page.click("button:has-text('Save')")
    expect(page.locator(".notification.is-success")).to_contain_text("grace@riverside.example saved")

    page.goto(f"{live_server.url}/campaigns/new/")
    expect(page.locator("form.campaign-form")).not_to_contain_text("Hilltop members")  # only club A's lists are offered
    page.fill("#id_name", "Junior regatta")
    page.fill("#id_subject", "Regatta news for {{ first_name }}")
    page.locator(".ql-editor").click()
    page.keyboard.type("Hello {{ first_name }}, the junior regatta is on Saturday.")
    page.check("text=Riverside juniors >> nth=0")
    page.click("button:has-text('Save draft')")
    page.wait_for_url(re.compile(r"/campaigns/\d+/$"))
    campaign = Campaign.objects.get(name="Junior regatta")

    page.goto(f"{live_server.url}/campaigns/{campaign.pk}/preview/")
    page.select_option("#preview-contact", index=1)
    page.click("#preview-chooser button[type=submit]")
    expect(page.locator("#inbox-subject")).to_have_text("Regatta news for Grace")
    page.fill("#id_addresses", "coach@riverside.example")
    page.click("#test-send-form button[type=submit]")
    expect(page.locator(".notification.is-success")).to_contain_text(
        "Test sent to coach@riverside.example", timeout=30_000
    )  # a round trip to SES beside a starting worker cluster: allow for a loaded machine
    screenshot(page, "organisations-editor-test-sent")
    assert len(ses.sent()) == 1
    log_out(page)
    return campaign


def test_a_club_does_its_whole_flow_and_the_other_club_sees_none_of_it(page, live_server, federation, workers, ses):
    workers.start(1)
    page.on("dialog", lambda dialog: dialog.accept())
    campaign = editor_prepares_the_campaign(page, live_server, ses)
    assert campaign.organisation_id == federation.rowing.pk

    log_in(page, live_server, "sam.sender")
    page.goto(f"{live_server.url}/campaigns/{campaign.pk}/")
    expect(page.get_by_test_id("audience-count")).to_have_text("1")
    page.click("button:has-text('Send now')")
    expect(page.get_by_test_id("sent-count")).to_have_text("1", timeout=90_000)
    expect(page.get_by_test_id("campaign-status")).to_have_text("Sent")
    screenshot(page, "organisations-sender-sent")
    assert sorted(address for raw in ses.sent() for address in set(raw["destinations"])) == [
        "coach@riverside.example",
        "grace@riverside.example",
    ]
    log_out(page)

    log_in(page, live_server, "hilda.admin")
    for path, own in [
        ("/audiences/lists/", "Hilltop members"),
        ("/audiences/contacts/", "magnus@hilltop.example"),
        ("/campaigns/", None),
        ("/reports/", None),
    ]:
        response = page.goto(f"{live_server.url}{path}")
        assert response.status == 200, path
        expect(page.get_by_test_id("current-organisation")).to_have_text("Hilltop Chess")
        main = page.locator("main")
        if own:
            expect(main).to_contain_text(own)
        for theirs in ("Riverside juniors", "grace@riverside.example", "Junior regatta"):
            expect(main).not_to_contain_text(theirs)
    response = page.goto(f"{live_server.url}/campaigns/{campaign.pk}/")
    assert response.status == 404
    expect(page.locator("h1")).to_have_text("Not found")
    expect(page.locator("main")).not_to_contain_text("Junior regatta")
    screenshot(page, "organisations-other-club-404")


def test_a_member_of_two_clubs_switches_between_them_on_a_phone(page, live_server, federation):
    page.set_viewport_size({"width": 390, "height": 844})
    log_in(page, live_server, "tom.two-clubs")
    page.goto(f"{live_server.url}/campaigns/")
    current = page.get_by_test_id("current-organisation")
    expect(current).to_have_text("Hilltop Chess")  # the first by name
    switcher = page.get_by_label("Organisation to work in")
    expect(switcher).to_be_visible()  # outside the collapsed menu
    switcher.select_option(label="Riverside Rowing")
    page.click("button:has-text('Switch')")
    expect(current).to_have_text("Riverside Rowing")
    screenshot(page, "organisations-switcher-390")

    page.goto(f"{live_server.url}/audiences/lists/")
    expect(current).to_have_text("Riverside Rowing")
    expect(page.locator("main")).not_to_contain_text("Hilltop members")
    page.get_by_label("Organisation to work in").select_option(label="Hilltop Chess")
    page.click("button:has-text('Switch')")
    expect(current).to_have_text("Hilltop Chess")
    page.goto(f"{live_server.url}/audiences/lists/")
    expect(page.locator("main")).to_contain_text("Hilltop members")
