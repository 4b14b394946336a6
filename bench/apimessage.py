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
import contextlib
import datetime
import http.client
import json
import multiprocessing
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import pg
from bench.scaleout import ENGINE_SETTINGS, Processes, _raise_stopped, _serve_stub, wait

ROOT = Path(__file__).resolve().parent.parent
BENCH_DB = "cobalt_bench_apimessage"
REDIS_URL = os.environ.get("APIMESSAGE_REDIS_URL", "redis://127.0.0.1:6379/9")
CLUSTER_NAME = "cobalt_bench_apimessage"
REPORT = ROOT / "docs" / "performance.md"
SECTION = "## Single messages under load (`python -m bench.apimessage`, also run by `make bench`): issue #17"
TARGET_SECONDS = 5.0
BEFORE_SECONDS = 10.0
TEMPLATE_HTML = (
    "<html><body><p>Hi {{ first_name }},</p><p>Your entry {{ attributes.entry }} for the "
    "{{ attributes.race }} is confirmed.</p></body></html>"
)


def say(text: str) -> None:
    print(f"api message: {text}", file=sys.stderr, flush=True)


# --- processes ---------------------------------------------------------------------------------


def unreachable() -> str | None:
    """Why PostgreSQL or Redis cannot be used, or None when both answer."""
    try:
        import psycopg

        with psycopg.connect(pg.database_url("postgres"), connect_timeout=3):
            pass
    except Exception as error:  # any failure means: no PostgreSQL to run on
        return f"PostgreSQL at {pg.server_url()}: {type(error).__name__}"
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except Exception as error:
        return f"Redis at {REDIS_URL}: {type(error).__name__}"
    return None


def child_env(stub_url: str, bench_url: str, **extra: str) -> dict[str, str]:
    from bench.run import child_env as base

    env = base(stub_url, bench_url, REDIS_URL=REDIS_URL, Q_CLUSTER_NAME=CLUSTER_NAME, **extra)
    for key in ENGINE_SETTINGS:  # an outer shell's engine settings must not leak into the run
        if key not in extra:
            env.pop(key, None)
    return env


def setup_django(stub_url: str, bench_url: str, rate: float) -> None:
    for key in ENGINE_SETTINGS:
        os.environ.pop(key, None)
    os.environ.update(child_env(stub_url, bench_url, SEND_RATE=str(rate)))
    os.environ["DJANGO_SETTINGS_MODULE"] = "cobalt_mail.settings"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def start_web(processes: Processes, env: dict[str, str]) -> int:
    from cobalt_mail.devserver import wait_for_port

    gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent)) or "gunicorn"
    port = pg.free_port()
    processes.start("apimessage-web", [
        gunicorn, "cobalt_mail.wsgi:application", "--bind", f"127.0.0.1:{port}", "--workers", "1",
        "--worker-class", "gthread", "--threads", "4", "--keep-alive", "30", "--log-level", "warning",
    ], env)  # fmt: skip
    wait_for_port(port, timeout=60)
    return port


def start_cluster(processes: Processes, env: dict[str, str]) -> subprocess.Popen:
    from bench.faults import cluster_ready

    cluster = processes.start("apimessage-cluster", [sys.executable, "manage.py", "qcluster"], env)
    if not wait(lambda: cluster_ready(cluster.pid), timeout=90):
        raise RuntimeError(f"the cluster did not report itself ready within 90 s (see {ROOT / 'var' / 'scaleout'})")
    return cluster


# --- the SES log -------------------------------------------------------------------------------


class SesLog:
    """The stub's log, read as it grows: when SES got each message (arrival time, address)."""

    def __init__(self, path: Path) -> None:
        self.file = path.open("rb")
        self.partial = b""
        self.times: list[float] = []  # every arrival, in log order
        self.by_address: dict[str, float] = {}  # first arrival per address

    def read(self) -> SesLog:
        data = self.partial + self.file.read()
        lines = data.split(b"\n")
        self.partial = lines.pop()
        for line in lines:
            arrived, _accepted, _message_id, addresses = line.decode().split("\t")
            at = float(arrived)
            self.times.append(at)
            for address in addresses.split(","):
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
    import redis

    from tests import ses_stub

    stub_port = pg.free_port()
    log_path = workdir / "ses.log"
    log_path.touch()
    ready = multiprocessing.get_context("fork").Event()
    processes.stub = multiprocessing.get_context("fork").Process(
        target=_serve_stub,
        args=(stub_port, ready, ses_stub.Timing(latency=args.latency), str(log_path)),
        daemon=True,
    )
    processes.stub.start()
    ready.wait(timeout=10)
    stub_url = f"http://127.0.0.1:{stub_port}"
    bench_url = pg.recreate(BENCH_DB)
    setup_django(stub_url, bench_url, args.rate)
    from django.core.management import call_command

    from bench.run import migrate
    from campaigns.delivery.ratelimit import limiter_reset
    from campaigns.services import campaign_send_now

    notes: list[str] = []
    migrate(call_command, notes)
    redis.Redis.from_url(REDIS_URL).flushdb()
    limiter_reset()
    campaign, template_id, key = prepare(args.recipients)
    env = child_env(stub_url, bench_url, SEND_RATE=str(args.rate), Q_WORKERS="2", SEND_DISPATCHERS="2")
    api = Api(start_web(processes, env), key, template_id)
    start_cluster(processes, env)
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


def cleanup(processes: Processes, workdir: Path) -> None:
    processes.close()
    if processes.stub is not None:
        processes.stub.terminate()
        processes.stub.join(timeout=10)
    if "django" in sys.modules:
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
    with contextlib.suppress(Exception):
        import redis

        redis.Redis.from_url(REDIS_URL).flushdb()
    with contextlib.suppress(Exception):
        pg.drop(BENCH_DB)
    shutil.rmtree(workdir, ignore_errors=True)


def append_report(lines: list[str], details: str, command: str) -> None:
    from bench.run import machine

    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    block = ["", f"### {stamp}", "", f"- command: `{command}`", f"- machine: {machine()}", f"- {details}", "",
             "```", *lines, "```", ""]  # fmt: skip
    text = REPORT.read_text() if REPORT.exists() else "# Performance\n"
    with REPORT.open("a") as report:
        if f"\n{SECTION}" not in text:
            report.write(f"\n{SECTION}\n")
        report.write("\n".join(block))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=100_000, help="the campaign's contacts")
    parser.add_argument("--rate", type=float, default=300, help="SEND_RATE (the full rate)")
    parser.add_argument("--messages", type=int, default=20, help="single messages, idle and under load each")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between two messages")
    parser.add_argument("--warmup", type=float, default=15.0, help="seconds the campaign sends before measuring")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds SES takes for every send")
    parser.add_argument("--no-report", action="store_true", help="do not append to docs/performance.md")
    args = parser.parse_args(argv)
    command = ("python -m bench.apimessage " + shlex.join(argv if argv is not None else sys.argv[1:])).strip()
    reason = unreachable()
    if reason:
        print(f"api single message under load: skipped: needs PostgreSQL and Redis ({reason})", flush=True)
        return 0
    signal.signal(signal.SIGTERM, _raise_stopped)
    processes = Processes()
    workdir = Path(tempfile.mkdtemp(prefix="cobalt-bench-apimessage-"))
    try:
        lines, details = measure(args, workdir, processes)
    finally:
        cleanup(processes, workdir)
    print("\n".join(lines), flush=True)
    say(details)
    if not args.no_report:
        append_report(lines, details, command)
    return 0


def run() -> list[str]:
    """For ``bench.run``: the benchmark in its own process (its own Django settings: Redis, the
    stub, its database), its two lines back."""
    env = {key: value for key, value in os.environ.items() if key not in {"DATABASE_URL", "REDIS_URL", "DEBUG"}}
    completed = subprocess.run(
        [sys.executable, "-m", "bench.apimessage", "--no-report"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"bench.apimessage failed:\n{completed.stderr[-3000:]}")
    print(completed.stderr, end="", file=sys.stderr, flush=True)  # the details line
    return [line for line in completed.stdout.splitlines() if line.startswith("api single message")]


if __name__ == "__main__":
    sys.exit(main())
