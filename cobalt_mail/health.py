"""/health/ for load balancers and monitors, /metrics for a Prometheus scraper.

Both are public URLs (cobalt_mail/permissions.py): /health/ tells nothing beyond pass or fail,
ages and fixed phrases (never an exception's text, which can hold a host name or a password from
a URL); /metrics answers only a bearer holding ``METRICS_TOKEN`` and is off (404) without one.

Not django-health-check: it has no django-q2 plugin and nothing for the webhook, so three of the
five checks would be our own plugins anyway; its JSON, status codes and error texts are its own
(errors carry the exception's text), and it would be a dependency for about a hundred lines.

/metrics reads counters, never counts a big table: messages and events are sums over the
per-campaign counters (``stats.CampaignStats``, one row per campaign), imports sums over import
jobs, campaigns a GROUP BY on the campaign table, messages sent per organisation the counters
grouped by their campaign's organisation (one pass over the counters, as for the totals) plus the
organisations' slugs (one that sent nothing shows 0). Five queries, whatever the recipients.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from datetime import timedelta

import redis
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Count, F, Max, Q, Sum
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from django_q.models import Schedule

from audiences.models import ImportJob
from campaigns.delivery.ratelimit import send_rate_known
from campaigns.models import Campaign
from organisations.models import Organisation
from stats.models import CampaignStats
from tracking.models import Event
from tracking.rejections import rejection_counts

logger = logging.getLogger(__name__)

ENGINE_TICK = "campaigns.tasks.engine_tick"
# A running cluster's scheduler moves the engine tick's next run past "now" every 30 seconds or
# so, one minute at a time: a next run more than a minute overdue means no scheduler has run for
# between one and two minutes (campaigns/migrations/0002 and 0007 create the tick schedules).
TICK_OVERDUE_LIMIT = timedelta(minutes=1)
REDIS_TIMEOUT_SECONDS = 2

_migrations_applied = False  # once true, true for the life of the process (new code, new process)


class CheckFailed(Exception):
    """A check's answer is no; the message is a fixed phrase, safe to show to anyone."""


def database_check() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {}


def broker_check() -> dict:
    if not settings.REDIS_URL:
        return {"broker": "database"}  # the ORM broker: the database check covers it
    client = redis.Redis.from_url(
        settings.REDIS_URL, socket_connect_timeout=REDIS_TIMEOUT_SECONDS, socket_timeout=REDIS_TIMEOUT_SECONDS
    )
    try:
        client.ping()
    finally:
        client.close()
    return {"broker": "redis"}


def cluster_check() -> dict:
    """django-q2's cluster seen in the last two minutes, on either broker.

    Its own heartbeat (``django_q.status.Stat``) lives in the cache, which is per process with
    the ORM broker: the web process cannot see it. The engine tick's schedule row is in the
    database on both brokers, and only a live cluster's scheduler moves it.
    """
    next_run = Schedule.objects.filter(func=ENGINE_TICK).aggregate(latest=Max("next_run"))["latest"]
    if next_run is None:
        raise CheckFailed("The engine tick schedule is missing: run migrate.")
    overdue = max(timedelta(0), timezone.now() - next_run)
    if overdue > TICK_OVERDUE_LIMIT:
        raise CheckFailed("No django-q2 cluster has run the scheduler in the last 2 minutes.")
    return {"tick_overdue_seconds": round(overdue.total_seconds())}


def migrations_check() -> dict:
    global _migrations_applied
    if not _migrations_applied:
        executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
        if executor.migration_plan(executor.loader.graph.leaf_nodes()):
            raise CheckFailed("Migrations are not applied: run migrate.")
        _migrations_applied = True
    return {}


def webhook_check() -> dict:
    """Informational: the age of the newest stored SES event. Never fails: a fresh install or a
    quiet month has no recent events, and /health/ must not page anyone for that."""
    received_at = Event.objects.order_by("-pk").values_list("received_at", flat=True).first()
    if received_at is None:
        return {"last_event_age_seconds": None}
    return {"last_event_age_seconds": max(0, round((timezone.now() - received_at).total_seconds()))}


CHECKS: dict[str, tuple[Callable[[], dict], str]] = {
    # name: (check, the phrase shown when it raises something other than CheckFailed)
    "database": (database_check, "The database does not answer."),
    "broker": (broker_check, "Redis does not answer."),
    "cluster": (cluster_check, "The cluster's schedule cannot be read."),
    "migrations": (migrations_check, "The migrations cannot be read."),
    "webhook": (webhook_check, "The stored events cannot be read."),
}


def checks_run() -> dict[str, dict]:
    results = {}
    for name, (check, phrase) in CHECKS.items():
        try:
            results[name] = {"ok": True, **check()}
        except CheckFailed as failure:
            results[name] = {"ok": False, "error": str(failure)}
        except Exception:
            logger.warning("Health check %s failed", name, exc_info=True)  # the details stay in the log
            results[name] = {"ok": False, "error": phrase}
    return results


@never_cache
@require_GET
def health(request: HttpRequest) -> HttpResponse:
    results = checks_run()
    healthy = all(result["ok"] for result in results.values())
    return JsonResponse({"status": "ok" if healthy else "fail", "checks": results}, status=200 if healthy else 503)


# --- /metrics

# Event types (as tracking.models.Event names them) and the counter that counts them. Outcomes
# count once per recipient (SES may notify one bounce twice), opens and clicks every event.
EVENT_COUNTERS = {
    "delivery": "delivered",
    "bounce_hard": "bounced_hard",
    "bounce_soft": "bounced_soft",
    "complaint": "complained",
    "reject": "rejected",
    "delivery_delay": "delayed",
    "rendering_failure": "rendering_failures",
    "open": "opens",
    "click": "clicks",
    "unsubscribe": "unsubscribed",
}
IMPORT_COUNTERS = ("rows_read", "created", "updated", "unchanged", "rejected")


def metrics_refusal(request: HttpRequest) -> HttpResponse | None:
    """404 while METRICS_TOKEN is unset, 401 without a bearer token, 403 with a wrong one."""
    token = settings.METRICS_TOKEN
    if not token:
        return HttpResponse("Not found.", status=404, content_type="text/plain; charset=utf-8")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        response = HttpResponse("A bearer token is required.", status=401, content_type="text/plain; charset=utf-8")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    # Bytes: compare_digest refuses non-ASCII text, and a header may hold any Latin-1 character.
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        return HttpResponse("The token is not valid.", status=403, content_type="text/plain; charset=utf-8")
    return None


def metrics_read() -> dict:
    """Every figure /metrics shows, in five queries."""
    # Aliases differ from the field names: Django refuses an aggregate named like a field it sums.
    fields = {*CampaignStats.OUTCOME_FIELDS, *EVENT_COUNTERS.values()}
    totals = {f"total_{name}": Coalesce(Sum(name), 0) for name in fields}
    in_flight = Q(campaign__status__in=[Campaign.Status.SENDING, Campaign.Status.PAUSED])
    remaining = F("recipients") - F("sent") - F("failed") - F("skipped")
    row = CampaignStats.objects.aggregate(**totals, total_queued=Coalesce(Sum(remaining, filter=in_flight), 0))
    by_state = dict.fromkeys(Campaign.Status.values, 0)
    by_state.update(Campaign.objects.order_by().values_list("status").annotate(count=Count("pk")))
    imports = ImportJob.objects.aggregate(**{f"total_{name}": Coalesce(Sum(name), 0) for name in IMPORT_COUNTERS})
    return {
        "stats": {key.removeprefix("total_"): value for key, value in row.items()},
        "campaigns": by_state,
        "imports": {key.removeprefix("total_"): value for key, value in imports.items()},
        "organisations": organisation_sent_read(),
    }


def organisation_sent_read() -> dict[str, int]:
    """{organisation slug: messages sent}, from the per-campaign counters (one row per campaign)."""
    # One GROUP BY, not a sum per organisation: a correlated sum rescans the counters per
    # organisation (3 s for 100 organisations and 20,000 campaigns on PostgreSQL, against 30 ms).
    sent = dict.fromkeys(Organisation.objects.order_by("slug").values_list("slug", flat=True), 0)
    grouped = CampaignStats.objects.order_by().values_list("campaign__organisation__slug").annotate(Sum("sent"))
    sent.update((slug, total or 0) for slug, total in grouped)
    return sent


def label_value(value: str) -> str:
    """A label value as the Prometheus text format wants it: backslash, quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _family(lines: list[str], name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
    lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    lines += [
        f"{name}{labels} {value:g}" if isinstance(value, float) else f"{name}{labels} {value}"
        for labels, value in samples
    ]


def metrics_text() -> str:
    """The Prometheus text exposition format 0.0.4."""
    figures = metrics_read()
    stats, lines = figures["stats"], []
    outcomes = [(f'{{outcome="{field}"}}', stats[field]) for field in CampaignStats.OUTCOME_FIELDS]
    _family(
        lines, "cobalt_messages_total", "counter", "Campaign messages by outcome (summed campaign counters).", outcomes
    )
    events = [(f'{{type="{kind}"}}', stats[field]) for kind, field in EVENT_COUNTERS.items()]
    help_events = "SES events by type from the campaign counters (outcomes once per recipient; opens, clicks all)."
    _family(lines, "cobalt_events_total", "counter", help_events, events)
    rejections = [(f'{{reason="{reason}"}}', count) for reason, count in rejection_counts().items()]
    help_rejections = "Webhook requests refused, by reason (counted per web process since its start)."
    _family(lines, "cobalt_webhook_rejections_total", "counter", help_rejections, rejections)
    states = [(f'{{state="{state}"}}', count) for state, count in figures["campaigns"].items()]
    _family(lines, "cobalt_campaigns", "gauge", "Campaigns by state.", states)
    queued = [("", max(0, stats["queued"]))]
    _family(
        lines, "cobalt_recipients_queued", "gauge", "Recipients of sending or paused campaigns not yet sent.", queued
    )
    rate = send_rate_known()
    help_rate = "Send rate in force: SEND_RATE, else SES MaxSendRate once this process has read it."
    _family(lines, "cobalt_send_rate_messages_per_second", "gauge", help_rate, [("", rate)] if rate else [])
    imports = [(f'{{outcome="{field}"}}', figures["imports"][field]) for field in IMPORT_COUNTERS]
    _family(lines, "cobalt_import_rows_total", "counter", "Contact import rows (read, then by outcome).", imports)
    sent = [(f'{{organisation="{label_value(slug)}"}}', count) for slug, count in figures["organisations"].items()]
    help_sent = (
        "Campaign messages sent per organisation (summed campaign counters);"
        " per-organisation sending quotas come with a later issue."
    )
    _family(lines, "cobalt_organisation_messages_sent_total", "counter", help_sent, sent)
    return "\n".join(lines) + "\n"


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    refusal = metrics_refusal(request)
    if refusal is not None:
        return refusal
    return HttpResponse(metrics_text(), content_type="text/plain; version=0.0.4; charset=utf-8")
