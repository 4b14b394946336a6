"""Account health and Settings read the SES account through one function each (reports.account),
against the local SES server (moto over HTTP), not a mock."""

from __future__ import annotations

import re

import boto3
import pytest

from campaigns.delivery import ratelimit
from campaigns.delivery.engine import campaign_dispatch
from campaigns.services import campaign_send_now
from campaigns.snapshot import audience_snapshot
from reports import account
from tests.factories import campaign_to, list_with_contacts

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_readings():
    account.cache_clear()
    ratelimit._quota_cache = None
    yield
    account.cache_clear()
    ratelimit._quota_cache = None


def send_campaign(count: int, django_capture_on_commit_callbacks) -> None:
    campaign = campaign_to(list_with_contacts(count))
    with django_capture_on_commit_callbacks(execute=False):
        campaign_send_now(campaign_id=campaign.pk)
    audience_snapshot(campaign_id=campaign.pk)
    assert campaign_dispatch(campaign_id=campaign.pk, seconds=60) == "finished"


def shown(html: str, testid: str) -> str:
    found = re.findall(rf'data-testid="{testid}"[^>]*>([^<]*)<', html)
    assert len(found) == 1, found
    return found[0].strip()


def test_the_quota_used_counts_each_message_once_on_the_local_ses(
    ses, staff_client, django_capture_on_commit_callbacks
):
    send_campaign(7, django_capture_on_commit_callbacks)
    assert len(ses.sent()) == 7
    # What the local SES itself answers: each message counted for its destination and again for its
    # To header (moto's send_raw_email adds the header addresses to the destinations it is given).
    raw = boto3.client("ses", region_name="us-east-1", endpoint_url=ses.url).get_send_quota()
    assert raw["SentLast24Hours"] == 14

    quota = account.send_quota()
    assert quota.local and quota.sent_24h == 7 and quota.max_24h == 200
    html = staff_client.get("/reports/").content.decode()
    assert shown(html, "quota-used") == "7 / 200"
    assert "has-text-danger" not in re.search(r'<p class="[^"]*" data-testid="quota-used"', html).group(0)


def test_the_local_ses_counts_header_addresses_on_top_of_the_destinations(ses, settings):
    """Why the local SES doubles: the same message, with and without Destinations in the call."""
    client = boto3.client("ses", region_name="us-east-1", endpoint_url=ses.url)
    sender = settings.SENDER_ADDRESSES[0]
    raw = f"From: {sender}\r\nTo: member@example.org\r\nSubject: x\r\n\r\nbody".encode()
    client.send_raw_email(Source=sender, RawMessage={"Data": raw})
    assert client.get_send_quota()["SentLast24Hours"] == 1
    client.send_raw_email(Source=sender, Destinations=["member@example.org"], RawMessage={"Data": raw})
    assert client.get_send_quota()["SentLast24Hours"] == 3


def test_only_a_real_quota_nearly_used_is_shown_in_red():
    local = account.SendQuota(max_24h=200, sent_24h=691, reported_24h=1382, max_rate=1, local=True)
    assert not local.warning and "does not enforce" in local.note
    assert account.SendQuota(max_24h=200, sent_24h=185, reported_24h=185, max_rate=1, local=False).warning
    assert not account.SendQuota(max_24h=50_000, sent_24h=691, reported_24h=691, max_rate=14, local=False).warning


def test_account_health_and_settings_show_the_same_rate_in_force_and_its_source(ses, staff_client, settings):
    settings.SEND_RATE = 20
    expected = "20 msg/s, from the SEND_RATE setting. The local SES does not limit the rate."
    assert account.send_rate().text == expected
    assert ratelimit.send_rate() == 20.0  # what the engine sends at
    assert shown(staff_client.get("/reports/").content.decode(), "send-rate") == expected
    assert shown(staff_client.get("/settings/").content.decode(), "send-rate") == expected


def test_without_send_rate_the_engine_and_both_pages_use_ses_max_send_rate(ses, staff_client, settings):
    settings.SEND_RATE = None
    expected = "1 msg/s, from SES&#x27;s MaxSendRate (SEND_RATE is not set). The local SES does not limit the rate."
    assert ratelimit.send_rate() == 1.0
    assert shown(staff_client.get("/reports/").content.decode(), "send-rate") == expected
    assert shown(staff_client.get("/settings/").content.decode(), "send-rate") == expected


def test_send_rate_above_what_real_ses_allows_is_a_warning():
    rate = account.SendRate(rate=50, source="the SEND_RATE setting", ses_max_rate=14, local=False)
    assert rate.text == "50 msg/s, from the SEND_RATE setting. SES allows 14 msg/s."
    assert "Lower SEND_RATE" in rate.warning
    assert not account.SendRate(rate=50, source="the SEND_RATE setting", ses_max_rate=1, local=True).warning


def test_an_unreachable_ses_still_loads_both_pages(staff_client, settings):
    from tests.conftest import free_port

    settings.AWS_SES_REGION_ENDPOINT_URL = f"http://127.0.0.1:{free_port()}"
    settings.SEND_RATE = 20
    assert b"SES is not reachable" in staff_client.get("/reports/").content
    assert (
        shown(staff_client.get("/settings/").content.decode(), "send-rate") == "20 msg/s, from the SEND_RATE setting."
    )
