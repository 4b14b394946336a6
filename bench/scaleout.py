"""``python -m bench.scaleout``: one big campaign through three clusters and two web processes, one cluster killed.

Everything on loopback, as a small production would run it:

- PostgreSQL: a throw-away database ``cobalt_bench_scaleout`` (created, migrated, dropped);
- Redis (``SCALEOUT_REDIS_URL``, default ``redis://127.0.0.1:6379/8``: it is **flushed**) as the
  django-q2 broker and the rate limiter's clock;
- SES: the fast stub of ``tests/ses_stub.py`` in its own process, answering every send after
  ``--latency`` seconds and logging every message it accepted (arrival time, message id, address);
- three separate ``manage.py qcluster`` clusters (each its own process group, ``Q_WORKERS=2``,
  ``SEND_DISPATCHERS`` = all their workers, ``SEND_RATE=500``);
- two web processes (gunicorn, one worker each, two ports) receiving the SES events: the stub's log
  is read as it grows, each accepted message's events are planned by the local SES event simulator
  (``tracking.simulator.plan_events``: send, delivery or bounce, opens, clicks, rare complaints) and
  posted as signed SNS notifications (SignatureVersion 2, certificate served on loopback), the
  notifications alternating between the two ports.

A campaign of ``--recipients`` (50,000) is sent; when SES has accepted half of them, one cluster's
whole process group gets SIGKILL. Once the campaign has finished and every event is posted, it prints
one line (and appends it, with the date, the machine and the command, to docs/performance.md under
"Scale-out"):

``scale-out: 3 clusters (1 killed), 2 web: N sent, D duplicates, L lost, max 10-s window W msg/s
(limit 500), counters exact|wrong``

N: recipients SES accepted at least one message for; D: messages beyond one per recipient; L:
recipients SES never got a message for and that the engine did not fail for good; W: the most SES
arrivals in any 10-s window, divided by 10; counters exact: ``manage.py tracking_recount
--campaign ID`` (no ``--fix``: it only reports) finds nothing to fix **and** the campaign's
``CampaignStats`` equal counts made here straight from the recipients and events tables **and**
``sent`` equals N. Details (messages in flight at the kill, events posted, timings) go to stderr;
the clusters' and web processes' logs stay in ``var/scaleout/``.

Without PostgreSQL (``PG_URL``) or Redis it prints "scale-out: skipped: needs PostgreSQL and Redis"
and exits 0 (``make bench`` runs it after ``bench.run``). Every process it started is killed and the
database dropped on the way out, also on Ctrl-C, SIGTERM or a failure.
"""

from __future__ import annotations

import argparse
import bisect
import collections
import datetime
import functools
import heapq
import http.client
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench import harness
from bench.harness import ROOT, Processes, wait

LOOPBACK = harness.Loopback(
    name="scaleout",
    redis_url=os.environ.get("SCALEOUT_REDIS_URL", "redis://127.0.0.1:6379/8"),
    label="scale-out",
    section="## Scale-out (`python -m bench.scaleout`, also run by `make bench`)",
)
TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:cobalt-bench-scaleout"
MACHINE = "2 cores, 24 GiB"
CLUSTERS = 3
WEB_PROCESSES = 2
POST_RETRIES = 5  # a notification the webhook answers 5xx is posted again this many times
KILLED = 1  # index of the cluster that gets SIGKILL


def say(text: str) -> None:
    print(f"scale-out: {text}", file=sys.stderr, flush=True)


# --- processes ---------------------------------------------------------------------------------


class ScaleoutProcesses(Processes):
    """The harness's processes, and this run's in-process helpers: the certificate server, the feeder."""

    def __init__(self) -> None:
        super().__init__()
        self.cert_server = None
        self.feeder: EventFeeder | None = None
        self.details = ""

    def close(self) -> None:
        if self.feeder is not None:
            self.feeder.stop.set()  # no retrying against web processes about to be killed
        super().close()

    def stop_helpers(self) -> None:
        if self.feeder is not None:
            self.feeder.close()
        if self.cert_server is not None:
            self.cert_server.stop()
        super().stop_helpers()


# --- SES events: the simulator's notifications, posted to the two web processes ----------------


class EventFeeder:
    """Reads the stub's log as it grows; posts each accepted message's SES events, signed, when due.

    One message's notifications are posted in order by one lane (a thread with its own keep-alive
    connection to each web process); notifications alternate between the web processes.
    """

    def __init__(self, *, log_path: Path, recipients: dict[str, int], campaign_id: int, ports: list[int],
                 identity, cert_url: str, lanes: int = 8, time_scale: float = 0.01) -> None:  # fmt: skip
        from tracking.simulator import Rates

        self.log_path = log_path
        self.recipients = recipients
        self.campaign_id = campaign_id
        self.ports = ports
        self.identity = identity
        self.cert_url = cert_url
        self.time_scale = time_scale
        # Complaints and bounces below the auto-pause guard (0.1% / 5%): a paused campaign would not finish.
        self.rates = Rates(bounce_rate=0.01, soft_bounce_rate=0.01, complaint_rate=0.0002, open_rate=0.35,
                           click_rate=0.08)  # fmt: skip
        self.arrivals: list[tuple[float, str]] = []  # (arrival at SES, address), in log order
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.queues: list[list] = [[] for _ in range(lanes)]
        self.conditions = [threading.Condition() for _ in range(lanes)]
        self.sequence = itertools.count()
        self.statuses: collections.Counter[str] = collections.Counter()
        self.pending = 0
        self.threads = [threading.Thread(target=self._read, daemon=True)]
        self.threads += [threading.Thread(target=self._lane, args=(lane,), daemon=True) for lane in range(lanes)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def close(self) -> None:
        self.stop.set()
        for condition in self.conditions:
            with condition:
                condition.notify_all()
        for thread in self.threads:
            thread.join(timeout=10)

    def received(self) -> int:
        with self.lock:
            return len(self.arrivals)

    def drained(self) -> bool:
        with self.lock:
            return self.pending == 0

    # reading

    def _read(self) -> None:
        with self.log_path.open() as log:
            buffer = ""
            while not self.stop.is_set():
                chunk = log.read()
                if not chunk:
                    time.sleep(0.05)
                    continue
                buffer += chunk
                *lines, buffer = buffer.split("\n")
                for line in lines:
                    self._plan(line)

    def _plan(self, line: str) -> None:
        from tracking.simulator import plan_events

        arrived, accepted, message_id, addresses = line.split("\t")
        address = addresses.split(",")[0]
        recipient_id = self.recipients.get(address)
        with self.lock:
            self.arrivals.append((float(arrived), address))
        if recipient_id is None:
            return
        headers = (
            f"To: {address}\r\nSubject: Autumn news\r\nX-SES-CONFIGURATION-SET: cobalt-mail\r\n"
            f"X-SES-MESSAGE-TAGS: campaign={self.campaign_id}, recipient={recipient_id}\r\n"
            'Content-Type: text/html; charset="utf-8"\r\n\r\n<a href="https://example.com/news">Read more</a>'
        )
        message = {"id": message_id, "source": "news@cobalt.example", "raw_data": headers,
                   "destinations": {"ToAddresses": [address]}}  # fmt: skip
        sent_at = datetime.datetime.fromtimestamp(float(accepted), datetime.UTC)
        events = plan_events(message, rates=self.rates, seed=1, sent_at=sent_at, time_scale=self.time_scale)
        lane = hash(message_id) % len(self.queues)
        with self.lock:
            self.pending += len(events)
        with self.conditions[lane]:
            for delay, record in events:
                heapq.heappush(self.queues[lane], (float(accepted) + delay, next(self.sequence), record))
            self.conditions[lane].notify()

    # posting

    def _lane(self, lane: int) -> None:
        queue, condition = self.queues[lane], self.conditions[lane]
        connections: dict[int, http.client.HTTPConnection] = {}
        while not self.stop.is_set():
            with condition:
                while not self.stop.is_set() and (not queue or queue[0][0] > time.time()):
                    condition.wait(timeout=max(0.005, queue[0][0] - time.time()) if queue else 0.5)
                if self.stop.is_set():
                    break
                _due, number, record = heapq.heappop(queue)
            self._post(connections, self.ports[number % len(self.ports)], record)
            with self.lock:
                self.pending -= 1
        for connection in connections.values():
            connection.close()

    def _post(self, connections: dict, port: int, record: dict) -> None:
        from tracking.simulator import not_after

        envelope = self.identity.notification(
            not_after(record, datetime.datetime.now(datetime.UTC)), topic_arn=TOPIC_ARN, cert_url=self.cert_url
        )
        body = json.dumps(envelope).encode()
        headers = {"Content-Type": "text/plain; charset=UTF-8", "x-amz-sns-message-type": "Notification"}
        failures = 0
        while not self.stop.is_set():  # SNS retries an unreachable endpoint or a 5xx; so does this
            connection = connections.get(port) or http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            connections[port] = connection
            try:
                connection.request("POST", "/tracking/ses/", body, headers)
                response = connection.getresponse()
                response.read()
            except (http.client.HTTPException, OSError):
                connection.close()
                connections.pop(port, None)
                time.sleep(0.2)
                continue
            if response.status >= 500 and failures < POST_RETRIES:
                failures += 1
                time.sleep(0.2 * failures)
                continue
            with self.lock:  # a 5xx after every retry: SNS would give up on it too, in the end
                self.statuses[f"{response.status}"] += 1
            return


class AcceptedCount:
    """Messages the stub has accepted so far: lines in its log, counted as the file grows."""

    def __init__(self, log_path: Path) -> None:
        self.log = log_path.open("rb")
        self.lines = 0

    def __call__(self) -> int:
        self.lines += self.log.read().count(b"\n")
        return self.lines


# --- measuring ---------------------------------------------------------------------------------


def busiest_window(times: list[float], seconds: float) -> int:
    """The most arrivals in any window of ``seconds`` (every window that matters starts at one)."""
    ordered = sorted(times)
    return max((bisect.bisect_left(ordered, begin + seconds) - index for index, begin in enumerate(ordered)), default=0)


def table_counts(campaign_id: int) -> dict[str, int]:
    """The campaign's figures counted here, straight from the recipients and events tables."""
    from django.db.models import Count, Q

    from campaigns.models import Recipient
    from tracking.models import Event

    statuses = dict(
        Recipient.objects.filter(campaign_id=campaign_id).order_by().values_list("status").annotate(n=Count("id"))
    )
    events = Event.objects.filter(campaign_id=campaign_id)

    def distinct(condition: Q) -> Count:
        return Count("recipient", filter=condition, distinct=True)

    opens, clicks, bounces = Q(event_type="open"), Q(event_type="click"), Q(event_type="bounce")
    counts = events.aggregate(
        delivered=distinct(Q(event_type="delivery")),
        bounced_hard=distinct(bounces & Q(bounce_type="Permanent")),
        bounced_soft=distinct(bounces & ~Q(bounce_type="Permanent")),
        complained=distinct(Q(event_type="complaint")),
        opens=Count("id", filter=opens),
        unique_opens=distinct(opens),
        clicks=Count("id", filter=clicks),
        unique_clicks=distinct(clicks),
    )
    counts.update(sent=statuses.get("sent", 0), failed=statuses.get("failed", 0), skipped=statuses.get("skipped", 0))
    return counts


def counters_verdict(campaign_id: int, reached: int, env: dict[str, str]) -> tuple[bool, list[str]]:
    """(exact?, what differs): tracking_recount's dry run, the stored counters vs the tables, sent vs SES."""
    from stats.models import CampaignStats

    problems = []
    recount = subprocess.run(
        [sys.executable, "manage.py", "tracking_recount", "--campaign", str(campaign_id)],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    if recount.returncode != 0:
        problems.append(f"tracking_recount: {(recount.stdout + recount.stderr).strip()[-500:]}")
    stats = CampaignStats.objects.get(campaign_id=campaign_id)
    for name, counted in table_counts(campaign_id).items():
        if getattr(stats, name) != counted:
            problems.append(f"{name} stored {getattr(stats, name)}, tables {counted}")
    if stats.sent != reached:
        problems.append(f"sent stored {stats.sent}, recipients SES accepted {reached}")
    return not problems, problems


# --- the run -----------------------------------------------------------------------------------


def measure(args: argparse.Namespace, workdir: Path, processes: ScaleoutProcesses) -> str:
    """Set everything up, send, kill, wait, measure; returns the line."""
    log_path = workdir / "ses.log"
    stub_url = harness.start_stub(processes, log_path, args.latency)
    bench_url, notes = LOOPBACK.setup_django(stub_url)
    from django.db.models import Count

    from bench.run import new_campaign, seed
    from campaigns.models import Campaign, Recipient
    from campaigns.services import campaign_send_now
    from campaigns.snapshot import audience_snapshot
    from tracking.simulator import CertificateServer, SigningIdentity

    contact_list = seed(args.recipients, {"scale-out": args.recipients})["scale-out"]
    campaign = new_campaign(contact_list, "scale-out")
    audience_snapshot(campaign_id=campaign.pk)
    recipients = dict(campaign.recipients.values_list("email", "id"))

    identity = SigningIdentity(workdir / "sns")
    cert_server = CertificateServer(identity)
    processes.cert_server = cert_server
    web_env = LOOPBACK.child_env(stub_url, bench_url, DJANGO_SETTINGS_MODULE="bench.settings_webhook", DEBUG="0",
                                 BENCH_CERT_URL=cert_server.url, SNS_TOPIC_ARNS=TOPIC_ARN,
                                 SEND_RATE=str(args.rate))  # fmt: skip
    web_names = [f"web-{number}" for number in range(1, WEB_PROCESSES + 1)]
    ports = harness.start_web(processes, web_env, web_names, args.web_threads)
    workers = 2
    cluster_env = LOOPBACK.child_env(stub_url, bench_url, SEND_RATE=str(args.rate), Q_WORKERS=str(workers),
                                     SEND_DISPATCHERS=str(workers * CLUSTERS), LOG_LEVEL="INFO")  # fmt: skip
    cluster_names = [f"cluster-{number}" for number in range(1, CLUSTERS + 1)]
    clusters = harness.start_clusters(processes, cluster_env, cluster_names)
    feeder = EventFeeder(log_path=log_path, recipients=recipients, campaign_id=campaign.pk, ports=ports,
                         identity=identity, cert_url=cert_server.cert_url, lanes=args.lanes)  # fmt: skip
    processes.feeder = feeder
    feeder.start()
    say(f"{len(recipients)} recipients, {CLUSTERS} clusters x {workers} workers, web on ports {ports}; sending")

    started = time.time()
    campaign_send_now(campaign_id=campaign.pk)
    accepted = AcceptedCount(log_path)  # the log itself: the feeder's reading may lag on a busy machine
    if not wait(lambda: accepted() >= len(recipients) // 2, timeout=args.limit, step=0.05):
        raise RuntimeError(f"SES had not received half the campaign within {args.limit:.0f} s")
    killed_at = time.time()
    Processes.kill(clusters[KILLED])
    in_flight = set(campaign.recipients.filter(status=Recipient.Status.SENDING).values_list("email", flat=True))
    say(f"cluster {KILLED + 1} killed at +{killed_at - started:.0f} s: {len(in_flight)} recipients in flight")

    def finished() -> bool:
        return not Campaign.objects.filter(pk=campaign.pk, status=Campaign.Status.SENDING).exists()

    if not wait(finished, timeout=args.limit, step=0.5):
        statuses = dict(campaign.recipients.order_by().values_list("status").annotate(n=Count("id")))
        raise RuntimeError(f"the campaign did not finish within {args.limit:.0f} s: {statuses}")
    finished_at = time.time()
    # Calls still at the stub are answered and logged; then every event is posted.
    last = [-1, time.monotonic()]

    def quiet() -> bool:
        count = feeder.received()
        if count != last[0]:
            last[:] = [count, time.monotonic()]
        return time.monotonic() - last[1] > 2 and feeder.drained()

    if not wait(quiet, timeout=args.limit, step=0.2):
        raise RuntimeError(f"events still being posted {args.limit:.0f} s after the campaign finished")
    drained_at = time.time()

    arrivals = list(feeder.arrivals)
    copies = collections.Counter(address for _at, address in arrivals if address in recipients)
    reached = set(copies)
    before_kill = {address for at, address in arrivals if at <= killed_at} & in_flight
    failed = set(campaign.recipients.filter(status=Recipient.Status.FAILED).values_list("email", flat=True))
    # Claimed more than once: the dead cluster's claims, requeued (the stub never refuses a send).
    reclaimed = set(campaign.recipients.filter(attempts__gt=1).values_list("email", flat=True))
    twice = {address for address, count in copies.items() if count > 1}
    explained = "yes" if twice <= reclaimed & before_kill else "NO"
    sent, duplicates = len(reached), sum(count - 1 for count in copies.values())
    lost = len(set(recipients) - reached - failed)
    window = busiest_window([at for at, _address in arrivals], 10.0) / 10
    exact, problems = counters_verdict(campaign.pk, sent, cluster_env)
    say(f"finished +{finished_at - started:.0f} s, events posted by +{drained_at - started:.0f} s "
        f"(answers {dict(feeder.statuses)}); in flight at the kill {len(in_flight)}, of which SES had "
        f"{len(before_kill)}; failed for good {len(failed)}; load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    for problem in problems:
        say(f"counters: {problem}")
    for address in sorted(twice - (reclaimed & before_kill))[:10]:  # what explains them, if anything
        offsets = ", ".join(f"{at - killed_at:+.2f} s" for at, other in arrivals if other == address)
        attempts = campaign.recipients.get(email=address).attempts
        say(f"duplicate not explained by the kill: {address}, {attempts} claims, at SES at {offsets} from the kill")
    say(f"{len(reclaimed)} recipients claimed again after the kill, {len(reclaimed & before_kill)} of them "
        f"already at SES; every duplicate among those: {explained}")  # fmt: skip
    for note in notes:
        say(note)
    processes.details = (
        f"{len(in_flight)} recipients in flight at the kill (+{killed_at - started:.0f} s), {len(before_kill)} of "
        f"them already at SES; {len(reclaimed)} claimed again after the kill, {len(reclaimed & before_kill)} of "
        f"them already at SES; every duplicate among those: {explained}; "
        f"campaign finished in {finished_at - started:.0f} s, every event posted by "
        f"+{drained_at - started:.0f} s (webhook answers {dict(feeder.statuses)}); "
        f"failed for good {len(failed)}; load average {os.getloadavg()[0]:.1f}"
    )
    return (
        f"scale-out: {CLUSTERS} clusters (1 killed), {WEB_PROCESSES} web: {sent} sent, {duplicates} duplicates, "
        f"{lost} lost, max 10-s window {window:.1f} msg/s (limit {args.rate:g}), "
        f"counters {'exact' if exact else 'wrong'}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = harness.argument_parser(__doc__)
    parser.add_argument("--recipients", type=int, default=50000)
    parser.add_argument("--rate", type=float, default=500, help="SEND_RATE for every cluster")
    parser.add_argument("--web-threads", type=int, default=8, help="gunicorn threads per web process")
    parser.add_argument("--lanes", type=int, default=8, help="concurrent SNS posts")
    parser.add_argument("--limit", type=float, default=900, help="seconds each phase may take")
    args = harness.arguments(parser, argv, latency=True)
    processes = ScaleoutProcesses()
    line = LOOPBACK.run(functools.partial(measure, args), processes)
    if line is None:
        return 0
    print(line, flush=True)
    if not args.no_report:
        command = harness.command_line("bench.scaleout", argv)
        harness.append_report(LOOPBACK.section, [line], command, details=processes.details, machine=MACHINE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
