"""Report pages at scale: one campaign of 1,000,000 recipients with 5,000,000 events on PostgreSQL.

``run()`` creates a throw-away database (``cobalt_bench_reports``), migrates it, fills it in SQL
(``generate_series``: recipients over five domains, five events each: send, delivery, two opens
of which one automatic, and a click; 1% hard bounces instead of deliveries), brings the counters
and breakdowns up to date with the repair functions (timing the full recount), then requests
the report page, its live refresh, the dashboard, the recipients table, and the campaign page
with its 2-second progress poll through Django's test client (staff session, full middleware
stack) and prints medians and 90th percentiles.
Target: the report page and each live refresh under 300 ms at the median.

Run alone: ``python -m bench.reports`` (``BENCH_REPORT_RECIPIENTS`` changes the size).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench import harness, pg

ROOT = Path(__file__).resolve().parent.parent
BENCH_DB = "cobalt_bench_reports"
REQUESTS = 30


def run(recipients: int | None = None) -> list[str]:
    recipients = recipients or int(os.environ.get("BENCH_REPORT_RECIPIENTS", "1000000"))
    bench_url = pg.recreate(BENCH_DB)
    env = {**os.environ, "DATABASE_URL": bench_url, "SECRET_KEY": "bench", "COBALT_TESTING": "0"}
    env.pop("REDIS_URL", None)
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=ROOT, env=env, check=True)
        child = subprocess.run(
            [sys.executable, "-m", "bench.reports", "--child", str(recipients)],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
    finally:
        pg.drop(BENCH_DB)
    return [line for line in child.stdout.splitlines() if line.startswith("reports")]


# --- the child process: Django configured against the bench database ------------------------


def _child(recipients: int) -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cobalt_mail.settings")
    django.setup()
    from django.conf import settings

    settings.ALLOWED_HOSTS = ["testserver"]
    campaign_id, seed_seconds = _seed(recipients)
    repair_seconds = _repair(campaign_id)
    timings = _measure(campaign_id)
    events = recipients * 5
    print(f"reports data: {recipients:,} recipients, {events:,} events seeded in {seed_seconds:.0f} s")
    print(f"reports recount (tracking_recount --fix) at {events:,} events: {repair_seconds:.1f} s")
    for name, values in timings.items():
        print(
            f"reports {name}: median {statistics.median(values) * 1000:.0f} ms, "
            f"p90 {statistics.quantiles(values, n=10)[-1] * 1000:.0f} ms ({len(values)} requests)"
        )


def _seed(recipients: int) -> tuple[int, float]:
    from django.db import connection
    from django.utils import timezone

    from campaigns.models import Campaign

    started = time.perf_counter()
    now = timezone.now()
    campaign = Campaign.objects.create(
        name="Bench: a million recipients", subject="Bench", **harness.sent_campaign_fields(now)
    )
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO campaigns_recipient (campaign_id, email, status, attempts, error, sent_at, ses_message_id)
            SELECT %s,
                   'user' || g || '@' || (ARRAY['gmail.com', 'outlook.com', 'yahoo.com', 'web.de', 'example.org'])
                       [1 + g %% 5],
                   'sent', 1, '', now() - interval '3 days', 'ses-' || g
            FROM generate_series(1, %s) AS g
            """,
            [campaign.pk, recipients],
        )
        # Five events per recipient; every hundredth hard-bounces instead of being delivered.
        cursor.execute(
            """
            INSERT INTO tracking_event (sns_message_id, event_type, campaign_id, recipient_id, ses_message_id,
                email, occurred_at, received_at, bounce_type, bounce_subtype, detail, link, ip_address,
                user_agent, is_machine)
            SELECT 'sns-' || r.id || '-' || k,
                   CASE WHEN k = 2 AND r.id %% 100 = 0 THEN 'bounce'
                        ELSE (ARRAY['send','delivery','open','open','click'])[k] END,
                   r.campaign_id, r.id, r.ses_message_id, r.email,
                   now() - interval '3 days' + interval '1 minute' * ((r.id * 7 + k * 13) %% 4000), now(),
                   CASE WHEN k = 2 AND r.id %% 100 = 0 THEN 'Permanent' ELSE '' END,
                   CASE WHEN k = 2 AND r.id %% 100 = 0 THEN 'General' ELSE '' END, '',
                   CASE WHEN k = 5 THEN 'https://example.com/article-' || (r.id %% 12) ELSE '' END,
                   '192.0.2.1', 'Mozilla/5.0 (X11; Linux x86_64) Chrome/120', k = 4
            FROM campaigns_recipient r CROSS JOIN generate_series(1, 5) AS k
            WHERE r.campaign_id = %s
            """,
            [campaign.pk],
        )
        cursor.execute(
            """
            INSERT INTO tracking_recipientactivity (recipient_id, kind, occurred_at)
            SELECT recipient_id, kind, min(occurred_at) FROM (
                SELECT recipient_id, occurred_at, CASE event_type WHEN 'delivery' THEN 'delivered'
                       WHEN 'bounce' THEN 'bounced' ELSE event_type END AS kind
                FROM tracking_event WHERE campaign_id = %s AND event_type IN ('delivery', 'bounce', 'open', 'click')
                UNION ALL
                SELECT recipient_id, occurred_at, 'human_' || event_type FROM tracking_event
                WHERE campaign_id = %s AND event_type IN ('open', 'click') AND NOT is_machine
            ) AS firsts GROUP BY recipient_id, kind
            """,
            [campaign.pk, campaign.pk],
        )
        cursor.execute("ANALYZE")
    from campaigns.snapshot import recipient_domains
    from stats.counters import snapshot_recorded
    from stats.models import CampaignStats

    CampaignStats.objects.create(campaign=campaign, sent=recipients)
    snapshot_recorded(
        campaign_id=campaign.pk, recipients=recipients, domains=recipient_domains(campaign_id=campaign.pk)
    )
    return campaign.pk, time.perf_counter() - started


def _repair(campaign_id: int) -> float:
    from tracking.recount import counters_repair

    started = time.perf_counter()
    counters_repair(campaign_id=campaign_id, fix=True)
    return time.perf_counter() - started


def _measure(campaign_id: int) -> dict[str, list[float]]:
    from django.contrib.auth import get_user_model
    from django.test import Client

    from organisations.models import Membership, Role, sole_organisation_id

    user = get_user_model().objects.create_user("bench", password="bench-password-1")
    Membership.objects.create(user=user, organisation_id=sole_organisation_id(), role=Role.ADMINISTRATOR)
    client = Client()
    client.force_login(user)
    pages = {
        "page": f"/reports/campaigns/{campaign_id}/",
        "live refresh": f"/reports/campaigns/{campaign_id}/live/",
        "dashboard": "/reports/",
        "campaign page": f"/campaigns/{campaign_id}/",
        "campaign progress poll": f"/campaigns/{campaign_id}/progress/",
        "recipients table": f"/reports/campaigns/{campaign_id}/recipients/",
        "recipients table, bounced": f"/reports/campaigns/{campaign_id}/recipients/?outcome=bounced",
    }
    timings: dict[str, list[float]] = {}
    for name, url in pages.items():
        client.get(url, headers={"HX-Request": "true"} if "live" in name or "poll" in name else {})  # warm caches
        values = []
        for _ in range(REQUESTS if "table" not in name else 10):
            started = time.perf_counter()
            response = client.get(url, headers={"HX-Request": "true"} if "live" in name or "poll" in name else {})
            values.append(time.perf_counter() - started)
            assert response.status_code in (200, 286), (url, response.status_code)
        timings[name] = values
    return timings


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        _child(int(sys.argv[2]))
    else:
        for line in run():
            print(line)
