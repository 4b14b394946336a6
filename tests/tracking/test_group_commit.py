"""The production write path: the lean WSGI webhook and the group commit, with concurrent posts."""

from __future__ import annotations

import io
import json
import threading

import pytest
from django.core.wsgi import get_wsgi_application

from stats.models import CampaignStats
from tests.sns import WEBHOOK, campaign_with_recipients, new_id
from tests.tracking.records import event
from tracking import groupcommit
from tracking.models import Event
from tracking.wsgi import with_fast_webhook


def call(application, body: bytes, *, path: str = WEBHOOK, method: str = "POST") -> tuple[int, bytes]:
    environ = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80",
        "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)), "CONTENT_TYPE": "text/plain",
        "wsgi.url_scheme": "http", "HTTP_HOST": "127.0.0.1", "wsgi.errors": io.StringIO(),
    }  # fmt: skip
    statuses = []
    content = b"".join(application(environ, lambda status, headers: statuses.append(status)))
    return int(statuses[0].split()[0]), content


@pytest.fixture
def group_commit(settings):
    settings.SNS_GROUP_COMMIT = True
    yield groupcommit.writer
    groupcommit.writer.release_connection()  # the test database is dropped at the end


@pytest.mark.django_db(transaction=True)
def test_concurrent_events_are_each_stored_once_and_counted_once(group_commit, signed):
    application = with_fast_webhook(get_wsgi_application())
    campaign, recipients = campaign_with_recipients(10)
    bodies = []
    for recipient in recipients:
        for kind in ("Delivery", "Open", "Open", "Click"):
            record = event(kind, address=recipient.email, campaign=campaign.pk, recipient=recipient.pk)
            bodies.append(json.dumps(signed(record, message_id=new_id())).encode())
    bodies += bodies[:5]  # SNS delivers some messages twice
    results: list[int] = []

    def post(chunk: list[bytes]) -> None:
        results.extend(call(application, body)[0] for body in chunk)

    threads = [threading.Thread(target=post, args=(bodies[n::8],)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results == [200] * len(bodies)
    assert Event.objects.count() == 40
    counters = CampaignStats.objects.get(campaign=campaign)
    assert (counters.delivered, counters.opens, counters.unique_opens, counters.unique_clicks) == (10, 20, 10, 10)


@pytest.mark.django_db
def test_the_lean_path_refuses_like_the_view(settings, signed):
    settings.SNS_GROUP_COMMIT = False
    application = with_fast_webhook(get_wsgi_application())
    envelope = signed(event("Delivery"))
    envelope["Message"] = json.dumps(event("Bounce"))

    assert call(application, json.dumps(envelope).encode()) == (403, b"The signature does not match the message.")
    assert call(application, b"x" * (settings.SNS_MAX_BODY_BYTES + 1))[0] == 413
    assert call(application, b"{}")[0] == 400
    assert not Event.objects.exists()


@pytest.mark.django_db
def test_other_requests_go_to_django(settings):
    application = with_fast_webhook(get_wsgi_application())

    status, _ = call(application, b"", path="/login/", method="GET")

    assert status == 200
