"""Signed SNS requests for the webhook: a real key, a real certificate served over HTTP (fixtures
registered by tests/conftest.py), and helpers to build campaigns that events can match."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tracking import sns
from tracking.simulator import CertificateServer, SigningIdentity

TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:cobalt-mail-ses-events"
WEBHOOK = "/tracking/ses/"


@pytest.fixture(scope="session")
def signing(tmp_path_factory) -> SigningIdentity:
    return SigningIdentity(Path(tmp_path_factory.mktemp("sns-signing")))


@pytest.fixture(scope="session")
def cert_server(signing) -> CertificateServer:
    server = CertificateServer(signing)
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def sns_settings(settings, cert_server):
    settings.SNS_VERIFY_SIGNATURES = True
    settings.SNS_TOPIC_ARNS = [TOPIC_ARN]
    settings.SNS_CERT_TRUSTED_URLS = [cert_server.url]
    sns.certificates.clear()
    yield settings
    sns.certificates.clear()


@pytest.fixture
def signed(signing, cert_server):
    """A signed SNS Notification envelope (dict) carrying ``record``."""

    def build(record: dict, *, version: str = "2", message_id: str | None = None, topic_arn: str = TOPIC_ARN) -> dict:
        return signing.notification(
            record, topic_arn=topic_arn, cert_url=cert_server.cert_url, version=version, message_id=message_id
        )

    return build


@pytest.fixture
def post(client):
    def send(envelope: dict | str | bytes):
        body = envelope if isinstance(envelope, str | bytes) else json.dumps(envelope)
        return client.post(WEBHOOK, data=body, content_type="text/plain")

    return send


@pytest.fixture
def notify(signed, post):
    """Post ``record`` to the webhook as a signed SNS notification; returns the response."""

    def send(record: dict, **options):
        return post(signed(record, **options))

    return send


def new_id() -> str:
    return str(uuid.uuid4())


def campaign_with_recipients(count: int, *, status: str = "sending", emails: list[str] | None = None):
    """A campaign whose audience was frozen and handed to SES: recipients with SES message ids."""
    from audiences.models import Subscription
    from campaigns.models import Campaign, Recipient
    from stats.models import CampaignStats
    from tests.factories import ContactFactory, campaign_to, list_with_contacts

    contact_list = list_with_contacts(0)
    contacts = [ContactFactory(email=address) for address in emails] if emails else ContactFactory.create_batch(count)
    Subscription.objects.bulk_create(Subscription(contact=c, contact_list=contact_list) for c in contacts)
    campaign = campaign_to(contact_list)
    Campaign.objects.filter(pk=campaign.pk).update(status=status)
    CampaignStats.objects.create(campaign=campaign, sent=len(contacts))
    recipients = [
        Recipient.objects.create(
            campaign=campaign,
            contact=c,
            email=c.email,
            status=Recipient.Status.SENT,
            ses_message_id=f"ses-{uuid.uuid4()}",
        )
        for c in contacts
    ]
    campaign.refresh_from_db()
    return campaign, recipients
