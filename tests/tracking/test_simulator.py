"""The local SES event simulator driving a real campaign through the engine, local SES and the webhook."""

from __future__ import annotations

import email
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
import requests
from django.utils import timezone

from audiences.models import Contact, Subscription, Suppression
from campaigns.delivery.engine import campaign_dispatch
from campaigns.services import campaign_send_now
from campaigns.snapshot import audience_snapshot
from common.local_ses import LocalSESServer
from stats.models import CampaignStats
from tests.conftest import ROOT
from tests.factories import ContactFactory, ContactListFactory, campaign_to
from tests.sns import TOPIC_ARN
from tracking.models import Event, SimulatedNotification
from tracking.simulator import Rates, Simulator, message_links, plan_events

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


def simulator(ses, live_server, signing, cert_server, **options) -> Simulator:
    # Everyone who is not a mailbox-simulator address opens and clicks; nobody else bounces.
    rates = Rates(bounce_rate=0, soft_bounce_rate=0, complaint_rate=0, open_rate=1, machine_open_share=0, click_rate=1)
    return Simulator(
        webhook_url=f"{live_server.url}/tracking/ses/",
        ses_endpoint=ses.url,
        identity=signing,
        cert_url=cert_server.cert_url,
        topic_arn=TOPIC_ARN,
        rates=rates,
        signature_version="1",
        **options,
    )


@pytest.mark.django_db(transaction=True)
def test_the_simulator_turns_a_real_send_into_counts_on_the_campaign_page(
    sent_campaign, ses, live_server, signing, cert_server, staff_client
):
    posted = simulator(ses, live_server, signing, cert_server).run_once()

    # Send for all 7; Delivery for 5; Bounce for 2; Complaint 1; Open + Click for the 2 readers.
    assert posted == 7 + 5 + 2 + 1 + 2 + 2
    counters = CampaignStats.objects.get(campaign=sent_campaign)
    assert (counters.delivered, counters.bounced_hard, counters.complained) == (5, 2, 1)
    assert (counters.unique_opens, counters.unique_clicks) == (2, 2)
    assert Contact.objects.get(email=ADDRESSES[1]).status == Contact.Status.BOUNCED
    assert Contact.objects.get(email=ADDRESSES[2]).status == Contact.Status.COMPLAINED
    assert set(Suppression.objects.values_list("email", flat=True)) == set(ADDRESSES[1:3] + ADDRESSES[4:5])

    page = staff_client.get(f"/campaigns/{sent_campaign.pk}/").content.decode()
    for testid, value in [("delivered", 5), ("bounced", 2), ("complained", 1)]:
        assert f'data-testid="{testid}-count">{value}<' in page
    for testid, value in [("opened", 2), ("clicked", 2)]:  # people, all of them human here
        assert f'data-testid="{testid}-headline">{value}<' in page


@pytest.mark.django_db(transaction=True)
def test_a_restarted_simulator_does_not_post_the_same_events_again(
    sent_campaign, ses, live_server, signing, cert_server
):
    simulator(ses, live_server, signing, cert_server).run_once()
    stored = Event.objects.count()

    again = simulator(ses, live_server, signing, cert_server).run_once()

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
        topic_arn=TOPIC_ARN, identity_dir=str(tmp_path), once=True, verbosity=2, stdout=out,
    )  # fmt: skip

    assert f"certificate at http://127.0.0.1:{port}/cert.pem" in out.getvalue()
    assert Event.objects.filter(event_type=Event.Type.SEND).count() == len(ADDRESSES)
    assert CampaignStats.objects.get(campaign=sent_campaign).delivered >= 3


# --- what it reads: decoded messages, only new ones, state in the database -------------------------

LONG_LINK = "https://example.com/season-programme?week=1&day=2"


@pytest.mark.django_db(transaction=True)
def test_it_clicks_links_as_a_mail_client_decodes_them(
    ses, live_server, signing, cert_server, django_capture_on_commit_callbacks
):
    # One line over 998 characters: the message goes out quoted-printable, with soft line breaks
    # (=CRLF) inside the address and "&amp;" in it.
    body = "Ünïcode news " + "x" * 1100 + f' <a href="{LONG_LINK.replace("&", "&amp;")}">programme</a>'
    contact_list = ContactListFactory()
    Subscription.objects.create(contact=ContactFactory(email="reader@example.org"), contact_list=contact_list)
    campaign = campaign_to(contact_list, html_body=f"<p>{body}</p>")
    with django_capture_on_commit_callbacks(execute=False):
        campaign_send_now(campaign_id=campaign.pk)
    audience_snapshot(campaign_id=campaign.pk)
    assert campaign_dispatch(campaign_id=campaign.pk, seconds=60) == "finished"
    raw = ses.sent()[0]["raw_data"]
    assert "=\r\n" in raw and LONG_LINK not in raw  # really encoded on the wire

    links = message_links(email.message_from_string(raw, policy=policy.default))
    simulator(ses, live_server, signing, cert_server).run_once()

    assert LONG_LINK in links
    assert all(" " not in link and "=\r" not in link and "=\n" not in link for link in links)
    clicked = list(Event.objects.filter(event_type=Event.Type.CLICK).values_list("link", flat=True))
    assert len(clicked) == 1 and clicked[0] in links


@pytest.mark.django_db(transaction=True)
def test_no_event_carries_a_time_later_than_when_it_was_posted(sent_campaign, ses, live_server, signing, cert_server):
    # Opens are due minutes after delivery; run_once posts them now, and they must say now.
    simulator(ses, live_server, signing, cert_server, time_scale=1.0).run_once()

    latest = Event.objects.order_by("-occurred_at").values_list("occurred_at", flat=True)[0]
    assert latest <= timezone.now()
    assert Event.objects.filter(event_type=Event.Type.OPEN).count() == 2


def test_planned_times_follow_the_compressed_schedule():
    sent_at = datetime(2026, 11, 30, 6, 10, tzinfo=UTC)
    message = {"id": "m-1", "source": "news@cobalt.example", "destinations": ["reader@example.org"],
               "raw_data": "Subject: hi\r\nTo: reader@example.org\r\n\r\nbody"}  # fmt: skip
    rates = Rates(bounce_rate=0, soft_bounce_rate=0, complaint_rate=0, open_rate=1, machine_open_share=0)

    for delay, record in plan_events(message, rates=rates, seed=1, sent_at=sent_at, time_scale=0.05):
        detail = record[record["eventType"].lower()]
        if "timestamp" in detail:
            stamp = datetime.fromisoformat(detail["timestamp"].replace("Z", "+00:00"))
            assert abs((stamp - sent_at).total_seconds() - delay) < 0.002
        assert delay <= 0.05 * (3 + 3600 + 120)  # a human open within minutes of real time


class RecordingWebhook:
    """A stand-in webhook that records every notification posted to it (how often, in what order)."""

    def __init__(self, *, delay: float = 0.0) -> None:
        self.posts: list[dict] = []
        self.lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real web server

            def do_POST(self) -> None:
                envelope = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                time.sleep(delay)
                with recorder.lock:
                    recorder.posts.append({**envelope, "record": json.loads(envelope["Message"])})
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/tracking/ses/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def recording_webhook():
    webhook = RecordingWebhook(delay=0.005)
    yield webhook
    webhook.stop()


@pytest.fixture
def local_ses(settings):
    """The local SES `make run` starts (moto plus the cursor endpoint), in this process."""
    server = LocalSESServer().start()
    requests.post(f"{server.url}/moto-api/reset", timeout=10).raise_for_status()
    server.client = boto3.client("ses", region_name="us-east-1", endpoint_url=server.url)
    server.client.verify_domain_identity(Domain="cobalt.example")
    yield server
    server.stop()


def send_raw(local_ses, count: int, *, start: int = 0) -> None:
    for number in range(start, start + count):
        address = f"reader{number}@example.org"
        raw = f"From: news@cobalt.example\r\nTo: {address}\r\nSubject: News {number}\r\n\r\nHello"
        local_ses.client.send_raw_email(Source="news@cobalt.example", Destinations=[address], RawMessage={"Data": raw})


def recording_simulator(local_ses, webhook, signing, cert_server, **options) -> Simulator:
    return Simulator(
        webhook_url=webhook.url, ses_endpoint=local_ses.url, identity=signing, cert_url=cert_server.cert_url,
        topic_arn=TOPIC_ARN, rates=Rates(complaint_rate=0), **options,
    )  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_it_reads_only_the_messages_accepted_since_its_last_pass(local_ses, recording_webhook, signing, cert_server):
    sim = recording_simulator(local_ses, recording_webhook, signing, cert_server)
    send_raw(local_ses, 3)
    assert sim.poll() == 3

    send_raw(local_ses, 2, start=3)
    assert sim.poll() == 2
    assert sim.poll() == 0

    assert sim.read == 5  # fetched from local SES: each message once, not 3 + 5 + 5
    sim.flush(everything=True, max_batches=None)
    sends = [post["record"]["mail"]["destination"][0] for post in recording_webhook.posts
             if post["record"]["eventType"] == "Send"]  # fmt: skip
    assert sorted(sends) == [f"reader{n}@example.org" for n in range(5)]
    sim.close()


@pytest.mark.django_db(transaction=True)
def test_every_planned_event_is_posted_exactly_once_over_concurrent_connections(
    local_ses, recording_webhook, signing, cert_server
):
    send_raw(local_ses, 60)
    sim = recording_simulator(local_ses, recording_webhook, signing, cert_server, connections=8)
    sim.poll()
    planned = list(SimulatedNotification.objects.values_list("sns_message_id", flat=True))

    posted = sim.flush(everything=True, max_batches=None)
    sim.close()

    ids = Counter(post["MessageId"] for post in recording_webhook.posts)
    assert posted == len(planned) == len(ids) and set(ids) == set(planned)
    assert max(ids.values()) == 1
    assert not SimulatedNotification.objects.exists()
    order = ["Send", "Delivery", "Bounce", "Open", "Click"]
    by_message: dict[str, list[int]] = {}
    for post in recording_webhook.posts:  # each message's events arrive in the order they happened
        by_message.setdefault(post["record"]["mail"]["messageId"], []).append(order.index(post["record"]["eventType"]))
    assert all(kinds == sorted(kinds) for kinds in by_message.values())


@pytest.mark.django_db(transaction=True)
def test_a_fresh_database_gets_none_of_the_events_planned_for_another(
    local_ses, recording_webhook, signing, cert_server, tmp_path
):
    # This database: messages read, events planned and still waiting for their time.
    send_raw(local_ses, 5)
    sim = recording_simulator(local_ses, recording_webhook, signing, cert_server, time_scale=100)
    sim.poll()
    sim.close()
    assert SimulatedNotification.objects.exists()

    # A fresh database, as `make run` with another DATABASE_URL sees it: a new local SES
    # (reset) and the simulator's default state.
    requests.post(f"{local_ses.url}/moto-api/reset", timeout=10).raise_for_status()
    env = {key: value for key, value in os.environ.items() if key not in {"REDIS_URL", "COBALT_TESTING"}}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'fresh.sqlite3'}", DEBUG="1")
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v", "0"], env=env, cwd=ROOT, check=True, timeout=300)
    result = subprocess.run(
        [*manage, "ses_simulator", "--once", "--webhook-url", recording_webhook.url, "--ses-endpoint",
         local_ses.url, "--cert-port", "0", "--topic-arn", TOPIC_ARN],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert "Posted 0 events in" in result.stdout
    assert recording_webhook.posts == []
