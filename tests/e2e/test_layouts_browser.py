"""Layouts in Chromium: make one the default, delete an unused one, see why a used one is kept."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from campaigns.models import Campaign, Layout
from tests.conftest import screenshot
from tests.factories import campaign_to, list_with_contacts

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

HTML = '{{ content }}<a href="{{ unsubscribe_url }}">Unsubscribe</a>'


def test_staff_make_a_layout_the_default_and_delete_only_unused_ones(logged_in_page, live_server):
    Layout.objects.create(name="Classic", html=HTML, is_default=True)
    autumn = Layout.objects.create(name="Autumn", html=HTML)
    spare = Layout.objects.create(name="Spare", html=HTML)
    campaign = campaign_to(list_with_contacts(1), name="Harvest news")
    Campaign.objects.filter(pk=campaign.pk).update(layout=autumn)
    page = logged_in_page
    page.goto(f"{live_server.url}/campaigns/layouts/")

    page.get_by_role("row", name="Autumn").get_by_role("button", name="Make default").click()
    expect(page.locator("main")).to_contain_text("“Autumn” is now the default layout for new campaigns.")
    expect(page.get_by_role("row", name="Autumn")).to_contain_text("default")

    page.get_by_role("row", name="Spare").get_by_role("link", name="Delete").click()
    expect(page.get_by_role("heading", name="Delete layout “Spare”?")).to_be_visible()
    screenshot(page, "layout-delete-confirm")
    page.get_by_role("button", name="Delete layout").click()
    expect(page.locator("main")).to_contain_text("Layout “Spare” deleted.")
    assert not Layout.objects.filter(pk=spare.pk).exists()

    page.get_by_role("row", name="Classic").get_by_role("link", name="Delete").click()
    Campaign.objects.filter(pk=campaign.pk).update(layout=Layout.objects.get(name="Classic"))
    page.get_by_role("button", name="Delete layout").click()
    expect(page.locator("main")).to_contain_text("“Classic” is used by 1 campaign (“Harvest news”)")
    assert Layout.objects.filter(name="Classic").exists()
    screenshot(page, "layout-delete-refused")
