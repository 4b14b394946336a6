"""/metrics: Prometheus text for a bearer of METRICS_TOKEN, read from counters in fixed queries."""

from __future__ import annotations

import re

import pytest
from django.core.cache import cache

from audiences.models import ImportJob
from campaigns.models import Campaign, Recipient
from organisations.models import Organisation
from stats.models import CampaignStats
from tests.factories import CampaignFactory, ContactFactory, ImportJobFactory

pytestmark = pytest.mark.django_db

TOKEN = "metrics-token-for-tests"


@pytest.fixture
def scraper(client, settings):
    settings.METRICS_TOKEN = TOKEN
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
    return client


@pytest.fixture(autouse=True)
def no_counts_from_other_tests():
    cache.clear()


def samples(text: str) -> dict[str, float]:
    """{'name{labels}': value} for every sample line of an exposition."""
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            found[name] = float(value)
    return found


def campaign_with_counters(status: str, recipients: int, **counters) -> Campaign:
    campaign = CampaignFactory(status=status)
    CampaignStats.objects.update_or_create(campaign=campaign, defaults={"recipients": recipients, **counters})
    return campaign


def test_it_is_off_while_no_token_is_set(client, settings):
    settings.METRICS_TOKEN = None

    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer anything").status_code == 404


def test_it_asks_for_a_bearer_token_without_a_login(client, settings):
    settings.METRICS_TOKEN = TOKEN

    response = client.get("/metrics")

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response["Content-Security-Policy"]
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}").status_code == 401


@pytest.mark.parametrize("given", ["wrong", TOKEN + "x", TOKEN[:-1], "é€ non-ascii"])
def test_it_refuses_a_wrong_token_with_403(client, settings, given):
    settings.METRICS_TOKEN = TOKEN

    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {given}").status_code == 403


def test_it_serves_the_prometheus_text_format_to_the_token_holder(scraper):
    response = scraper.get("/metrics")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert response["Content-Security-Policy"]
    text = response.content.decode()
    for family, kind in [
        ("cobalt_messages_total", "counter"),
        ("cobalt_events_total", "counter"),
        ("cobalt_webhook_rejections_total", "counter"),
        ("cobalt_campaigns", "gauge"),
        ("cobalt_recipients_queued", "gauge"),
        ("cobalt_send_rate_messages_per_second", "gauge"),
        ("cobalt_import_rows_total", "counter"),
        ("cobalt_organisation_messages_sent_total", "counter"),
    ]:
        assert f"# HELP {family} " in text
        assert f"# TYPE {family} {kind}\n" in text
    for line in text.splitlines():
        assert line.startswith("#") or re.fullmatch(r'[a-z_]+(\{[a-z_]+="[a-z0-9_-]+"\})? -?[0-9.e+]+', line), line


def test_it_sums_the_campaign_counters_and_counts_campaigns_by_state(scraper):
    campaign_with_counters("sending", 1000, sent=600, failed=10, skipped=5, delivered=550, bounced_hard=7, opens=90)
    campaign_with_counters("paused", 200, sent=100)
    campaign_with_counters("sent", 50, sent=50, delivered=49, complained=1, clicks=4)
    CampaignFactory(status="draft")

    found = samples(scraper.get("/metrics").content.decode())

    assert found['cobalt_messages_total{outcome="sent"}'] == 750
    assert found['cobalt_messages_total{outcome="failed"}'] == 10
    assert found['cobalt_messages_total{outcome="skipped"}'] == 5
    assert found['cobalt_events_total{type="delivery"}'] == 599
    assert found['cobalt_events_total{type="bounce_hard"}'] == 7
    assert found['cobalt_events_total{type="complaint"}'] == 1
    assert found['cobalt_events_total{type="open"}'] == 90
    assert found['cobalt_events_total{type="click"}'] == 4
    # The sent campaign's recipients are all done: only sending and paused ones are queued.
    assert found["cobalt_recipients_queued"] == (1000 - 615) + (200 - 100)
    assert found['cobalt_campaigns{state="sending"}'] == 1
    assert found['cobalt_campaigns{state="draft"}'] == 1
    assert found['cobalt_campaigns{state="cancelled"}'] == 0


def test_it_counts_refused_webhook_requests_by_reason(scraper, client):
    client.post("/tracking/ses/", data=b"not json", content_type="text/plain")
    client.post("/tracking/ses/", data=b"[]", content_type="text/plain")

    found = samples(scraper.get("/metrics").content.decode())

    assert found['cobalt_webhook_rejections_total{reason="malformed"}'] == 2
    assert found['cobalt_webhook_rejections_total{reason="not_authentic"}'] == 0


def test_it_sums_the_import_counters(scraper):
    ImportJobFactory(status=ImportJob.Status.DONE, rows_read=120, created=100, updated=5, unchanged=3, rejected=12)
    ImportJobFactory(status=ImportJob.Status.DONE, rows_read=10, created=10)

    found = samples(scraper.get("/metrics").content.decode())

    assert found['cobalt_import_rows_total{outcome="rows_read"}'] == 130
    assert found['cobalt_import_rows_total{outcome="created"}'] == 110
    assert found['cobalt_import_rows_total{outcome="rejected"}'] == 12


def test_it_shows_the_configured_send_rate_without_asking_ses(scraper, settings):
    settings.SEND_RATE = 12.5
    settings.AWS_SES_REGION_ENDPOINT_URL = "http://127.0.0.1:1"  # unreachable: a call would fail

    found = samples(scraper.get("/metrics").content.decode())

    assert found["cobalt_send_rate_messages_per_second"] == 12.5


def _recipients(campaign: Campaign, count: int) -> None:
    contacts = ContactFactory.create_batch(count)
    Recipient.objects.bulk_create(Recipient(campaign=campaign, contact=c, email=c.email) for c in contacts)


def test_a_scrape_takes_the_same_five_queries_whatever_the_number_of_recipients(
    scraper, django_assert_num_queries, settings
):
    settings.SEND_RATE = 100
    campaign = campaign_with_counters("sending", 5, sent=1)
    _recipients(campaign, 5)
    with django_assert_num_queries(5):
        small = scraper.get("/metrics")

    big = campaign_with_counters("sending", 500, sent=20)
    _recipients(big, 500)
    with django_assert_num_queries(5):
        large = scraper.get("/metrics")

    assert small.status_code == large.status_code == 200
    assert samples(large.content.decode())["cobalt_recipients_queued"] == 4 + 480


def test_it_sums_messages_sent_per_organisation_by_slug(scraper, organisation):
    campaign_with_counters("sent", 50, sent=50)
    campaign_with_counters("sending", 100, sent=30)
    club = Organisation.objects.create(name="Riverside Club", slug="riverside", parent=organisation)
    Organisation.objects.create(name="Quiet Club", slug="quiet-club-2")
    club_campaign = CampaignFactory(status="sent", organisation=club)
    CampaignStats.objects.create(campaign=club_campaign, recipients=12, sent=12)

    text = scraper.get("/metrics").content.decode()
    found = samples(text)

    assert found[f'cobalt_organisation_messages_sent_total{{organisation="{organisation.slug}"}}'] == 80
    # A parent's figure is its own campaigns' only: the club's are counted under the club.
    assert found['cobalt_organisation_messages_sent_total{organisation="riverside"}'] == 12
    assert found['cobalt_organisation_messages_sent_total{organisation="quiet-club-2"}'] == 0
    assert "later issue" in next(line for line in text.splitlines() if "HELP cobalt_organisation" in line)


def test_an_organisation_slug_is_escaped_as_a_prometheus_label_value(scraper):
    # The slug field's validation keeps these out of forms; a row saved from the shell is not validated.
    Organisation.objects.create(name="Odd", slug='odd"\\\nname')

    text = scraper.get("/metrics").content.decode()

    assert 'cobalt_organisation_messages_sent_total{organisation="odd\\"\\\\\\nname"} 0\n' in text
