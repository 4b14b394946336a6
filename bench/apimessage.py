"""``python -m bench.apimessage``: single messages through the API while a big campaign sends at the full rate.

Issue #17: a single message (``POST /api/v1/messages``) is handed to SES within 5 s while a
100,000-recipient campaign is sending at the full rate. Everything on loopback:

- PostgreSQL: a throw-away database ``cobalt_bench_apimessage`` (created, migrated, dropped);
- Redis (``APIMESSAGE_REDIS_URL``, default ``redis://127.0.0.1:6379/9``: it is **flushed**) as the
  django-q2 broker and the rate limiter's clock, as ``bench.scaleout`` runs it;
- SES: the fast stub of ``tests/ses_stub.py`` in its own process, answering every send after
  ``--latency`` seconds and logging every message it accepted with its arrival time;
- one ``manage.py qcluster`` (``Q_WORKERS=2``, ``SEND_DISPATCHERS=2``, ``SEND_RATE=--rate``): both
  workers run the campaign's dispatchers, so a message's own dispatch task finds no free worker and
  the engine's express lane is what is measured;
- one gunicorn web process (one worker, gthread) serving the API; the messages are posted to it over
  HTTP with a sender key, from a saved template (``CampaignTemplate``).

First the baseline: ``--messages`` messages with no campaign sending (the workers idle). Then the
campaign of ``--recipients`` contacts (one list, one organisation) starts; ``--warmup`` seconds after
SES got its first message, the same number of messages are posted, one every ``--interval``
seconds. Each is timed from just before its POST to its recipient's ``sent_at`` (written just after
SES answered); SES's own arrival time (the stub's log) is given beside it. The campaign's rate at SES
over the measurement window is printed: if it is below the limit, "full rate" was not reached. The
campaign needs not finish: the processes are killed and the database dropped after the messages.

Prints (``make bench`` runs it through ``bench.run``)::

    api single message under load: <median> s (max <max> s, n=20; campaign at <rate> msg/s of <limit>)
    api single message idle: <median> s (max <max> s, n=20)

and, unless ``--no-report``, appends them with the details to docs/performance.md. Without
PostgreSQL or Redis it prints "api single message under load: skipped: …" and exits 0.
"""

from __future__ import annotations

import argparse
import bisect
import http.client
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import harness
from bench.harness import Processes, wait

LOOPBACK = harness.Loopback(
    name="apimessage",
    redis_url=os.environ.get("APIMESSAGE_REDIS_URL", "redis://127.0.0.1:6379/9"),
    label="api single message under load",
    section="## Single messages under load (`python -m bench.apimessage`, also run by `make bench`): issue #17",
)
TARGET_SECONDS = 5.0
BEFORE_SECONDS = 10.0
TEMPLATE_HTML = (
    "<html><body><p>Hi {{ first_name }},</p><p>Your entry {{ attributes.entry }} for the "
    "{{ attributes.race }} is confirmed.</p></body></html>"
)


def say(text: str) -> None:
    print(f"api message: {text}", file=sys.stderr, flush=True)


# --- the SES log -------------------------------------------------------------------------------


class SesLog:
    """The stub's log, read as it grows: when SES got each message (arrival time, address)."""

    def __init__(self, path: Path) -> None:
        self.log = harness.StubLog(path)
        self.times: list[float] = []  # every arrival, in log order
        self.by_address: dict[str, float] = {}  # first arrival per address

    def read(self) -> SesLog:
        for at, addresses in self.log.arrivals():
            self.times.append(at)
            for address in addresses:
                self.by_address.setdefault(address, at)
        return self

    def between(self, start: float, end: float) -> int:
        ordered = sorted(self.times)
        return bisect.bisect_left(ordered, end) - bisect.bisect_left(ordered, start)


# --- the messages ------------------------------------------------------------------------------


@dataclass
class Posted:
    address: str
    posted_at: float  # wall clock just before the POST
    answered_at: float
    message_id: int
    sent_at: float | None = None
    at_ses: float | None = None
    errors: list[str] = field(default_factory=list)


class Api:
    """``POST /api/v1/messages`` over one keep-alive HTTP connection to the web process."""

    def __init__(self, port: int, key: str, template_id: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self.template_id = template_id

    def post(self, label: str, number: int) -> Posted:
        address = f"{label}-{number}@example.net"
        body = json.dumps({
            "template": self.template_id,
            "to": address,
            "context": {"first_name": "Ann", "last_name": "Lee", "entry": number, "race": "Autumn regatta"},
        })  # fmt: skip
        headers = {**self.headers, "Idempotency-Key": f"bench-{label}-{number}"}
        posted_at = time.time()
        self.connection.request("POST", "/api/v1/messages", body, headers)
        response = self.connection.getresponse()
        payload = response.read()
        answered_at = time.time()
        if response.status != 202:
            raise RuntimeError(f"POST /api/v1/messages answered {response.status}: {payload[:500]!r}")
        return Posted(address, posted_at, answered_at, json.loads(payload)["id"])


def send_messages(api: Api, label: str, count: int, interval: float) -> list[Posted]:
    posted = []
    for number in range(count):
        started = time.monotonic()
        posted.append(api.post(label, number))
        time.sleep(max(0.0, interval - (time.monotonic() - started)))
    return posted


def wait_until_sent(posted: list[Posted], ses: SesLog, timeout: float) -> None:
    """Fill in each message's ``sent_at`` and SES arrival; wait at most ``timeout`` for the last."""
    from campaigns.models import Recipient

    ids = [message.message_id for message in posted]

    def all_sent() -> bool:
        return Recipient.objects.filter(campaign_id__in=ids, sent_at__isnull=False).count() == len(ids)

    wait(all_sent, timeout=timeout, step=0.2)
    rows = {row[0]: row[1:] for row in Recipient.objects.filter(campaign_id__in=ids).values_list(
        "campaign_id", "sent_at", "status", "error")}  # fmt: skip
    ses.read()
    for message in posted:
        sent_at, status, error = rows[message.message_id]
        message.sent_at = sent_at.timestamp() if sent_at else None
        message.at_ses = ses.by_address.get(message.address)
        if status != Recipient.Status.SENT:
            message.errors.append(f"{message.address}: {status} {error}".strip())


def own_task_starts(posted: list[Posted]) -> dict[int, float]:
    """When each message's own dispatch task started, for those that ran (django-q keeps successes)."""
    from django_q.models import Task

    ids = {message.message_id for message in posted}
    starts: dict[int, float] = {}
    for args, started in Task.objects.filter(func="campaigns.tasks.campaign_dispatch").values_list("args", "started"):
        campaign_id = args[0] if args else None
        if campaign_id in ids:
            starts[campaign_id] = min(starts.get(campaign_id, float("inf")), started.timestamp())
    return starts


def sent_by_own_task(posted: list[Posted]) -> int:
    """How many of the messages their own dispatch task could have sent (it started before sent_at)."""
    starts = own_task_starts(posted)
    return sum(
        1 for message in posted if starts.get(message.message_id, float("inf")) < (message.sent_at or float("inf"))
    )


def latencies(posted: list[Posted]) -> tuple[list[float], list[float]]:
    """(POST to sent_at, POST to SES arrival) in seconds; a message never sent counts as infinite."""
    to_sent = [(message.sent_at or float("inf")) - message.posted_at for message in posted]
    to_ses = [(message.at_ses or float("inf")) - message.posted_at for message in posted]
    return to_sent, to_ses


# --- the run -----------------------------------------------------------------------------------


def prepare(recipients: int):
    """The campaign (audience frozen), a template and a sender key; (campaign, template id, key)."""
    from api.keys import api_key_create
    from bench.run import new_campaign, seed
    from campaigns.models import CampaignTemplate
    from campaigns.snapshot import audience_snapshot
    from organisations.models import Organisation, Role, sole_organisation_id

    started = time.perf_counter()
    contact_list = seed(recipients, {"members": recipients})["members"]
    campaign = new_campaign(contact_list, "under load")
    audience_snapshot(campaign_id=campaign.pk)
    say(f"{recipients:,} contacts seeded and frozen in {time.perf_counter() - started:.1f} s")
    organisation = Organisation.objects.get(pk=sole_organisation_id())
    template = CampaignTemplate.objects.create(
        organisation=organisation,
        name="Entry confirmation",
        subject="Your entry, {{ first_name }}",
        html_body=TEMPLATE_HTML,
    )
    _, key = api_key_create(organisation=organisation, role=Role.SENDER, name="bench.apimessage")
    return campaign, template.pk, key


def measure(args: argparse.Namespace, workdir: Path, processes: Processes) -> tuple[list[str], str]:
    """Set everything up, measure idle, start the campaign, measure under load; (lines, details)."""
    log_path = workdir / "ses.log"
    stub_url = harness.start_stub(processes, log_path, args.latency)
    bench_url, notes = LOOPBACK.setup_django(stub_url, SEND_RATE=str(args.rate))
    from campaigns.services import campaign_send_now

    campaign, template_id, key = prepare(args.recipients)
    env = LOOPBACK.child_env(stub_url, bench_url, SEND_RATE=str(args.rate), Q_WORKERS="2", SEND_DISPATCHERS="2")
    (port,) = harness.start_web(processes, env, ["apimessage-web"], threads=4)
    api = Api(port, key, template_id)
    harness.start_clusters(processes, env, ["apimessage-cluster"])
    ses = SesLog(log_path)

    say(f"baseline: {args.messages} messages, one every {args.interval:g} s, no campaign sending")
    idle = send_messages(api, "idle", args.messages, args.interval)
    wait_until_sent(idle, ses, timeout=60)

    sending_from = time.time()
    campaign_send_now(campaign_id=campaign.pk)
    if not wait(lambda: ses.read().between(0, float("inf")) > len(idle), timeout=120, step=0.1):
        raise RuntimeError("SES got nothing of the campaign within 120 s")
    say(f"campaign of {args.recipients:,} sending; measuring after {args.warmup:g} s of warm-up")
    time.sleep(args.warmup)
    window_start = time.time()
    loaded = send_messages(api, "load", args.messages, args.interval)
    wait_until_sent(loaded, ses, timeout=60)
    window_end = max(message.sent_at or time.time() for message in loaded)
    ses.read()
    at_ses = ses.between(window_start, window_end) - sum(
        1 for message in loaded if message.at_ses and window_start <= message.at_ses < window_end
    )
    rate = at_ses / (window_end - window_start)
    # The same campaign's rate in the last seconds before the first message (nothing else sending).
    before = ses.between(window_start - BEFORE_SECONDS, window_start) / BEFORE_SECONDS
    series = [ses.between(start, start + 5) / 5 for start in range(int(sending_from), int(window_end), 5)]
    say("campaign at SES, msg/s in 5-s steps from its start: " + " ".join(f"{value:.0f}" for value in series))
    say("under load, s from POST to sent_at: " + " ".join(f"{value:.2f}" for value in latencies(loaded)[0]))
    say("idle, s from POST to sent_at: " + " ".join(f"{value:.2f}" for value in latencies(idle)[0]))
    by_own_task = sent_by_own_task(loaded)
    # A check of the check: idle, every message should have gone out through its own dispatch task.
    say(f"idle: {sent_by_own_task(idle)} of {len(idle)} sent by their own dispatch task")
    processes.close()  # the campaign needs not finish
    return report_lines(args, idle, loaded, (rate, before), window_end - window_start, by_own_task, notes)


def report_lines(args, idle, loaded, rates, window, by_own_task, notes) -> tuple[list[str], str]:
    rate, before = rates
    load_sent, load_ses = latencies(loaded)
    idle_sent, idle_ses = latencies(idle)
    n = len(loaded)
    lines = [
        f"api single message under load: {statistics.median(load_sent):.2f} s (max {max(load_sent):.2f} s, "
        f"n={n}; campaign at {rate:.0f} msg/s of {args.rate:g})",
        f"api single message idle: {statistics.median(idle_sent):.2f} s (max {max(idle_sent):.2f} s, n={len(idle)})",
    ]
    over = sum(1 for seconds in load_sent if seconds > TARGET_SECONDS)
    failures = [error for message in idle + loaded for error in message.errors]
    api_answer = statistics.median(message.answered_at - message.posted_at for message in loaded)
    details = (
        f"from the POST to SES's arrival (stub log): under load median {statistics.median(load_ses):.2f} s, "
        f"max {max(load_ses):.2f} s; idle median {statistics.median(idle_ses):.2f} s, max {max(idle_ses):.2f} s. "
        f"Under load: {over} of {n} over {TARGET_SECONDS:g} s; {n - by_own_task} of {n} sent by the express lane "
        f"(the others by their own dispatch task, which found a free worker first); the API answered 202 in "
        f"{api_answer * 1000:.0f} ms (median); campaign rate measured at SES over the {window:.0f}-s window "
        f"of the messages ({before:.0f} msg/s in the {BEFORE_SECONDS:g} s before the first). "
        f"{args.recipients:,} recipients, SES latency {args.latency * 1000:.0f} ms per send, "
        f"messages one every {args.interval:g} s, load average {os.getloadavg()[0]:.1f}"
    )
    if rate < 0.97 * args.rate:
        details += f"; NOT at the full rate: the campaign sent {rate:.0f} msg/s of the {args.rate:g} allowed"
    if failures:
        details += "; not sent: " + "; ".join(failures[:5])
    details += "".join(f"; {note}" for note in notes)
    return lines, details


def main(argv: list[str] | None = None) -> int:
    parser = harness.argument_parser(__doc__)
    parser.add_argument("--recipients", type=int, default=100_000, help="the campaign's contacts")
    parser.add_argument("--rate", type=float, default=300, help="SEND_RATE (the full rate)")
    parser.add_argument("--messages", type=int, default=20, help="single messages, idle and under load each")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between two messages")
    parser.add_argument("--warmup", type=float, default=15.0, help="seconds the campaign sends before measuring")
    args = harness.arguments(parser, argv, latency=True)
    return LOOPBACK.main(measure, args, argv, say=say)


def run() -> list[str]:
    """For ``bench.run``: the benchmark in its own process (its own Django settings: Redis, the
    stub, its database), its two lines back."""
    return harness.run_module("bench.apimessage", ("api single message",), echo_details=True)


if __name__ == "__main__":
    sys.exit(main())
