"""``python -m bench.faults``: the delivery engine under faults, with real workers, counted per recipient.

Each scenario sends one campaign through real ``manage.py qcluster`` processes (Redis broker and
Redis rate limiter on their own Redis database, PostgreSQL in a throw-away database
``cobalt_bench_faults``, migrated once) to the in-process SES stub (``tests.ses_stub.StubSES``,
``record=True``: every message SES accepted, with its arrival and acceptance times), injects
its fault and prints one line: what was lost, what went out twice, whether the counters equal
the recipients' statuses, and how long the campaign (or the recovery) took. docs/reliability.md
says what each scenario does and what the words mean; the lines are appended to it.

Usage: ``python -m bench.faults [--scenario NAME ...] [--recipients N] [--limit SECONDS]
[--latency SECONDS] [--no-report]``. Scenarios: slow, slow-short, hang, db-drop, sigkill, sigterm,
limiter, limiter-flush (default: all, one after the other). PG_URL names the PostgreSQL server,
FAULTS_REDIS_URL the Redis database (default ``redis://127.0.0.1:6379/7``: it is flushed).
"""

from __future__ import annotations

import argparse
import bisect
import collections
import contextlib
import datetime
import os
import shlex
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench import pg
from bench.run import child_env, machine, migrate, new_campaign, seed
from tests.ses_stub import Received, StubSES, Timing

ROOT = Path(__file__).resolve().parent.parent
BENCH_DB = "cobalt_bench_faults"
REPORT = ROOT / "docs" / "reliability.md"
LOGS = ROOT / "var" / "faults"
REDIS_URL = os.environ.get("FAULTS_REDIS_URL", "redis://127.0.0.1:6379/7")
CLUSTER_NAME = "cobalt_bench_faults"
# Settings a scenario leaves at the project's defaults unless it names them (an outer shell's
# values must not leak into the clusters: the sigkill scenario measures the default recovery).
ENGINE_SETTINGS = (
    "SEND_RATE",
    "SEND_STALE_SECONDS",
    "SEND_THREADS",
    "SEND_BATCH_SIZE",
    "SEND_TASK_SECONDS",
    "SEND_MAX_ATTEMPTS",
    "SES_CONNECT_TIMEOUT",
    "SES_READ_TIMEOUT",
    "Q_WORKERS",
    "Q_TIMEOUT",
    "Q_RETRY",
    "RATE_LIMITER",
    "SEND_SES_API",
)
DEFAULT_READ_TIMEOUT = 15  # settings.SES_READ_TIMEOUT's default: a longer call is abandoned


class _Stopped(Exception):
    """SIGTERM or SIGINT to this harness: unwind so that every cluster it started is killed."""


def _raise_stopped(signum: int, frame) -> None:
    raise _Stopped(signal.strsignal(signum))


# --- what one run measured ---------------------------------------------------------------------


@dataclass
class Figures:
    """A campaign's outcome, counted per recipient from what SES (the stub) accepted."""

    recipients: int
    lost: int  # recipients with no accepted message
    duplicates: int  # extra accepted messages not explained by an abandoned call
    duplicate_recipients: int
    abandoned: int  # calls the client gave up on (read timeout) that SES accepted all the same
    abandoned_duplicates: int  # extra messages those abandoned calls account for
    counters: str  # "counters exact" or what differs
    statuses: dict[str, int] = field(default_factory=dict)

    def text(self) -> str:
        # Before the campaign is finished a recipient without a message is not lost, only not sent yet.
        finished = not {"queued", "sending"} & set(self.statuses)
        parts = [
            f"lost {self.lost}" if finished else f"not sent {self.lost}",
            f"duplicates {self.duplicates} ({self.duplicate_recipients} recipients)",
        ]
        if self.abandoned:
            parts.append(
                f"abandoned calls {self.abandoned} (accepted by SES after the client gave up; "
                f"{self.abandoned_duplicates} duplicates by nature)"
            )
        parts.append(self.counters)
        if set(self.statuses) - {"sent"}:
            parts.append("statuses " + ", ".join(f"{name} {count}" for name, count in sorted(self.statuses.items())))
        return ", ".join(parts)


def count_duplicates(messages: list[Received], read_timeout: float) -> tuple[int, int, int, int]:
    """(other duplicates, their recipients, abandoned calls, abandoned duplicates) per address.

    A call SES answered later than the client's read timeout was abandoned by the client and
    retried: the extra copy it causes is a duplicate by nature, counted apart from the others.
    """
    copies: collections.Counter[str] = collections.Counter()
    abandoned: collections.Counter[str] = collections.Counter()
    for message in messages:
        for address in message.destinations:
            copies[address] += 1
            if message.accepted_at - message.at >= read_timeout:
                abandoned[address] += 1
    other = other_recipients = explained = 0
    for address, count in copies.items():
        extra = count - 1
        by_nature = min(extra, abandoned[address])
        explained += by_nature
        if extra > by_nature:
            other += extra - by_nature
            other_recipients += 1
    return other, other_recipients, sum(abandoned.values()), explained


def busiest_window(times: list[float], seconds: float) -> tuple[int, float]:
    """(the most arrivals in any window of ``seconds``, when that window starts after the first
    arrival); every window that matters starts at an arrival."""
    ordered = sorted(times)
    most, start = 0, 0.0
    for index, begin in enumerate(ordered):
        count = bisect.bisect_left(ordered, begin + seconds) - index
        if count > most:
            most, start = count, begin - ordered[0]
    return most, start


def steady_rate(times: list[float]) -> float:
    """Messages per second between the 5th and 95th percentile of first arrivals (no start, no tail)."""
    ordered = sorted(times)
    if len(ordered) < 20:
        return float("nan")
    low, high = int(len(ordered) * 0.05), int(len(ordered) * 0.95)
    span = ordered[high] - ordered[low]
    return (high - low) / span if span > 0 else float("nan")


# --- processes ---------------------------------------------------------------------------------


def group_alive(pgid: int) -> int:
    """Processes of group ``pgid`` still running (zombies waiting to be reaped do not count)."""
    alive = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] not in {"Z", "X"}:
                alive += 1
    return alive


def kill_group(process: subprocess.Popen, signum: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


# --- one scenario's run ------------------------------------------------------------------------


class Run:
    """One scenario: its campaign, the clusters it starts (all killed on close) and its figures."""

    def __init__(self, *, name: str, scenario: Scenario, stub: StubSES, bench_url: str, contact_list, limit: float):
        self.name = name
        self.scenario = scenario
        self.stub = stub
        self.bench_url = bench_url
        self.contact_list = contact_list
        self.deadline = time.monotonic() + limit
        self.limit = limit
        self.processes: list[subprocess.Popen] = []
        self.campaign = None
        self.started = 0.0  # wall clock (the stub's clock) when the campaign was started

    # --- clusters

    def cluster_env(self) -> dict[str, str]:
        settings = self.scenario.settings
        env = child_env(self.stub.url, self.bench_url, REDIS_URL=REDIS_URL, Q_CLUSTER_NAME=CLUSTER_NAME)
        env["LOG_LEVEL"] = "INFO"  # the cluster logs in var/faults/ explain a bad line
        for key in ENGINE_SETTINGS:
            env.pop(key, None)
        workers = int(settings.get("Q_WORKERS", "2"))
        # Enough dispatch tasks for every worker of every cluster (they share one queue).
        env.update(SEND_DISPATCHERS=str(workers * self.scenario.clusters), **settings)
        return env

    def start_cluster(self, *, wait: bool = True) -> subprocess.Popen:
        LOGS.mkdir(parents=True, exist_ok=True)
        log = (LOGS / f"{self.name}-{len(self.processes) + 1}.log").open("w")
        process = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=ROOT,
            env=self.cluster_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the faults hit the whole cluster
        )
        log.close()
        self.processes.append(process)
        if wait:
            self.wait(lambda: cluster_ready(process.pid), until=time.monotonic() + 60)
        return process

    def close(self) -> None:
        for process in self.processes:
            kill_group(process)
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        cancel_leftovers()

    # --- the campaign

    def send(self) -> None:
        from campaigns.services import campaign_send_now
        from campaigns.snapshot import audience_snapshot

        self.campaign = new_campaign(self.contact_list, f"fault {self.name}")
        audience_snapshot(campaign_id=self.campaign.pk)
        self.started = time.time()
        campaign_send_now(campaign_id=self.campaign.pk)

    def sleep_until(self, seconds_after_start: float) -> None:
        time.sleep(max(0.0, self.started + seconds_after_start - time.time()))

    def wait(self, condition: Callable[[], bool], *, until: float | None = None, step: float = 0.2) -> bool:
        """Poll ``condition`` until it holds or the scenario's (or the given) deadline passes."""
        end = min(self.deadline, until or self.deadline)
        while True:
            if condition():
                return True
            if time.monotonic() >= end:
                return False
            time.sleep(step)

    def finished(self) -> bool:
        from campaigns.models import Campaign

        return not Campaign.objects.filter(pk=self.campaign.pk, status=Campaign.Status.SENDING).exists()

    def wait_finished(self) -> float | None:
        """Seconds (wall clock) at which the campaign left "sending", or None past the time limit."""
        return time.time() if self.wait(self.finished) else None

    def unfinished(self) -> str:
        from campaigns.models import Recipient

        statuses = self.statuses()
        queued, sending = statuses.get(Recipient.Status.QUEUED, 0), statuses.get(Recipient.Status.SENDING, 0)
        return f"NOT finished within {self.limit:.0f} s ({queued} queued, {sending} sending)"

    def settle(self) -> None:
        """Wait until the stub has answered every call it got (hung ones included), then a moment
        more for the engine to record the last answers; bounded by the scenario's time limit."""
        timing = self.scenario.timing
        longest = max(timing.slow_seconds, timing.hang_seconds, timing.latency) + 5
        self.wait(lambda: self.stub.state.accepted >= self.stub.state.calls, until=time.monotonic() + longest)
        time.sleep(1.0)

    # --- measuring

    def messages(self) -> list[Received]:
        """Accepted messages of this campaign (the stub also holds earlier scenarios' late answers)."""
        tag = b"X-SES-MESSAGE-TAGS: campaign=%d," % self.campaign.pk
        # The tag is among the first headers: no need to search the whole message.
        return [message for message in self.stub.received if message.raw.find(tag, 0, 4096) >= 0]

    def statuses(self) -> dict[str, int]:
        from django.db.models import Count

        rows = self.campaign.recipients.order_by().values_list("status").annotate(n=Count("id"))
        return {str(status): count for status, count in rows}

    def emails(self, **filters) -> set[str]:
        return set(self.campaign.recipients.filter(**filters).values_list("email", flat=True))

    def figures(self) -> Figures:
        messages = self.messages()
        recipients = self.emails()
        accepted = {address for message in messages for address in message.destinations} & recipients
        read_timeout = float(self.scenario.settings.get("SES_READ_TIMEOUT", DEFAULT_READ_TIMEOUT))
        other, other_recipients, abandoned, by_nature = count_duplicates(messages, read_timeout)
        return Figures(
            recipients=len(recipients),
            lost=len(recipients - accepted),
            duplicates=other,
            duplicate_recipients=other_recipients,
            abandoned=abandoned,
            abandoned_duplicates=by_nature,
            counters=counters_check(self.campaign.pk, len(accepted)),
            statuses=self.statuses(),
        )


def cluster_ready(pid: int) -> bool:
    """The cluster whose main process is ``pid`` reports itself idle or working in Redis."""
    from django_q.conf import Conf
    from django_q.status import Stat

    return any(stat.pid == pid and stat.status in {Conf.IDLE, Conf.WORKING} for stat in Stat.get_all())


def counters_check(campaign_id: int, accepted: int) -> str:
    """The counters against the project's own recount of the recipients' statuses (read-only),
    and ``sent`` against the recipients SES accepted a message for."""
    from stats.models import CampaignStats
    from tracking.recount import outcomes_recount

    stats = CampaignStats.objects.filter(campaign_id=campaign_id).first()
    recount = outcomes_recount(campaign_id=campaign_id)
    stored = {name: getattr(stats, name, 0) for name in recount}
    problems = [f"{name} {stored[name]} (statuses {value})" for name, value in recount.items() if stored[name] != value]
    if stored.get("sent") != accepted:
        problems.append(f"sent {stored.get('sent')} (recipients SES accepted: {accepted})")
    return "counters exact" if not problems else "counters differ: " + "; ".join(problems)


def cancel_leftovers() -> None:
    """A campaign a failed scenario left sending would be picked up by the next one's clusters."""
    from campaigns.models import Campaign, Recipient

    busy = Campaign.objects.filter(status__in=[Campaign.Status.SENDING, Campaign.Status.PAUSED])
    ids = list(busy.values_list("pk", flat=True))
    if ids:
        Recipient.objects.filter(
            campaign_id__in=ids, status__in=[Recipient.Status.QUEUED, Recipient.Status.SENDING]
        ).update(status=Recipient.Status.SKIPPED)
        busy.update(status=Campaign.Status.CANCELLED)


def fresh_redis() -> None:
    """Empty the harness's Redis database (queue, cluster stats, limiter clock) and idle the clock."""
    import redis

    from campaigns.delivery.ratelimit import limiter_reset

    redis.Redis.from_url(REDIS_URL).flushdb()
    limiter_reset()


# --- the scenarios -----------------------------------------------------------------------------


def finished_text(run: Run, finished_at: float | None) -> str:
    return f"finished in {finished_at - run.started:.0f} s" if finished_at else run.unfinished()


def run_slow(run: Run) -> str:
    """Slow calls (answered, accepted), no crash: every claim must stay with its owner."""
    run.start_cluster()
    run.send()
    finished_at = run.wait_finished()
    run.settle()
    return f"{run.figures().text()}, {finished_text(run, finished_at)}"


def run_hang(run: Run) -> str:
    """Hung calls: the others must not wait for them; the rate over the steady part vs the limit."""
    run.start_cluster()
    run.send()
    finished_at = run.wait_finished()
    run.settle()
    first: dict[str, float] = {}
    for message in sorted(run.messages(), key=lambda message: message.at):
        for address in message.destinations:
            first.setdefault(address, message.at)
    rate = steady_rate(list(first.values()))
    limit = float(run.scenario.settings["SEND_RATE"])
    return (
        f"steady rate {rate:.0f} msg/s = {100 * rate / limit:.0f}% of the limit, "
        f"{run.figures().text()}, {finished_text(run, finished_at)}"
    )


def run_db_drop(run: Run) -> str:
    """Every connection of the workers to the database is cut at +10 s."""
    from django.db import connection

    run.start_cluster()
    run.send()
    run.sleep_until(10)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        terminated = cursor.fetchone()[0]
    finished_at = run.wait_finished()
    run.settle()
    return f"{terminated} connections terminated at +10 s, {run.figures().text()}, {finished_text(run, finished_at)}"


def run_sigkill(run: Run) -> str:
    """The whole cluster dies at +8 s; a new one starts at once and must pick up the dead one's claims."""
    from campaigns.models import Recipient

    first = run.start_cluster()
    run.send()
    run.sleep_until(8)
    killed_at = time.time()
    kill_group(first)
    first.wait(timeout=10)
    in_flight = run.emails(status=Recipient.Status.SENDING)
    run.start_cluster(wait=False)

    def resent() -> float | None:
        later = [m.at for m in run.messages() if m.at > killed_at and in_flight.intersection(m.destinations)]
        return min(later, default=None)

    run.wait(lambda: not in_flight or resent() is not None)
    resent_at = resent()
    finished_at = run.wait_finished()
    run.settle()
    # Counted once every call has been answered: a call that arrived before the kill may be accepted after it.
    reached = {a for message in run.messages() if message.at <= killed_at for a in message.destinations} & in_flight
    if resent_at:
        recovered = f"recovered in {resent_at - killed_at:.0f} s (the first of them sent again)"
    else:
        recovered = "none of them sent again" if in_flight else "nothing to recover"
    done = f"finished {finished_at - killed_at:.0f} s after the kill" if finished_at else run.unfinished()
    return (
        f"{len(in_flight)} recipients in flight at the kill ({len(reached)} of them had reached SES), "
        f"{recovered}, {done}; {run.figures().text()} (allowed: at most {len(reached)})"
    )


def run_sigterm(run: Run) -> str:
    """SIGTERM to the whole process group at +8 s (systemd's stop, Ctrl-C): it must exit promptly,
    giving back its claims; a second cluster finishes the campaign without duplicates."""
    from campaigns.models import Recipient

    first = run.start_cluster()
    run.send()
    run.sleep_until(8)
    signalled = time.monotonic()
    kill_group(first, signal.SIGTERM)
    exited = run.wait(lambda: first.poll() is not None and not group_alive(first.pid), until=signalled + 90, step=0.05)
    stopped = time.monotonic() - signalled
    if not exited:
        kill_group(first)
        first.wait(timeout=10)
    sending = run.campaign.recipients.filter(status=Recipient.Status.SENDING).count()
    exit_text = (
        f"every process exited {stopped:.1f} s after the signal"
        if exited
        else f"still running after {stopped:.0f} s (SIGKILLed)"
    )
    restarted = time.time()
    run.deadline = time.monotonic() + run.limit  # the second cluster gets the whole time limit
    run.start_cluster(wait=False)
    finished_at = run.wait_finished()
    run.settle()
    done = f"finished {finished_at - restarted:.0f} s after it started" if finished_at else run.unfinished()
    return f"{exit_text}, {sending} rows left 'sending'; second cluster {done}; {run.figures().text()}"


def run_limiter(run: Run, *, flush_at: float | None = None) -> str:
    """Two clusters share one Redis limiter: the busiest 1-s and 10-s windows of SES arrivals."""
    import redis

    for _ in range(run.scenario.clusters):
        run.start_cluster()
    run.send()
    if flush_at is not None:
        run.sleep_until(flush_at)
        redis.Redis.from_url(REDIS_URL).flushdb()
    finished_at = run.wait_finished()
    run.settle()
    times = sorted(message.at for message in run.messages())
    rate = float(run.scenario.settings["SEND_RATE"])
    first_second = bisect.bisect_left(times, times[0] + 1.0) if times else 0
    (one, one_at), (ten, ten_at) = busiest_window(times, 1.0), busiest_window(times, 10.0)
    ten_text = (
        f"{ten} ({100 * (ten / (rate * 10) - 1):+.1f}%, at +{ten_at:.0f} s)"
        if times and times[-1] - times[0] >= 10
        else "n/a (shorter run)"
    )
    return (
        f"first second {first_second} messages, busiest 1-s window {one} ({100 * (one / rate - 1):+.1f}%, "
        f"at +{one_at:.1f} s), busiest 10-s window {ten_text}; {run.figures().text()}, "
        f"{finished_text(run, finished_at)}"
    )


@dataclass(frozen=True)
class Scenario:
    title: str
    recipients: int
    settings: dict[str, str]
    timing: Timing
    body: Callable[[Run], str]
    clusters: int = 1
    fault: str = ""  # the fault, as shown in the line's parentheses

    def heading(self, recipients: int) -> str:
        shown = ", ".join(f"{key}={value}" for key, value in self.settings.items())
        clusters = (
            f"{self.clusters} clusters x {self.settings.get('Q_WORKERS', '2')} workers, " if self.clusters > 1 else ""
        )
        fault = f"{self.fault}, " if self.fault else ""
        return f"fault: {self.title} ({recipients} recipients, {fault}{clusters}{shown})"


def scenarios(latency: float) -> dict[str, Scenario]:
    ses_like = Timing(latency=latency)
    return {
        "slow": Scenario(
            "slow calls past SEND_STALE_SECONDS",
            600,
            {"SEND_STALE_SECONDS": "60", "SES_READ_TIMEOUT": "30", "Q_WORKERS": "4", "SEND_RATE": "150"},
            Timing(latency=latency, slow_fraction=0.10, slow_seconds=20),
            run_slow,
            fault="10% answer after 20 s",
        ),
        "slow-short": Scenario(
            "slow calls past a short SEND_STALE_SECONDS",
            1000,
            {"SEND_STALE_SECONDS": "10", "SES_READ_TIMEOUT": "30", "Q_WORKERS": "4", "SEND_RATE": "150"},
            Timing(latency=latency, slow_fraction=0.05, slow_seconds=25),
            run_slow,
            fault="5% answer after 25 s",
        ),
        "hang": Scenario(
            "hung calls",
            3000,
            {"Q_WORKERS": "4", "SEND_RATE": "150"},
            Timing(latency=latency, hang_fraction=0.02, hang_seconds=40),
            run_hang,
            fault="2% hang 40 s, default SES timeouts",
        ),
        "db-drop": Scenario(
            "database connections dropped",
            1500,
            {"Q_WORKERS": "2", "SEND_RATE": "100"},
            ses_like,
            run_db_drop,
            fault="pg_terminate_backend at +10 s",
        ),
        "sigkill": Scenario(
            "SIGKILL of the whole cluster",
            2000,
            {"Q_WORKERS": "2", "SEND_RATE": "100"},
            ses_like,
            run_sigkill,
            fault="at +8 s, a new cluster at once, default SEND_STALE_SECONDS",
        ),
        "sigterm": Scenario(
            "SIGTERM to the cluster's process group",
            2000,
            {"Q_WORKERS": "2", "SEND_RATE": "100"},
            ses_like,
            run_sigterm,
            fault="at +8 s, then a second cluster",
        ),
        "limiter": Scenario(
            "shared rate limiter",
            3000,
            {"Q_WORKERS": "2", "SEND_RATE": "100"},
            ses_like,
            run_limiter,
            clusters=2,
        ),
        "limiter-flush": Scenario(
            "shared rate limiter, Redis flushed mid-run",
            3000,
            {"Q_WORKERS": "2", "SEND_RATE": "100"},
            ses_like,
            lambda run: run_limiter(run, flush_at=10.0),
            clusters=2,
            fault="FLUSHDB at +10 s",
        ),
    }


# --- main --------------------------------------------------------------------------------------


def run_scenario(name: str, scenario: Scenario, *, stub: StubSES, bench_url: str, contact_list, limit: float) -> str:
    heading = scenario.heading(contact_list.subscriptions.count())
    stub.set_timing(**vars(scenario.timing))
    stub.reset()
    fresh_redis()
    run = Run(name=name, scenario=scenario, stub=stub, bench_url=bench_url, contact_list=contact_list, limit=limit)
    try:
        figures = scenario.body(run)
        # Rates and windows depend on spare CPU: the two cores may be shared with other work.
        return f"{heading}: {figures}; load average {os.getloadavg()[0]:.1f}"
    except _Stopped:
        raise
    except Exception as error:  # one broken scenario must not lose the others' figures
        traceback.print_exc()
        return f"{heading}: FAILED: {type(error).__name__}: {error} (cluster logs: var/faults/{name}-*.log)"
    finally:
        run.close()
        stub.set_timing()


def append_report(lines: list[str], command: str) -> None:
    """The same block as bench.run's report (date, command, machine, the lines), under "Results"."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    block = [f"\n### {stamp}\n", f"- command: `{command}`", f"- machine: {machine()}", "", "```", *lines, "```", ""]
    with REPORT.open("a") as report:
        report.write("\n".join(block))


def setup_django(bench_url: str, stub_url: str) -> None:
    for key in ENGINE_SETTINGS:
        os.environ.pop(key, None)
    os.environ.update(child_env(stub_url, bench_url, REDIS_URL=REDIS_URL, Q_CLUSTER_NAME=CLUSTER_NAME))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cobalt_mail.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", action="append", help="run only this scenario (repeatable)")
    parser.add_argument("--recipients", type=int, help="recipients for every scenario (default: each its own)")
    parser.add_argument("--limit", type=float, default=180, help="seconds a scenario may take before it is stopped")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds SES takes for every send (SES: 0.03-0.15)")
    parser.add_argument("--no-report", action="store_true", help="do not append to docs/reliability.md")
    args = parser.parse_args(argv)
    command = ("python -m bench.faults " + shlex.join(argv if argv is not None else sys.argv[1:])).strip()
    chosen = scenarios(args.latency)
    unknown = set(args.scenario or ()) - set(chosen)
    if unknown:
        parser.error(f"unknown scenario {', '.join(sorted(unknown))}; choose from {', '.join(chosen)}")
    chosen = {name: chosen[name] for name in (args.scenario or chosen)}
    sizes = {name: args.recipients or scenario.recipients for name, scenario in chosen.items()}

    signal.signal(signal.SIGTERM, _raise_stopped)
    lines: list[str] = []
    with StubSES(record=True) as stub:
        # A killed cluster resets its connections to the stub: expected here, not worth a traceback.
        stub.server.handle_error = lambda request, client_address: None
        bench_url = pg.recreate(BENCH_DB)
        try:
            setup_django(bench_url, stub.url)
            from django.core.management import call_command

            migrate(call_command, lines)
            lists = seed(max(sizes.values()), {f"list-{size}": size for size in set(sizes.values())})
            for name, scenario in chosen.items():
                line = run_scenario(
                    name,
                    scenario,
                    stub=stub,
                    bench_url=bench_url,
                    contact_list=lists[f"list-{sizes[name]}"],
                    limit=args.limit,
                )
                print(line, flush=True)
                lines.append(line)
        finally:
            from django.db import connections

            connections.close_all()
            with contextlib.suppress(Exception):
                import redis

                redis.Redis.from_url(REDIS_URL).flushdb()
            pg.drop(BENCH_DB)
    if not args.no_report:
        append_report(lines, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
