"""The column mapping step of a CSV import in Chromium: upload, check and change, confirm, see the names."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from audiences.models import Contact, ImportJob
from tests.conftest import screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.worker
def test_staff_check_and_change_the_columns_before_anything_is_imported(
    logged_in_page, live_server, workers, tmp_path, settings
):
    csv_file = tmp_path / "mitglieder.csv"
    csv_file.write_bytes(
        (
            "E-Mail;Vorname;Familie;Verein;Notizen\n"
            "zoe@example.org;Zoë;Müller;Ruderclub;ruft abends an\n"
            "jörg@example.org;Jörg;Groß;Schach;\n"
            "ada@example.org;Ada;Lovelace;Schach;sehr pünktlich\n"
        ).encode("cp1252")
    )
    workers.start(1, MEDIA_ROOT=str(settings.MEDIA_ROOT))
    page = logged_in_page
    page.goto(f"{live_server.url}/audiences/imports/")
    page.set_input_files("#id_file", str(csv_file))
    page.fill("#id_new_list", "Mitglieder")
    page.get_by_role("button", name="Upload and check the columns").click()

    # The columns found, guessed, beside the first rows (read as Windows-1252); nothing written yet.
    expect(page.get_by_role("heading", name="Check the columns of mitglieder.csv")).to_be_visible()
    expect(page.get_by_label("E-Mail")).to_have_value("email")
    expect(page.get_by_label("Vorname")).to_have_value("first_name")
    expect(page.get_by_label("Familie")).to_have_value("attribute")
    expect(page.get_by_label("Verein")).to_have_value("attribute")
    expect(page.locator("#import-mapping")).to_contain_text("Zoë")
    expect(page.locator("#import-mapping")).to_contain_text("Groß")
    assert not Contact.objects.exists()
    assert ImportJob.objects.get().status == ImportJob.Status.MAPPING

    page.get_by_label("Familie").select_option("last_name")
    page.get_by_label("Notizen").select_option("ignore")
    screenshot(page, "import-mapping-step")
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling on a phone
    page.set_viewport_size({"width": 1280, "height": 900})

    page.get_by_role("button", name="Import contacts").click()

    expect(page.locator("#import-progress")).to_have_attribute("data-status", "done", timeout=60_000)
    expect(page.locator("[data-counter=created]")).to_have_text("2")
    expect(page.locator("#rejected-rows")).to_contain_text("SES cannot send to addresses with non-ASCII characters")
    expect(page.locator("#import-columns")).to_contain_text("“Familie” → last name")

    page.goto(f"{live_server.url}/audiences/contacts/")
    rows = page.locator("#contact-results tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator("#contact-results")).to_contain_text("Müller")
    expect(page.locator("#contact-results")).to_contain_text("Lovelace")
    zoe = Contact.objects.get(email="zoe@example.org")
    assert (zoe.first_name, zoe.last_name, zoe.attributes) == ("Zoë", "Müller", {"verein": "Ruderclub"})


def test_a_mapping_without_an_email_column_says_so_and_imports_nothing(logged_in_page, live_server, tmp_path):
    csv_file = tmp_path / "members.csv"
    csv_file.write_text("Email,Name\nada@example.org,Ada\n", encoding="utf-8")
    page = logged_in_page
    page.goto(f"{live_server.url}/audiences/imports/")
    page.set_input_files("#id_file", str(csv_file))
    page.fill("#id_new_list", "Members")
    page.get_by_role("button", name="Upload and check the columns").click()

    page.get_by_label("Email").select_option("ignore")
    page.get_by_role("button", name="Import contacts").click()

    expect(page.get_by_role("alert")).to_contain_text("No email column: choose the column that holds the email")
    assert ImportJob.objects.get().status == ImportJob.Status.MAPPING
    assert not Contact.objects.exists()
