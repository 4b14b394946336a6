"""SECURE_SSL_REDIRECT sends pages to HTTPS but never the SNS webhook, which SNS may post over HTTP."""

from __future__ import annotations

import pytest

from tests.tracking.records import event
from tracking.models import Event

pytestmark = pytest.mark.django_db


def test_the_ssl_redirect_spares_the_webhook_and_pages_that_came_through_the_tls_proxy(client, settings, notify):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 3600
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

    plain = client.get("/login/")
    proxied = client.get("/login/", HTTP_X_FORWARDED_PROTO="https")
    webhook = notify(event("Delivery"))

    assert plain.status_code == 301
    assert plain["Location"] == "https://testserver/login/"
    assert proxied.status_code == 200
    assert proxied["Strict-Transport-Security"] == "max-age=3600; includeSubDomains; preload"
    assert webhook.status_code == 200
    assert Event.objects.count() == 1
