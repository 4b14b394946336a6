"""Webhooks out (api/webhooks.py): registration, the pages, and real deliveries to a receiver on
loopback (http.server in a thread), signed, retried with backoff, disabled after a day of failures."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import import_module

import pytest
import time_machine
from django.apps import apps as django_apps
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from django_q.models import Schedule
from post_office.models import Email as OutboxEmail

from api import webhooks
from api.models import WebhookDelivery, WebhookEndpoint
from organisations.models import AuditEntry, Membership, Role
from tests.conftest import wait_until
from tests.factories import CampaignFactory, EventFactory, RecipientFactory
from tracking.models import Event

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


# --- the receiver -----------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: _ReceiverServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.server.lock:
            self.server.received.append((dict(self.headers), body))
            status = self.server.statuses.pop(0) if self.server.statuses else self.server.default_status
        time.sleep(self.server.delay)
        self.send_response(status)
        if 300 <= status < 400:
            self.send_header("Location", self.server.location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


class _ReceiverServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False


class Receiver:
    """A membership site's webhook view on 127.0.0.1: records (headers, body); answers the next of
    ``statuses``, then ``default_status``."""

    def __init__(self) -> None:
        self.server = _ReceiverServer(("127.0.0.1", 0), _Handler)
        self.server.received, self.server.statuses, self.server.lock = [], [], threading.Lock()
        self.server.default_status, self.server.delay, self.server.location = 200, 0.0, ""
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/cobalt"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def received(self) -> list[tuple[dict, bytes]]:
        return self.server.received

    def events(self) -> list[dict]:
        return [event for _, body in self.received for event in json.loads(body)["events"]]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    server = Receiver()
    yield server
    server.close()


# The README's verification snippet, as a receiver would write it.
def verify(secret: str, headers: dict, body: bytes, tolerance: int = 300) -> bool:
    import hashlib, hmac, time  # noqa: E401, I001 (the snippet is self-contained)

    timestamp = headers["Cobalt-Webhook-Timestamp"]
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    given = headers["Cobalt-Signature"].removeprefix("v1=")
    return hmac.compare_digest(expected, given) and abs(time.time() - int(timestamp)) <= tolerance


# --- helpers ------------------------------------------------------------------------------------------


@pytest.fixture
def admin_client(client, django_user_model, club):
    user = django_user_model.objects.create_user(username="ada.admin", password="x", email="ada@riverside.example")
    Membership.objects.create(user=user, organisation=club, role=Role.ADMINISTRATOR)
    client.force_login(user)
    client.user = user
    return client


def endpoint_for(organisation, url, types=("bounce", "complaint", "unsubscribe", "delivery")) -> WebhookEndpoint:
    return webhooks.webhook_endpoint_create(organisation=organisation, url=url, event_types=list(types))


def bounces(organisation, count: int, **fields) -> list[Event]:
    campaign = CampaignFactory(organisation=organisation)
    return [
        EventFactory(
            event_type=Event.Type.BOUNCE,
            recipient=RecipientFactory(campaign=campaign, contact__organisation=organisation, sent=True),
            bounce_type="Permanent",
            **fields,
        )
        for _ in range(count)
    ]


def run() -> dict:
    return webhooks.webhooks_run(seconds=30)


# --- registration -------------------------------------------------------------------------------------


def test_an_administrator_registers_an_https_endpoint_and_sees_its_secret_once(admin_client, club):
    # An IP literal on the public internet: registration resolves the name, and this one needs no DNS.
    answer = admin_client.post(
        reverse("webhooks:list"),
        {"url": "https://1.1.1.1/hooks/cobalt", "description": "Membership site", "event_types": ["bounce"]},
    )
    assert answer.status_code == 200
    endpoint = WebhookEndpoint.objects.get(organisation=club)
    assert endpoint.event_types == ["bounce"] and endpoint.is_active and endpoint.secret.startswith("whsec_")
    assert endpoint.secret in answer.content.decode()
    later = admin_client.get(reverse("webhooks:list")).content.decode()
    assert endpoint.secret not in later and endpoint.secret_hint in later
    assert endpoint.secret not in admin_client.get(reverse("webhooks:detail", args=[endpoint.pk])).content.decode()
    assert AuditEntry.objects.filter(organisation=club, object_type="webhook", object_id=str(endpoint.pk)).exists()


@pytest.mark.parametrize(
    "url",
    [
        "https://10.1.2.3/hook",
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hook",
        "https://[::ffff:192.168.1.1]/hook",
        "https://0.0.0.0/hook",
        "https://100.64.0.1/hook",
    ],
)
def test_an_endpoint_on_a_private_or_local_address_is_refused_with_a_clear_message(admin_client, club, url):
    answer = admin_client.post(reverse("webhooks:list"), {"url": url, "event_types": ["bounce"]})
    assert answer.status_code == 400
    assert "private, local or reserved network" in answer.content.decode()
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://files.example.org/hook", "must start with https://"),
        ("javascript:alert(1)", "must start with https://"),
        ("http://1.1.1.1/hook", "Use an https:// address"),
        ("https://user:secret@1.1.1.1/hook", "Leave user names and passwords out"),
        ("https:///nohost", "has no site name"),
        ("https://1.1.1.1/a b", "spaces or control characters"),
        ("https://1.1.1.1:99999/hook", "invalid site name or port"),
        ("https://1.1.1.1/" + "x" * 600, "at most 500 characters"),
    ],
)
def test_a_bad_address_is_refused_with_words_that_say_what_to_change(admin_client, url, words):
    answer = admin_client.post(reverse("webhooks:list"), {"url": url, "event_types": ["bounce"]})
    assert answer.status_code == 400
    assert words in answer.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_registration_needs_a_known_event_type(club):
    with pytest.raises(webhooks.WebhookRefused, match="Unknown event types: opened"):
        webhooks.webhook_endpoint_create(organisation=club, url="https://1.1.1.1/h", event_types=["bounce", "opened"])
    with pytest.raises(webhooks.WebhookRefused, match="at least one"):
        webhooks.webhook_endpoint_create(organisation=club, url="https://1.1.1.1/h", event_types=[])


@pytest.mark.parametrize("role", [Role.VIEWER, Role.EDITOR, Role.SENDER])
def test_only_administrators_open_or_change_webhooks(client, django_user_model, club, role):
    endpoint = endpoint_for(club, "https://1.1.1.1/hook")
    user = django_user_model.objects.create_user(username=f"{role}.user", password="x")
    Membership.objects.create(user=user, organisation=club, role=role)
    client.force_login(user)
    assert client.get(reverse("webhooks:list")).status_code == 403
    assert client.get(reverse("webhooks:detail", args=[endpoint.pk])).status_code == 403
    assert (
        client.post(reverse("webhooks:list"), {"url": "https://1.1.1.2/x", "event_types": ["bounce"]}).status_code
        == 403
    )
    for name in ("disable", "delete", "renew_secret"):
        assert client.post(reverse(f"webhooks:{name}", args=[endpoint.pk])).status_code == 403
    endpoint.refresh_from_db()
    assert endpoint.is_active and WebhookEndpoint.objects.count() == 1


def test_another_organisations_endpoint_ids_answer_404_and_change_nothing(admin_client, other_club):
    theirs = endpoint_for(other_club, "https://1.1.1.1/theirs")
    secret = theirs.secret
    for name in ("detail", "renew_secret", "delete"):
        assert admin_client.get(reverse(f"webhooks:{name}", args=[theirs.pk])).status_code == 404
    for name in ("disable", "enable", "renew_secret", "delete"):
        assert admin_client.post(reverse(f"webhooks:{name}", args=[theirs.pk])).status_code == 404
    theirs.refresh_from_db()
    assert theirs.is_active and theirs.secret == secret
    assert "1.1.1.1/theirs" not in admin_client.get(reverse("webhooks:list")).content.decode()


def test_an_administrator_disables_enables_renews_the_secret_of_and_deletes_an_endpoint(admin_client, club):
    endpoint = endpoint_for(club, "https://1.1.1.1/hook")
    detail = reverse("webhooks:detail", args=[endpoint.pk])
    assert admin_client.post(reverse("webhooks:disable", args=[endpoint.pk])).url == detail
    endpoint.refresh_from_db()
    assert not endpoint.is_active
    admin_client.post(reverse("webhooks:enable", args=[endpoint.pk]))
    endpoint.refresh_from_db()
    assert endpoint.is_active
    old = endpoint.secret
    page = admin_client.post(reverse("webhooks:renew_secret", args=[endpoint.pk])).content.decode()
    endpoint.refresh_from_db()
    assert endpoint.secret != old and endpoint.secret in page
    admin_client.post(reverse("webhooks:delete", args=[endpoint.pk]))
    assert not WebhookEndpoint.objects.exists()
    summaries = AuditEntry.objects.filter(object_type="webhook", object_id=str(endpoint.pk)).order_by("pk")
    assert [summary.split(" ")[0] for summary in summaries.values_list("summary", flat=True)] == [
        "Registered",
        "Disabled",
        "Enabled",
        "Renewed",
        "Deleted",
    ]


# --- delivery -----------------------------------------------------------------------------------------


def test_events_are_posted_signed_and_the_readme_snippet_verifies_them(receiver, club, other_club):
    with time_machine.travel(START, tick=True) as clock:
        endpoint = endpoint_for(club, receiver.url, types=("bounce",))
        clock.shift(timedelta(seconds=1))
        ours = bounces(club, 3)
        bounces(other_club, 2)  # another organisation's: never sent here
        CampaignFactory(organisation=club).events.create(  # a delivery: not a chosen type
            sns_message_id="d1", event_type=Event.Type.DELIVERY, occurred_at=START
        )
        clock.shift(timedelta(seconds=15))  # past the feed's settle window
        assert run()["delivered"] == 1
    assert len(receiver.received) == 1
    headers, body = receiver.received[0]
    with time_machine.travel(START + timedelta(seconds=20), tick=False):
        assert verify(endpoint.secret, headers, body)
        assert not verify(endpoint.secret, headers, body + b" ")
        assert not verify("whsec_other", headers, body)
    payload = json.loads(body)
    assert headers["Cobalt-Webhook-Id"] == payload["id"] and headers["Content-Type"] == "application/json"
    assert [event["data"]["email"] for event in payload["events"]] == [event.email for event in ours]
    assert {event["type"] for event in payload["events"]} == {"bounce"}
    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    assert (delivery.status, delivery.attempts, delivery.response_code, delivery.item_count) == ("delivered", 1, 200, 3)
    endpoint.refresh_from_db()
    assert endpoint.cursor == payload["events"][-1]["cursor"]
    # Nothing new: nothing sent again.
    with time_machine.travel(START + timedelta(minutes=5), tick=True):
        run()
    assert len(receiver.received) == 1


def test_a_failed_batch_is_retried_with_backoff_with_the_same_id_and_items(receiver, club):
    receiver.server.statuses = [500, 503]
    with time_machine.travel(START, tick=True) as clock:
        endpoint = endpoint_for(club, receiver.url)
        bounces(club, 2)
        clock.shift(timedelta(seconds=15))
        run()
        delivery = WebhookDelivery.objects.get()
        assert (delivery.status, delivery.attempts, delivery.response_code) == ("retrying", 1, 500)
        assert delivery.error == "Answered 500 Internal Server Error."
        assert timedelta(seconds=9) < delivery.next_attempt_at - delivery.last_attempt_at <= timedelta(seconds=10)
        run()  # not due yet: nothing sent
        assert len(receiver.received) == 1
        clock.shift(timedelta(seconds=10))
        run()
        delivery.refresh_from_db()
        assert (delivery.attempts, delivery.response_code) == (2, 503)
        assert timedelta(seconds=19) < delivery.next_attempt_at - delivery.last_attempt_at <= timedelta(seconds=20)
        clock.shift(timedelta(seconds=20))
        bounces(club, 1)  # written meanwhile: goes in the next batch, not into the retried one
        clock.shift(timedelta(seconds=15))
        run()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_code, delivery.error) == ("delivered", 3, 200, "")
    bodies = [json.loads(body) for _, body in receiver.received]
    assert len({body["id"] for body in bodies[:3]}) == 1 and bodies[0]["events"] == bodies[2]["events"]
    assert len(bodies) == 4 and len(bodies[3]["events"]) == 1 and bodies[3]["id"] != bodies[0]["id"]
    endpoint.refresh_from_db()
    assert endpoint.failing_since is None and endpoint.next_attempt_at is None


def test_an_endpoint_failing_for_a_day_is_disabled_audited_and_its_administrators_are_told(
    receiver, club, admin_client, django_user_model, ses
):
    other_admin = django_user_model.objects.create_user(username="bo", password="x", email="bo@riverside.example")
    Membership.objects.create(user=other_admin, organisation=club, role=Role.ADMINISTRATOR)
    editor = django_user_model.objects.create_user(username="ed", password="x", email="ed@riverside.example")
    Membership.objects.create(user=editor, organisation=club, role=Role.EDITOR)
    receiver.server.default_status = 502
    with time_machine.travel(START, tick=True) as clock:
        endpoint = endpoint_for(club, receiver.url)
        bounces(club, 1)
        clock.shift(timedelta(seconds=15))
        gaps = []
        for _ in range(60):
            run()
            endpoint.refresh_from_db()
            if not endpoint.is_active:
                break
            gaps.append((endpoint.next_attempt_at - endpoint.failing_since, endpoint.next_attempt_at))
            clock.move_to(endpoint.next_attempt_at + timedelta(seconds=1))
    assert not endpoint.is_active
    waits = [later[1] - earlier[1] for earlier, later in itertools.pairwise(gaps)]
    assert [round(wait.total_seconds()) for wait in waits[:4]] == [21, 41, 81, 161]  # backoff, +1 s of ours
    assert max(waits) <= timedelta(hours=1, seconds=2)
    assert timedelta(hours=24) <= endpoint.disabled_at - endpoint.failing_since < timedelta(hours=25)
    assert "Failed for 24 hours" in endpoint.disabled_reason and "502 Bad Gateway" in endpoint.disabled_reason
    assert WebhookDelivery.objects.get().status == "failed"
    assert AuditEntry.objects.filter(organisation=club, summary__contains="it failed for 24 hours").count() == 1
    sent = OutboxEmail.objects.filter(subject__startswith="Webhook endpoint disabled")
    assert sorted(address for email in sent for address in email.to) == [
        "ada@riverside.example",
        "bo@riverside.example",
    ]
    assert {email.status for email in sent} == {0}  # post_office's "sent"
    assert len([message for message in ses.sent() if "Webhook endpoint disabled" in message["raw_data"]]) == 2
    page = admin_client.get(reverse("webhooks:list")).content.decode()
    assert 'data-testid="webhook-disabled-notice"' in page
    # Nothing is lost: enabled again, the endpoint gets the owed batch once it answers 2xx.
    receiver.server.default_status = 200
    admin_client.post(reverse("webhooks:enable", args=[endpoint.pk]))
    with time_machine.travel(endpoint.disabled_at + timedelta(minutes=1), tick=True):
        run()
    assert WebhookDelivery.objects.filter(status="delivered").count() == 1
    assert json.loads(receiver.received[-1][1])["events"][0]["type"] == "bounce"


def test_two_runs_at_once_send_each_item_once(receiver, club, transactional_db):
    receiver.server.delay = 0.2  # both runs are in the middle of a POST at the same time
    with time_machine.travel(START, tick=True) as clock:
        endpoints = [endpoint_for(club, receiver.url), endpoint_for(club, receiver.url + "?second")]
        bounces(club, 230)
        clock.shift(timedelta(seconds=15))
        outcomes = []

        def work():
            try:
                outcomes.append(run())
            finally:
                connection.close()

        threads = [threading.Thread(target=work) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    cursors = [event["cursor"] for event in receiver.events()]
    assert len(cursors) == 2 * 230 and len(set(cursors)) == 230  # each item once per endpoint
    assert len(receiver.received) == 2 * 3  # batches of 100, 100, 30 per endpoint
    assert sum(outcome["delivered"] for outcome in outcomes) == 6
    assert all(run["endpoints"] for run in outcomes)  # both runs worked, each on its own endpoint
    for endpoint in endpoints:
        assert WebhookDelivery.objects.filter(endpoint=endpoint, status="delivered").count() == 3


def test_an_address_that_turned_private_is_refused_at_delivery(receiver, club, settings):
    with time_machine.travel(START, tick=True) as clock:
        # Registered while private addresses were allowed (or while the name pointed elsewhere).
        endpoint_for(club, receiver.url.replace("http://", "https://"))
        bounces(club, 1)
        clock.shift(timedelta(seconds=15))
        settings.WEBHOOK_ALLOW_PRIVATE = False
        run()
    assert receiver.received == []
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "retrying" and delivery.response_code is None
    assert delivery.error.startswith("Not sent: ") and "private, local or reserved network" in delivery.error


def test_no_answer_within_the_timeout_is_a_failure_in_plain_words(receiver, club, settings):
    settings.WEBHOOK_TIMEOUT = 0.3
    receiver.server.delay = 1.0
    with time_machine.travel(START, tick=True) as clock:
        endpoint_for(club, receiver.url)
        bounces(club, 1)
        clock.shift(timedelta(seconds=15))
        run()
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.error) == ("retrying", "No answer within 0.3 s.")


def test_a_disabled_endpoint_gets_nothing_until_enabled_then_everything_it_missed(receiver, club):
    with time_machine.travel(START, tick=True) as clock:
        endpoint = endpoint_for(club, receiver.url)
        webhooks.webhook_endpoint_disable(endpoint=endpoint)
        bounces(club, 3)
        clock.shift(timedelta(seconds=15))
        run()
        assert receiver.received == []
        endpoint.refresh_from_db()
        webhooks.webhook_endpoint_enable(endpoint=endpoint)
        run()
    assert len(receiver.events()) == 3


def test_the_delivery_log_shows_outsider_text_as_text_newest_first_and_paged(receiver, admin_client, club):
    receiver.server.statuses = [302]
    receiver.server.location = '"><script>alert(1)</script>'
    with time_machine.travel(START, tick=True) as clock:
        endpoint = endpoint_for(club, receiver.url + "?q=<b>bold</b>")
        bounces(club, 1)
        clock.shift(timedelta(seconds=15))
        run()
    page = admin_client.get(reverse("webhooks:detail", args=[endpoint.pk])).content.decode()
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page
    assert "register the final address instead" in page
    # 60 more log rows: the first page shows the newest 50, the second the rest.
    WebhookDelivery.objects.bulk_create(
        WebhookDelivery(
            endpoint=endpoint,
            delivery_id=f"wh_test{n}",
            after_cursor="v1.0.0.0",
            last_cursor="v1.0.0.0",
            item_count=n,
            status="delivered",
            created_at=START + timedelta(minutes=n),
        )
        for n in range(1, 61)
    )
    first = admin_client.get(reverse("webhooks:detail", args=[endpoint.pk])).content.decode()
    assert first.index('data-delivery="wh_test60"') < first.index('data-delivery="wh_test59"')
    assert 'data-delivery="wh_test10"' not in first and "Page 1 of 2" in first
    second = admin_client.get(reverse("webhooks:detail", args=[endpoint.pk]), {"page": "2"}).content.decode()
    assert 'data-delivery="wh_test10"' in second and 'data-delivery="wh_test60"' not in second
    assert admin_client.get(reverse("webhooks:detail", args=[endpoint.pk]), {"page": "x' OR 1=1"}).status_code == 200


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body():
    expected = hmac.new(b"whsec_k", b"1700000000.{}", hashlib.sha256).hexdigest()
    assert webhooks.webhook_signature("whsec_k", "1700000000", b"{}") == f"v1={expected}"


def test_the_schedules_run_the_tick_twice_a_minute(db):
    ticks = Schedule.objects.filter(func="api.tasks.webhooks_tick").order_by("next_run")
    assert [tick.name for tick in ticks] == ["webhooks-tick", "webhooks-tick-2"]
    assert (ticks[1].next_run - ticks[0].next_run) == timedelta(seconds=30)


def test_a_real_qcluster_runs_the_schedule_and_delivers(receiver, club, workers):
    endpoint = endpoint_for(club, receiver.url)
    for event in bounces(club, 2):
        # Written a minute ago (past the feed's settle window), after the endpoint's cursor.
        Event.objects.filter(pk=event.pk).update(received_at=timezone.now() - timedelta(minutes=1))
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(cursor="v1.0.9.0")
    # A transactional test before this one flushed the schedules the migration made: make them again.
    import_module("api.migrations.0002_webhooks").create_schedules(django_apps, None)
    Schedule.objects.filter(func="api.tasks.webhooks_tick").update(next_run=timezone.now())
    workers.start(1, WEBHOOK_ALLOW_PRIVATE="1")
    wait_until(lambda: len(receiver.received) >= 1, timeout=60, message="the scheduled tick's POST")
    wait_until(lambda: WebhookDelivery.objects.filter(status="delivered").exists(), timeout=30, message="the log row")
    assert len(receiver.events()) == 2
    headers, body = receiver.received[0]
    assert verify(endpoint.secret, headers, body)
