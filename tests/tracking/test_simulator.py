"""The local SES event simulator driving a real campaign through the engine, local SES and the webhook."""

from __future__ import annotations

import pytest

from campaigns.audience import audience_snapshot
from campaigns.engine import campaign_dispatch
from campaigns.models import Contact, Subscription
from campaigns.services import campaign_send_now
from tests.factories import ContactFactory, ContactListFactory, campaign_to
from tests.tracking.conftest import TOPIC_ARN
from tracking.models import CampaignStats, Event, Suppression
from tracking.simulator import Rates, Simulator

ADDRESSES = [
    "success+member1@simulator.amazonses.com",
    "bounce+member2@simulator.amazonses.com",
    "complaint+member3@simulator.amazonses.com",
    "ooto@simulator.amazonses.com",
    "suppressionlist@simulator.amazonses.com",
    "reader.one@example.org",
    "reader.two@example.org",
]


@pytest.fixture
def sent_campaign(ses, django_capture_on_commit_callbacks):
    contact_list = ContactListFactory()
    for address in ADDRESSES:
        Subscription.objects.create(contact=ContactFactory(email=address), contact_list=contact_list)
    campaign = campaign_to(contact_list)
    with django_capture_on_commit_callbacks(execute=False):
        campaign_send_now(campaign_id=campaign.pk)
    audience_snapshot(campaign_id=campaign.pk)
    assert campaign_dispatch(campaign_id=campaign.pk, seconds=60) == "finished"
    assert len(ses.sent()) == len(ADDRESSES)
    return campaign


def simulator(ses, live_server, signing, cert_server, state_path) -> Simulator:
    # Everyone who is not a mailbox-simulator address opens and clicks; nobody else bounces.
    rates = Rates(bounce_rate=0, soft_bounce_rate=0, complaint_rate=0, open_rate=1, machine_open_share=0, click_rate=1)
    return Simulator(
        webhook_url=f"{live_server.url}/tracking/ses/",
        ses_endpoint=ses.url,
        state_path=state_path,
        identity=signing,
        cert_url=cert_server.cert_url,
        topic_arn=TOPIC_ARN,
        rates=rates,
        signature_version="1",
    )


@pytest.mark.django_db(transaction=True)
def test_the_simulator_turns_a_real_send_into_counts_on_the_campaign_page(
    sent_campaign, ses, live_server, signing, cert_server, staff_client, tmp_path
):
    posted = simulator(ses, live_server, signing, cert_server, tmp_path / "state.json").run_once()

    # Send for all 7; Delivery for 5; Bounce for 2; Complaint 1; Open + Click for the 2 readers.
    assert posted == 7 + 5 + 2 + 1 + 2 + 2
    counters = CampaignStats.objects.get(campaign=sent_campaign)
    assert (counters.delivered, counters.bounced_hard, counters.complained) == (5, 2, 1)
    assert (counters.unique_opens, counters.unique_clicks) == (2, 2)
    assert Contact.objects.get(email=ADDRESSES[1]).status == Contact.Status.BOUNCED
    assert Contact.objects.get(email=ADDRESSES[2]).status == Contact.Status.COMPLAINED
    assert set(Suppression.objects.values_list("email", flat=True)) == set(ADDRESSES[1:3] + ADDRESSES[4:5])

    page = staff_client.get(f"/campaigns/{sent_campaign.pk}/").content.decode()
    for testid, value in [("delivered", 5), ("bounced", 2), ("complained", 1), ("opened", 2), ("clicked", 2)]:
        assert f'data-testid="{testid}-count">{value}<' in page


@pytest.mark.django_db(transaction=True)
def test_a_restarted_simulator_does_not_post_the_same_events_again(
    sent_campaign, ses, live_server, signing, cert_server, tmp_path
):
    state = tmp_path / "state.json"
    simulator(ses, live_server, signing, cert_server, state).run_once()
    stored = Event.objects.count()

    again = simulator(ses, live_server, signing, cert_server, state).run_once()

    assert again == 0
    assert Event.objects.count() == stored


@pytest.mark.django_db(transaction=True)
def test_the_ses_simulator_command_posts_what_local_ses_accepted(sent_campaign, ses, live_server, settings, tmp_path):
    from io import StringIO

    from django.core.management import call_command

    from tests.conftest import free_port

    port = free_port()
    settings.SNS_CERT_TRUSTED_URLS = [f"http://127.0.0.1:{port}/"]
    out = StringIO()

    call_command(
        "ses_simulator", webhook_url=f"{live_server.url}/tracking/ses/", ses_endpoint=ses.url, cert_port=port,
        topic_arn=TOPIC_ARN, state=str(tmp_path / "state.json"), identity_dir=str(tmp_path), once=True, stdout=out,
    )  # fmt: skip

    assert f"certificate at http://127.0.0.1:{port}/cert.pem" in out.getvalue()
    assert Event.objects.filter(event_type=Event.Type.SEND).count() == len(ADDRESSES)
    assert CampaignStats.objects.get(campaign=sent_campaign).delivered >= 3
