"""``python -m bench.fairshare``: a club's small campaign beside the national body's large one.

Issue #15: when several organisations send at once, the send rate is shared between them
(``campaigns/delivery/shares.py``), so a club's 1,000-recipient campaign takes about twice as long
beside a 100,000-recipient one as alone (an equal split of the rate: 2.0x; target at most 2.2x),
and the large campaign is back at the full rate within 2 s of the small one finishing. Everything on
loopback, as ``bench.apimessage`` runs it:

- PostgreSQL: a throw-away database ``cobalt_bench_fairshare`` (created, migrated, dropped);
- Redis (``FAIRSHARE_REDIS_URL``, default ``redis://127.0.0.1:6379/10``: it is **flushed**) as the
  django-q2 broker and the rate limiter's clocks;
- SES: the fast stub of ``tests/ses_stub.py`` in its own process, answering every send after
  ``--latency`` seconds and logging every message it accepted with its arrival time;
- ``--clusters`` ``manage.py qcluster`` processes of ``--workers`` workers (``SEND_DISPATCHERS=2``,
  ``SEND_RATE=--rate``): enough workers for both campaigns' dispatchers at once.

Two organisations: the installation's first (the national body) with ``--large`` contacts in one
list, and a club with two lists of ``--small`` contacts (one for the run alone, one for the run
beside: their addresses tell the two apart in the SES log). The campaigns are started with
``campaign_send_now`` from this process, as the "Send now" button does.

1. Alone: the club's campaign with nothing else sending, until it has finished.
2. The large campaign starts; ``--warmup`` seconds after SES got its first message (its rate over
   the last ``WARMUP_WINDOW`` seconds says whether it reached the limit alone), the club's second
   campaign starts, and runs until it has finished; then ``AFTER_SECONDS`` more.

A small campaign's duration is from ``campaign_send_now`` to its last recipient's ``sent_at``
(written just after SES answered); the details also give first to last ``sent_at``. Rates are
counted at SES (the stub's log, per message). While both send: each campaign's rate over the middle
of the small one's sending (its 10th to 90th percentile of arrivals at SES). The large one's
recovery: its rate in a rolling 1-s window (moved in 50-ms steps) after the small one's last
``sent_at`` (E): the first window at 95 % of the limit must end within 2 s of E; the details also
give the window ending at E + 2 s, the lowest window ending in [E + 2 s, E + 4 s], and the rate over
[E + 2 s, E + 4 s]. The large campaign is not left to finish: the processes are killed and the database dropped.

Prints (``make bench`` runs it through ``bench.run``)::

    fair share: 1,000 recipients beside a 100,000-recipient campaign: <X> s (alone: <Y> s): <R>x
    fair share: the large campaign back at <N> msg/s of <L> within 2 s of the small one finishing

and, unless ``--no-report``, appends them with the details to docs/performance.md. Without
PostgreSQL or Redis it prints "fair share: skipped: …" and exits 0.
"""

from __future__ import annotations

import argparse
import bisect
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench import harness
from bench.harness import Processes, wait

LOOPBACK = harness.Loopback(
    name="fairshare",
    redis_url=os.environ.get("FAIRSHARE_REDIS_URL", "redis://127.0.0.1:6379/10"),
    label="fair share",
    section="## Fair share of the send rate (`python -m bench.fairshare`, also run by `make bench`): issue #15",
)
TARGET_RATIO = 2.2
RECOVERY_SECONDS = 2.0
FULL_RATE = 0.95  # "at the full rate": at least this fraction of the limit in a 1-s window
WARMUP_WINDOW = 5.0  # seconds before the small campaign starts over which the large one's rate is read
AFTER_SECONDS = 5.0  # seconds the large campaign keeps sending after the small one's end, measured
# Address prefixes of each campaign's recipients: the stub logs addresses, not campaigns.
LARGE, ALONE, BESIDE = "bench", "alone-", "beside-"


def say(text: str) -> None:
    print(f"fair share: {text}", file=sys.stderr, flush=True)


# --- the SES log -------------------------------------------------------------------------------


class Arrivals:
    """The stub's log, read as it grows: when SES got each campaign's messages (by address prefix)."""

    def __init__(self, path: Path) -> None:
        self.log = harness.StubLog(path)
        self.times: dict[str, list[float]] = {LARGE: [], ALONE: [], BESIDE: []}

    def read(self) -> Arrivals:
        for arrived, addresses in self.log.arrivals():
            for address in addresses:
                prefix = next((prefix for prefix in self.times if address.startswith(prefix)), None)
                if prefix is not None:
                    self.times[prefix].append(arrived)
        for times in self.times.values():
            times.sort()
        return self

    def count(self, prefix: str, start: float, end: float) -> int:
        times = self.times[prefix]
        return bisect.bisect_left(times, end) - bisect.bisect_left(times, start)

    def rate(self, prefix: str, start: float, end: float) -> float:
        return self.count(prefix, start, end) / (end - start)


# --- data --------------------------------------------------------------------------------------


@dataclass
class Campaigns:
    large: int
    alone: int
    beside: int


def club_campaign(club, size: int, prefix: str, name: str) -> int:
    """A club campaign to its own list of ``size`` new contacts (``prefix``N@example.net)."""
    from audiences.models import Contact, ContactList, Subscription
    from bench.run import HTML, SUBJECT
    from campaigns.models import Campaign

    contact_list = ContactList.objects.create(organisation=club, name=name)
    contacts = Contact.objects.bulk_create(
        Contact(organisation=club, email=f"{prefix}{number}@example.net", first_name=f"Member{number}")
        for number in range(size)
    )
    Subscription.objects.bulk_create(Subscription(contact=contact, contact_list=contact_list) for contact in contacts)
    campaign = Campaign.objects.create(
        organisation=club, name=name, subject=SUBJECT, from_email='"Riverside Rowing" <news@cobalt.example>',
        html_body=HTML,
    )  # fmt: skip
    campaign.include_lists.add(contact_list)
    return campaign.pk


def prepare(large: int, small: int) -> Campaigns:
    """The national body's campaign (audience frozen) and the club's two; their ids."""
    from bench.run import new_campaign, seed
    from campaigns.snapshot import audience_snapshot
    from organisations.models import Organisation

    started = time.perf_counter()
    # Seeded while the national body is the only organisation: the seed's rows take it by default.
    contact_list = seed(large, {"national": large})["national"]
    campaign = new_campaign(contact_list, "National newsletter")
    audience_snapshot(campaign_id=campaign.pk)  # the small ones freeze theirs when started, as usual
    Organisation.objects.filter(pk=campaign.organisation_id).update(name="National body")
    club = Organisation.objects.create(name="Riverside Rowing Club", slug="riverside-rowing")
    alone = club_campaign(club, small, ALONE, "Club news (alone)")
    beside = club_campaign(club, small, BESIDE, "Club news (beside)")
    say(f"{large:,} + 2 x {small:,} contacts seeded in {time.perf_counter() - started:.1f} s")
    return Campaigns(large=campaign.pk, alone=alone, beside=beside)


# --- the measurements --------------------------------------------------------------------------


@dataclass
class SmallRun:
    started: float  # just before campaign_send_now
    sent_at: list[float]  # every recipient's sent_at, sorted

    @property
    def total(self) -> float:
        """From "send now" to the last recipient's sent_at: what the club sees."""
        return self.sent_at[-1] - self.started

    @property
    def span(self) -> float:
        """First to last sent_at."""
        return self.sent_at[-1] - self.sent_at[0]


def send_small(campaign_id: int, size: int, timeout: float) -> SmallRun:
    """Start the campaign, wait until every recipient is sent; its times."""
    from campaigns.models import Campaign, Recipient
    from campaigns.services import campaign_send_now

    started = time.time()
    campaign_send_now(campaign_id=campaign_id)

    def finished() -> bool:
        return Campaign.objects.filter(pk=campaign_id, status=Campaign.Status.SENT).exists()

    if not wait(finished, timeout=timeout, step=0.1):
        raise RuntimeError(f"campaign {campaign_id} did not finish within {timeout:g} s")
    sent = Recipient.objects.filter(campaign_id=campaign_id, status=Recipient.Status.SENT)
    times = sorted(value.timestamp() for value in sent.values_list("sent_at", flat=True))
    if len(times) != size:
        raise RuntimeError(f"campaign {campaign_id} finished with {len(times)} of {size} recipients sent")
    return SmallRun(started, times)


def rolling(ses: Arrivals, prefix: str, start: float, end: float, step: float = 0.05) -> list[tuple[float, float]]:
    """(window end, msg/s in the 1-s window ending there) every ``step`` s from ``start`` to ``end``."""
    points, at = [], start
    while at <= end + 1e-9:
        points.append((at, float(ses.count(prefix, at - 1.0, at))))
        at += step
    return points


@dataclass
class Figures:
    alone: SmallRun
    beside: SmallRun
    large_alone_rate: float  # the large campaign's rate at SES before the small one started
    both: tuple[float, float, float]  # (small, large msg/s, window seconds) while both sent
    # Large, rolling 1-s windows after the small one's end (E): the first at FULL_RATE of the limit
    # (its end - E, its msg/s), the one ending at E + RECOVERY_SECONDS, the lowest ending in
    # [E + 2 s, E + 4 s]; and the rate over [E + 2 s, E + 4 s].
    first_full: tuple[float, float] | None
    at_recovery: float
    lowest_later: float
    later_rate: float
    series: list[float]  # large, msg/s per second around the small one's run
    small_series: list[float]  # the small one beside, msg/s per second from its start


def measure(args: argparse.Namespace, workdir: Path, processes: Processes) -> tuple[list[str], str]:
    """Set everything up, run the small campaign alone, then beside the large one; (lines, details)."""
    log_path = workdir / "ses.log"
    stub_url = harness.start_stub(processes, log_path, args.latency)
    bench_url, notes = LOOPBACK.setup_django(stub_url, SEND_RATE=str(args.rate))
    from campaigns.services import campaign_send_now

    campaigns = prepare(args.large, args.small)
    env = LOOPBACK.child_env(
        stub_url, bench_url, SEND_RATE=str(args.rate), Q_WORKERS=str(args.workers), SEND_DISPATCHERS="2"
    )
    names = [f"fairshare-cluster-{number}" for number in range(1, args.clusters + 1)]
    harness.start_clusters(processes, env, names)
    ses = Arrivals(log_path)

    say(f"the club's {args.small:,} alone")
    alone = send_small(campaigns.alone, args.small, timeout=120)
    say(f"alone: {alone.total:.1f} s; the national body's {args.large:,} starting")
    campaign_send_now(campaign_id=campaigns.large)
    if not wait(lambda: ses.read().times[LARGE], timeout=120, step=0.1):
        raise RuntimeError("SES got nothing of the large campaign within 120 s")
    time.sleep(args.warmup)
    now = time.time()
    large_alone_rate = ses.read().rate(LARGE, now - WARMUP_WINDOW, now)
    say(f"large campaign at {large_alone_rate:.0f} msg/s of {args.rate:g} alone; the club's {args.small:,} beside")
    beside = send_small(campaigns.beside, args.small, timeout=180)
    end = beside.sent_at[-1]
    wait(lambda: time.time() > end + AFTER_SECONDS, timeout=AFTER_SECONDS + 1)
    ses.read()
    processes.close()  # the large campaign needs not finish

    small_times = ses.times[BESIDE]
    start, stop = small_times[len(small_times) // 10], small_times[len(small_times) * 9 // 10]
    both = (ses.rate(BESIDE, start, stop), ses.rate(LARGE, start, stop), stop - start)
    recovery = rolling(ses, LARGE, end, end + 4.0)
    full = [(at - end, rate) for at, rate in recovery if rate >= FULL_RATE * args.rate]
    first = int(beside.started) - 3
    figures = Figures(
        alone=alone,
        beside=beside,
        large_alone_rate=large_alone_rate,
        both=both,
        first_full=full[0] if full else None,
        at_recovery=float(ses.count(LARGE, end + RECOVERY_SECONDS - 1.0, end + RECOVERY_SECONDS)),
        lowest_later=min(rate for at, rate in recovery if at >= end + 2.0 - 1e-9),
        later_rate=ses.rate(LARGE, end + 2.0, end + 4.0),
        series=[float(ses.count(LARGE, second, second + 1)) for second in range(first, int(end) + 5)],
        small_series=[float(ses.count(BESIDE, second, second + 1)) for second in range(first + 3, int(end) + 2)],
    )
    return report_lines(args, figures, notes)


def report_lines(args: argparse.Namespace, figures: Figures, notes: list[str]) -> tuple[list[str], str]:
    alone, beside = figures.alone, figures.beside
    ratio = beside.total / alone.total
    small_rate, large_rate, window = figures.both
    first_full = figures.first_full
    recovered = first_full is not None and first_full[0] <= RECOVERY_SECONDS
    if recovered:
        recovery_line = (
            f"fair share: the large campaign back at {first_full[1]:.0f} msg/s of {args.rate:g} within "
            f"{RECOVERY_SECONDS:g} s of the small one finishing (rolling 1-s window, after {first_full[0]:.2f} s)"
        )
    else:
        recovery_line = (
            f"fair share: the large campaign at {figures.at_recovery:.0f} msg/s of {args.rate:g} "
            f"{RECOVERY_SECONDS:g} s after the small one finished (rolling 1-s window): NOT back at the full rate"
        )
    lines = [
        f"fair share: {args.small:,} recipients beside a {args.large:,}-recipient campaign: "
        f"{beside.total:.1f} s (alone: {alone.total:.1f} s): {ratio:.2f}x",
        recovery_line,
    ]
    after = f"{first_full[0]:.2f} s" if first_full is not None else "never (within 4 s)"
    details = (
        f"durations from send now to the last sent_at (first to last sent_at: beside {beside.span:.1f} s, "
        f"alone {alone.span:.1f} s, {beside.span / alone.span:.2f}x); "
        f"target {TARGET_RATIO:g}x ({'met' if ratio <= TARGET_RATIO else 'NOT met'}). "
        f"While both sent (the small one's 10th to 90th percentile at SES, {window:.1f} s): small "
        f"{small_rate:.0f} msg/s, large {large_rate:.0f} msg/s, together {small_rate + large_rate:.0f} "
        f"of {args.rate:g}. The large campaign alone reached {figures.large_alone_rate:.0f} msg/s of "
        f"{args.rate:g} (at SES, the {WARMUP_WINDOW:g} s before the small one started, after "
        f"{args.warmup:g} s of sending). Recovery, counted at SES in a rolling 1-s window after the "
        f"small one's last sent_at (E): the first window at {FULL_RATE:.0%} of the limit ends {after} after E; "
        f"{figures.at_recovery:.0f} msg/s in the window ending at E + {RECOVERY_SECONDS:g} s, the lowest window "
        f"ending in [E + 2 s, E + 4 s] {figures.lowest_later:.0f} msg/s, over [E + 2 s, E + 4 s] "
        f"{figures.later_rate:.0f} msg/s. "
        f"Large campaign at SES, msg/s per second from 3 s before the small one started: "
        + " ".join(f"{value:.0f}" for value in figures.series)
        + "; the small one beside, from its start: "
        + " ".join(f"{value:.0f}" for value in figures.small_series)
        + f". {args.clusters} qcluster x {args.workers} workers, SEND_DISPATCHERS=2, SEND_RATE={args.rate:g}, "
        f"SES latency {args.latency * 1000:.0f} ms per send, load average {os.getloadavg()[0]:.1f}"
    )
    if figures.large_alone_rate < FULL_RATE * args.rate:
        details += (
            f"; NOT at the full rate alone: the large campaign sent {figures.large_alone_rate:.0f} msg/s "
            f"of the {args.rate:g} allowed, so the shares were not tested at the limit"
        )
    if not recovered:
        details += "; the large campaign was NOT back at the full rate within 2 s"
    details += "".join(f"; {note}" for note in notes)
    return lines, details


# --- the run -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = harness.argument_parser(__doc__)
    parser.add_argument("--large", type=int, default=100_000, help="the national body's campaign's contacts")
    parser.add_argument("--small", type=int, default=1_000, help="the club's campaign's contacts")
    parser.add_argument("--rate", type=float, default=100, help="SEND_RATE (the full rate)")
    parser.add_argument("--clusters", type=int, default=2, help="qcluster processes")
    parser.add_argument("--workers", type=int, default=3, help="Q_WORKERS of each cluster")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds the large one sends before the small")
    args = harness.arguments(parser, argv, latency=True)
    return LOOPBACK.main(measure, args, argv, say=say)


def run() -> list[str]:
    """For ``bench.run``: the benchmark in its own process (its own Django settings: Redis, the
    stub, its database), its two lines back."""
    return harness.run_module("bench.fairshare", ("fair share",), echo_details=True)


if __name__ == "__main__":
    sys.exit(main())
