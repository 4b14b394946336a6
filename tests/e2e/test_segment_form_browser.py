"""The segment editor in Chromium: no error before the user has done anything wrong."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from audiences.models import Segment
from tests.factories import ContactFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_fresh_rule_shows_no_error_until_the_segment_is_saved(logged_in_page, live_server):
    ContactFactory(attributes={"club": "Chess"})
    page = logged_in_page
    with page.expect_response("**/audiences/segments/preview/") as preview:
        page.goto(f"{live_server.url}/audiences/segments/new/")
    assert preview.value.ok
    count = page.locator("#segment-count")
    # Anything red but the asterisk that marks a required field (aria-hidden).
    errors_shown = page.locator(".has-text-danger:not([aria-hidden]):visible, .is-danger:visible")

    # The count box invites the user to fill the rule in; nothing is red, nothing says "error".
    expect(count).to_contain_text("Fill in rule 1 to see how many contacts match.")
    expect(count).not_to_contain_text("Name the attribute")
    expect(errors_shown).to_have_count(0)

    page.fill("#id_rules-0-attribute", "club")
    expect(count).to_contain_text("Fill in rule 1")  # the value is still missing: still no error
    expect(errors_shown).to_have_count(0)
    page.fill("#id_rules-0-attribute", "")

    page.fill("#id_name", "Chess players")
    page.get_by_role("button", name="Save segment").click()

    # Saving an unfinished rule is the moment to say what is missing, in red, on the rule.
    rule_error = page.locator("[data-rule-row] .help.is-danger")
    expect(rule_error).to_contain_text("Name the attribute")
    assert not Segment.objects.exists()

    page.fill("#id_rules-0-attribute", "club")
    page.fill("#id_rules-0-value", "chess")
    expect(page.locator("#segment-count [data-count]")).to_have_attribute("data-count", "1")
    page.get_by_role("button", name="Save segment").click()
    expect(page.get_by_text("1 contacts match now")).to_be_visible()
    assert Segment.objects.get().rules == [{"field": "attribute:club", "operator": "equals", "value": "chess"}]
