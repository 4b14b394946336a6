"""Webhook throughput through a real HTTP server: our /tracking/ses/ against django-ses's stock view.

``run()`` (called by ``make bench``) creates a PostgreSQL database (``cobalt_bench_webhook``),
migrates it, seeds one campaign with recipients, starts gunicorn with several workers on loopback
serving both webhooks from the same Django project, and posts the same SES events, signed SNS
notifications with verification on, from a bounded load generator on loopback:

- django-ses: ``django_ses.views.SESEventWebhookView`` (SignatureVersion 1, the only one it
  accepts) with a signal receiver that updates one counter row per event;
- ours: ``tracking.views.ses_webhook`` (SignatureVersion 2): verify, deduplicate, store the event,
  match it, update the counters, apply the policies, one transaction per event.

Both paths fetch their signing certificate once per worker process: django-ses accepts only
``https://…amazonaws.com`` certificate URLs, so its cache is seeded with the bench certificate in
each worker (``application`` below); ours fetches it from a loopback URL trusted through
``SNS_CERT_TRUSTED_URLS``. Run directly: ``.venv/bin/python -m bench.webhook``.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench import pg
from cobalt_mail.devserver import wait_for_port

ROOT = Path(__file__).resolve().parent.parent
DATABASE_NAME = f"cobalt_bench_webhook_{os.getpid()}"
TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:cobalt-bench"
STOCK_CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-cobaltbench.pem"
EVENT_KINDS = ("Send", "Delivery", "Open", "Click")


# --- the server side (imported by gunicorn workers) ---------------------------------------------------


def _stock_receiver(sender, mail_obj=None, **kwargs) -> None:
    """The stock path's receiver: one UPDATE of one counter row per event."""
    from django.db.models import F

    from stats.models import CampaignStats

    campaign = int(mail_obj["tags"]["campaign"][0])
    CampaignStats.objects.filter(campaign_id=campaign).update(delivered=F("delivered") + 1)


def _make_application():
    """The project's WSGI app with one extra URL for django-ses's view (bench only)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cobalt_mail.settings")
    import django

    django.setup()
    from cryptography import x509
    from django.conf import settings
    from django.urls import include, path
    from django.views.decorators.csrf import csrf_exempt
    from django_ses import signals, utils
    from django_ses.views import SESEventWebhookView

    import tracking.views

    # Same name as our webhook, in the same namespace, so the staff-only middleware lets it through.
    bench_patterns = (
        [
            path("ses/", tracking.views.ses_webhook, name="ses_webhook"),
            path("ses-through-django/", tracking.views.ses_webhook, name="ses_webhook"),
            path("django-ses/", csrf_exempt(SESEventWebhookView.as_view()), name="ses_webhook"),
        ],
        "tracking",
    )
    module = sys.modules[__name__]
    module.urlpatterns = [path("tracking/", include(bench_patterns))]
    settings.ROOT_URLCONF = __name__
    for signal in (signals.send_received, signals.delivery_received, signals.open_received, signals.click_received):
        signal.connect(_stock_receiver, dispatch_uid=f"bench-{id(signal)}")
    pem = Path(os.environ["BENCH_CERT_FILE"]).read_bytes()
    utils._CERT_CACHE[STOCK_CERT_URL] = x509.load_pem_x509_certificate(pem)
    from django.core.wsgi import get_wsgi_application

    from tracking.wsgi import with_fast_webhook

    # As cobalt_mail/wsgi.py serves it: the webhook path answered by tracking.wsgi's lean path.
    return with_fast_webhook(get_wsgi_application(), path="/tracking/ses/")


def __getattr__(name: str):
    # gunicorn imports "bench.webhook:application": build it lazily so importing the module
    # (bench/run.py does) does not set up Django with the bench settings.
    if name == "application":
        application = _make_application()
        globals()["application"] = application
        return application
    raise AttributeError(name)


# --- the bench driver -----------------------------------------------------------------------------


def _seed(recipients: int) -> None:
    """Run in a subprocess against the bench database: one campaign, its recipients, its counters."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cobalt_mail.settings")
    import django

    django.setup()
    from django.apps import apps
    from django.conf import settings
    from django.core.management import call_command

    from audiences.models import Contact
    from campaigns.models import Campaign, Recipient
    from stats.models import CampaignStats

    # Tables straight from the models (as pytest-django's --no-migrations does): the bench
    # measures the webhook, not the migration history, and must not depend on its state.
    settings.MIGRATION_MODULES = {config.label: None for config in apps.get_app_configs()}
    call_command("migrate", run_syncdb=True, verbosity=0)

    campaign = Campaign.objects.create(name="Bench", subject="Hi", from_email="news@cobalt.example", html_body="x")
    contacts = Contact.objects.bulk_create(Contact(email=f"reader{n}@example.org") for n in range(recipients))
    Recipient.objects.bulk_create(
        Recipient(campaign=campaign, contact=c, email=c.email, status="sent", ses_message_id=f"bench-{c.pk}")
        for c in contacts
    )
    CampaignStats.objects.create(campaign=campaign)
    rows = list(Recipient.objects.filter(campaign=campaign).values_list("pk", "email", "ses_message_id"))
    print(json.dumps({"campaign": campaign.pk, "recipients": rows}))


def _records(seed: dict) -> list[dict]:
    sent = datetime.now(UTC) - timedelta(hours=1)
    records = []
    for recipient_id, address, ses_id in seed["recipients"]:
        mail = {"timestamp": sent.isoformat().replace("+00:00", "Z"), "source": "news@cobalt.example",
                "messageId": ses_id, "destination": [address], "headersTruncated": False, "headers": [],
                "commonHeaders": {"from": ["news@cobalt.example"], "to": [address], "subject": "Hi"},
                "tags": {"campaign": [str(seed["campaign"])], "recipient": [str(recipient_id)]}}  # fmt: skip
        later = (sent + timedelta(minutes=20)).isoformat().replace("+00:00", "Z")
        details = {
            "Send": ("send", {}),
            "Delivery": ("delivery", {"timestamp": later, "recipients": [address], "smtpResponse": "250 ok"}),
            "Open": ("open", {"timestamp": later, "ipAddress": "198.51.100.7", "userAgent": "Mozilla/5.0 (X11)"}),
            "Click": ("click", {"timestamp": later, "ipAddress": "198.51.100.7", "userAgent": "Mozilla/5.0 (X11)",
                                "link": "https://example.com/read", "linkTags": {}}),
        }  # fmt: skip
        for kind in EVENT_KINDS:
            key, detail = details[kind]
            records.append({"eventType": kind, "mail": mail, key: detail})
    return records


def _bodies(identity, records: list[dict], *, cert_url: str, version: str) -> list[bytes]:
    return [
        json.dumps(identity.notification(r, topic_arn=TOPIC_ARN, cert_url=cert_url, version=version)).encode()
        for r in records
    ]


def _load(port: int, path: str, bodies: list[bytes], *, connections: int) -> tuple[float, dict[int, int]]:
    """Post every body once over ``connections`` keep-alive connections. Returns (events/s, statuses)."""
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    cursor = iter(bodies)

    def worker() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine: dict[int, int] = {}
        while True:
            with lock:
                body = next(cursor, None)
            if body is None:
                break
            for attempt in range(3):
                try:
                    connection.request("POST", path, body, {"Content-Type": "text/plain; charset=UTF-8"})
                    response = connection.getresponse()
                    response.read()
                    mine[response.status] = mine.get(response.status, 0) + 1
                    if response.getheader("Connection", "").lower() == "close":
                        connection.close()
                    break
                except (http.client.HTTPException, OSError):
                    connection.close()
                    if attempt == 2:
                        mine[0] = mine.get(0, 0) + 1
        connection.close()
        with lock:
            for status, count in mine.items():
                statuses[status] = statuses.get(status, 0) + count

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(bodies) / (time.perf_counter() - started), statuses


def run(
    *, recipients: int = 1000, rounds: int = 2, workers: int = 2, threads: int = 32, connections: int = 64
) -> list[str]:
    """Measure both webhooks; returns the result lines (``webhook: N events/s`` …)."""
    from tracking.simulator import CertificateServer, SigningIdentity

    bench_url = pg.database_url(DATABASE_NAME)
    workdir = Path(tempfile.mkdtemp(prefix="cobalt-bench-webhook-"))
    identity = SigningIdentity(workdir)
    cert_server = CertificateServer(identity)
    pg.recreate(DATABASE_NAME)
    port = pg.free_port()
    env = {
        **os.environ,
        "DATABASE_URL": bench_url,
        "DEBUG": "0",
        "COBALT_TESTING": "0",
        "SECRET_KEY": "bench-" + uuid.uuid4().hex,
        "SNS_TOPIC_ARNS": TOPIC_ARN,
        "DJANGO_SETTINGS_MODULE": "bench.settings_webhook",  # trusts cert_server over loopback HTTP
        "BENCH_CERT_URL": cert_server.url,
        "BENCH_CERT_FILE": str(workdir / "cert.pem"),
        "LOG_LEVEL": "WARNING",
        "REDIS_URL": "",
    }
    server = None
    try:
        seeded = subprocess.run(
            [sys.executable, "-m", "bench.webhook", "seed", str(recipients)],
            env=env, cwd=ROOT, check=True, capture_output=True, text=True,
        )  # fmt: skip
        seed = json.loads(seeded.stdout.strip().splitlines()[-1])
        records = _records(seed)
        stock = _bodies(identity, records, cert_url=STOCK_CERT_URL, version="1")
        # Ours deduplicates on MessageId, so every round needs fresh messages; django-ses does not.
        ours_rounds = [_bodies(identity, records, cert_url=cert_server.cert_url, version="2") for _ in range(rounds)]
        warm_ours = _bodies(identity, records[:100], cert_url=cert_server.cert_url, version="2")
        gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent)) or "gunicorn"
        server = subprocess.Popen(
            [gunicorn, "bench.webhook:application", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
             "--worker-class", "gthread", "--threads", str(threads), "--keep-alive", "30", "--log-level", "warning",
             "--preload"],
            env=env, cwd=ROOT, start_new_session=True,
        )  # fmt: skip
        wait_for_port(port)
        _load(port, "/tracking/django-ses/", stock[:100], connections=connections)
        _load(port, "/tracking/ses/", warm_ours, connections=connections)
        # Interleaved rounds, best of each: other work on the machine hits both alike.
        stock_rates, ours_rates, ours_statuses, stock_statuses = [], [], {}, {}
        for ours in ours_rounds:
            rate, stock_statuses = _load(port, "/tracking/django-ses/", stock, connections=connections)
            stock_rates.append(rate)
            rate, ours_statuses = _load(port, "/tracking/ses/", ours, connections=connections)
            ours_rates.append(rate)
        stock_rate, ours_rate = max(stock_rates), max(ours_rates)
        # Our view through the whole Django middleware stack, for comparison (fresh MessageIds).
        via_django = _bodies(identity, records, cert_url=cert_server.cert_url, version="2")
        django_rate, _ = _load(port, "/tracking/ses-through-django/", via_django, connections=connections)
        stored = _count_events(bench_url)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        cert_server.stop()
        pg.drop(DATABASE_NAME)
        shutil.rmtree(workdir, ignore_errors=True)
    expected = sum(len(ours) for ours in ours_rounds) + len(warm_ours) + len(via_django)
    return [
        f"webhook: {ours_rate:.0f} events/s",
        f"webhook django-ses stock: {stock_rate:.0f} events/s",
        f"webhook vs django-ses: {ours_rate / stock_rate:.2f}x",
        f"webhook through the full Django middleware stack: {django_rate:.0f} events/s",
        f"webhook setup: {len(stock)} events per run, best of {rounds} interleaved runs, "
        f"gunicorn {workers} workers x {threads} threads, {connections} keep-alive connections, PostgreSQL, "
        f"signatures verified (ours v2, django-ses v1); "
        f"statuses ours {ours_statuses} django-ses {stock_statuses}; events stored {stored}/{expected}",
    ]


def _count_events(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as connection:
        return connection.execute("SELECT count(*) FROM tracking_event").fetchone()[0]


if __name__ == "__main__":
    if sys.argv[1:2] == ["seed"]:
        _seed(int(sys.argv[2]))
    else:
        for line in run():
            print(line)
