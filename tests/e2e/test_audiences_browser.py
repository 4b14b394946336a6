"""Staff work with contacts, segments and CSV imports in Chromium."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from audiences.models import Contact, ImportJob
from tests.conftest import screenshot
from tests.factories import ContactFactory, list_with_contacts

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_sorting_paging_and_searching_swap_the_table_in_place(logged_in_page, live_server):
    ContactFactory.create_batch(60)
    ContactFactory(email="zed@example.org", first_name="Zed", last_name="Zulu")
    page = logged_in_page
    page.goto(f"{live_server.url}/audiences/")
    page.evaluate("window.notReloaded = true")
    rows = page.locator("#contact-results tbody tr")
    expect(rows).to_have_count(50)

    page.get_by_role("link", name="Email").click()  # sorted ascending already: this sorts descending
    expect(rows.first).to_contain_text("zed@example.org")
    assert "sort=-email" in page.url

    page.get_by_role("link", name="Next").click()
    expect(rows).to_have_count(11)
    expect(page.get_by_text("Page 2")).to_be_visible()

    page.get_by_label("Search").fill("zed")
    expect(rows).to_have_count(1)
    screenshot(page, "audiences-contacts-search")
    assert page.evaluate("window.notReloaded") is True  # every step swapped the table, no page load


def test_select_all_then_unsubscribe_the_selection(logged_in_page, live_server):
    list_with_contacts(3, name="Members")
    page = logged_in_page
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(f"{live_server.url}/audiences/contacts/")

    page.get_by_label("Select all on this page").check()
    page.get_by_label("Action on selected contacts").select_option("unsubscribe")
    page.get_by_role("button", name="Apply to selected").click()

    expect(page.get_by_text("3 contacts unsubscribed from everything.")).to_be_visible()
    assert set(Contact.objects.values_list("status", flat=True)) == {"unsubscribed"}


def test_the_segment_editor_counts_matches_while_rules_are_typed(logged_in_page, live_server):
    list_with_contacts(4, name="Members", attributes={"club": "Rowing"})
    ContactFactory(attributes={"club": "Chess"})
    page = logged_in_page
    page.goto(f"{live_server.url}/audiences/segments/new/")

    page.fill("#id_name", "Chess players")
    page.fill("#id_rules-0-attribute", "club")
    page.fill("#id_rules-0-value", "chess")
    expect(page.locator("#segment-count [data-count]")).to_have_attribute("data-count", "1")
    page.get_by_role("button", name="Add a rule").click()
    page.select_option("#id_rules-1-rule", "attribute:equals")
    page.fill("#id_rules-1-attribute", "club")
    page.fill("#id_rules-1-value", "rowing")
    page.get_by_label("Any rule").check()
    expect(page.locator("#segment-count [data-count]")).to_have_attribute("data-count", "5")
    expect(page.locator("#id_rules-1-contact_list")).to_be_hidden()
    screenshot(page, "audiences-segment-editor")
    page.get_by_role("button", name="Save segment").click()
    expect(page.get_by_text("5 contacts match now")).to_be_visible()


@pytest.mark.worker
def test_a_csv_upload_runs_in_a_worker_and_shows_progress_and_rejections(
    logged_in_page, live_server, workers, tmp_path, settings
):
    csv_file = tmp_path / "members.csv"
    lines = ["email;first_name"] + [f"member{n}@example.org;Member {n}" for n in range(300)] + ["broken;Row"]
    csv_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    workers.start(1, MEDIA_ROOT=str(settings.MEDIA_ROOT))
    page = logged_in_page
    page.goto(f"{live_server.url}/audiences/imports/")

    page.set_input_files("#id_file", str(csv_file))
    page.fill("#id_new_list", "Members")
    page.get_by_role("button", name="Upload and check the columns").click()
    page.get_by_role("button", name="Import contacts").click()  # the guessed columns, as they are

    expect(page.locator("#import-progress")).to_have_attribute("data-status", "done", timeout=60_000)
    expect(page.locator("[data-counter=created]")).to_have_text("300")
    expect(page.locator("#rejected-rows")).to_contain_text("invalid email address")
    expect(page.locator("#rejected-rows")).to_contain_text("302")
    screenshot(page, "audiences-import-done")
    assert ImportJob.objects.get().subscribed == 300
