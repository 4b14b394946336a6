"""The webhooks pages in a real browser: an administrator registers an endpoint, copies its secret,
and reads the delivery log, on a phone and on a desktop."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from api import webhooks
from api.models import WebhookEndpoint
from tests.api.test_webhooks import Receiver, bounces, verify
from tests.conftest import screenshot

PHONE = {"width": 390, "height": 844}


@pytest.mark.django_db(transaction=True)
def test_an_administrator_registers_an_endpoint_copies_its_secret_and_reads_the_log(
    logged_in_page, live_server, organisation, settings
):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    receiver = Receiver()
    try:
        page = logged_in_page
        page.set_viewport_size(PHONE)
        page.goto(f"{live_server.url}/organisations/webhooks/")
        page.fill("#id_url", receiver.url)
        page.fill("#id_description", "Membership site")
        page.check("input[value=delivery]")
        page.click("button:has-text('Register the endpoint')")
        secret = page.get_by_test_id("webhook-secret-value").input_value()
        endpoint = WebhookEndpoint.objects.get()
        assert secret == endpoint.secret
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        screenshot(page, "webhooks-390")

        # Events written a minute ago are past the feed's settle window; the endpoint's cursor goes
        # back to the feed's beginning so that it owes them (it was made after them).
        for event in bounces(organisation, 2):
            type(event).objects.filter(pk=event.pk).update(received_at=timezone.now() - timedelta(minutes=1))
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(cursor="v1.0.9.0")
        webhooks.webhooks_run(seconds=10)
        headers, body = receiver.received[0]
        assert verify(secret, headers, body) and len(json.loads(body)["events"]) == 2

        page.click(f"a[href='/organisations/webhooks/{endpoint.pk}/']")
        log = page.get_by_test_id("delivery-log")
        assert "Delivered" in log.inner_text()
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        screenshot(page, "webhook-detail-390")
        page.set_viewport_size({"width": 1280, "height": 900})
        screenshot(page, "webhook-detail-1280")
        page.click("button:has-text('Disable')")
        assert "Disabled: nothing is sent to it" in page.content()
        endpoint.refresh_from_db()
        assert not endpoint.is_active
    finally:
        receiver.close()
