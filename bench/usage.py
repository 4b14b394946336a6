"""``python -m bench.usage``: the Usage page and its CSV export at 100 organisations and 10,000,000 recipients.

Issue #15 ("Usage"): at 100 organisations and 10,000,000 recipients the page answers in under
100 ms. Everything runs on this machine:

- PostgreSQL: a throw-away database ``cobalt_bench_usage`` (created, migrated, dropped at the end);
- 100 organisations in a tree: the national body, 8 state bodies below it, 91 clubs below those;
- 3 sent campaigns per organisation and 10,000,000 recipients spread over them (the national body
  10%, each state 3%, the clubs the rest), written set-wise with ``generate_series`` straight into
  ``campaigns_recipient`` (narrow rows: address, status, attempts, sent time; the table's full
  indexes dropped for the INSERT and built again after it as the migrations made them, and the
  foreign-key checks off: about 2.5 minutes on this 2-core machine);
- ``stats_organisationday``: 400 days per organisation (40,000 rows), each recipient counted on
  the local day of its ``sent_at`` (a campaign's recipients are spread over the 400 days), so the
  counters add up to the recipients exactly; a few test messages on the first of each month.

After ANALYZE and a warm-up, 30 requests of each page go through Django's test client (the whole
middleware stack, a logged-in user, ``DEBUG`` off): the site operator's page (every organisation,
the national body's days), the national administrator's, a state administrator's (its subtree),
a club administrator's, and the CSV export of last month for the operator and for the state
administrator. Each line gives the median and the 95th percentile of the wall-clock time, the
queries one request makes, the median time spent waiting on them and the median CPU time of the
benchmark's own process (Django's share, which a busy machine stretches least); every query on the
counters is EXPLAIN ANALYZEd (``plan:`` lines). Prints, one line a page::

    usage page, site operator (100 organisations), 10,000,000 recipients: median N ms (p95 M ms)
    (target < 100 ms); Q queries, D ms of it waiting on them, C ms of it the process's own CPU

and, unless ``--no-report``, appends them to docs/performance.md with the machine's load. Without
PostgreSQL it prints "usage page: skipped: needs PostgreSQL" and exits 0.
"""

from __future__ import annotations

import datetime
import math
import os
import re
import statistics
import sys
import time
from pathlib import Path

from bench import harness, pg
from bench.harness import ROOT

BENCH_DB = "cobalt_bench_usage"
SECTION = "## Usage page at scale (`python -m bench.usage`, also run by `make bench`): issue #15"
REQUESTS = 30
WARM_UP = 3
DAYS = 400
TARGET_MS = 100.0
CAMPAIGNS_PER_ORGANISATION = 3
STATES = [
    "New South Wales",
    "Victoria",
    "Queensland",
    "Western Australia",
    "South Australia",
    "Tasmania",
    "Australian Capital Territory",
    "Northern Territory",
]
CLUBS = 91


def setup_django(bench_url: str) -> None:
    drop = {"REDIS_URL", "DEBUG", "COBALT_TESTING", "DATABASE_URL", "ALLOWED_HOSTS"}
    for key in drop:
        os.environ.pop(key, None)
    os.environ.update(
        DATABASE_URL=bench_url,
        SECRET_KEY="bench-only-secret-key-" + "x" * 40,
        COBALT_TESTING="0",  # production settings: no DEBUG query log, real sessions
        ALLOWED_HOSTS="testserver",
        LOG_LEVEL="WARNING",
        DJANGO_SETTINGS_MODULE="cobalt_mail.settings",
    )
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


# --- data --------------------------------------------------------------------------------------


def recipient_shares(total: int, organisations: list) -> dict[int, int]:
    """Recipients per organisation: the national body 10%, each state 3%, the clubs the rest evenly."""
    national, states, clubs = organisations[0], organisations[1:9], organisations[9:]
    shares = {national.pk: total // 10}
    shares.update({state.pk: total * 3 // 100 for state in states})
    rest = total - sum(shares.values())
    shares.update({club.pk: rest // len(clubs) + (number < rest % len(clubs)) for number, club in enumerate(clubs)})
    return shares


def seed_organisations() -> list:
    """The migrated installation's one organisation becomes the national body; 8 states, 91 clubs."""
    from organisations.models import Organisation

    national = Organisation.objects.order_by("pk").first()
    national.name, national.slug = "National body", "national"
    national.save(update_fields=["name", "slug"])
    states = Organisation.objects.bulk_create(
        Organisation(name=name, slug=f"state-{number}", parent=national) for number, name in enumerate(STATES, 1)
    )
    clubs = Organisation.objects.bulk_create(
        Organisation(name=f"Club {number:02d}", slug=f"club-{number}", parent=states[(number - 1) % len(states)])
        for number in range(1, CLUBS + 1)
    )
    return [national, *states, *clubs]


def seed_users(organisations: list) -> dict:
    """A site operator and an administrator of the national body, of a state and of one of its clubs."""
    from django.contrib.auth import get_user_model

    from organisations.models import Membership, Role

    User = get_user_model()
    state = organisations[1]
    club = next(org for org in organisations[9:] if org.parent_id == state.pk)
    users = {"operator": User.objects.create_superuser("operator", password="bench-password-1")}
    for key, organisation in (("national", organisations[0]), ("state", state), ("club", club)):
        users[key] = User.objects.create_user(f"{key}-admin", password="bench-password-1")
        Membership.objects.create(user=users[key], organisation=organisation, role=Role.ADMINISTRATOR)
    subtree = 1 + sum(1 for org in organisations if org.parent_id == state.pk)
    return {"users": users, "national": organisations[0], "state_subtree": subtree}


def seed_recipients(shares: dict[int, int], today: datetime.date) -> tuple[list[tuple[int, int, int]], float, float]:
    """Sent campaigns and their recipients, one INSERT … SELECT; returns ((organisation id, first,
    last) of each campaign's range of the series, seconds of the INSERT, seconds of the indexes).

    Each campaign owns a contiguous range of the series, so that every index of the table grows at
    its right edge (addresses are zero-padded to sort like the series). Recipient number g is sent
    at midday (local) of day ``today - g mod DAYS``.
    """
    from django.conf import settings
    from django.db import connection, transaction
    from django.utils import timezone

    from campaigns.models import Campaign

    now = timezone.now()
    ranges, campaigns, start = [], [], 1
    for organisation_id, total in shares.items():
        for number in range(CAMPAIGNS_PER_ORGANISATION):
            count = total // CAMPAIGNS_PER_ORGANISATION + (number < total % CAMPAIGNS_PER_ORGANISATION)
            ranges.append((organisation_id, start, start + count - 1))
            start += count
            campaigns.append(
                Campaign(
                    organisation_id=organisation_id,
                    name=f"Newsletter {number + 1}",
                    subject="News",
                    **harness.sent_campaign_fields(now),
                )
            )
    ids = [campaign.pk for campaign in Campaign.objects.bulk_create(campaigns)]
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        # The foreign key's check (a deferred trigger per row, 10M of them queued in memory) is off
        # for the seed: every campaign id comes from the rows just created. Needs a superuser role.
        cursor.execute("SET LOCAL session_replication_role = replica")
        rebuild = _drop_indexes(cursor)
        cursor.execute(
            """
            INSERT INTO campaigns_recipient (campaign_id, email, status, attempts, error, sent_at)
            SELECT c.id, 'r' || lpad(g::text, 8, '0') || '@example.org', 'sent', 1, '',
                   ((%s::date - (g %% %s)::int) + time '12:00') AT TIME ZONE %s
            FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[]) AS c(id, first, last),
                 generate_series(c.first, c.last) AS g
            """,
            [today, DAYS, settings.TIME_ZONE, ids, [r[1] for r in ranges], [r[2] for r in ranges]],
        )
        inserted = time.perf_counter()
        cursor.execute("SET LOCAL maintenance_work_mem = '512MB'")
        for statement in rebuild:
            cursor.execute(statement)
    return ranges, inserted - started, time.perf_counter() - inserted


def _drop_indexes(cursor) -> list[str]:
    """Drop the recipients' full indexes and unique constraints (not the primary key, which other
    tables reference, nor the partial indexes, which no seeded row enters); returns the statements
    that build them again, as the migrations made them. Building an index once over 10M rows is
    about half the time of growing eight indexes row by row."""
    cursor.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = 'campaigns_recipient'::regclass AND contype = 'u'"
    )
    constraints = cursor.fetchall()
    cursor.execute(
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "WHERE i.indrelid = 'campaigns_recipient'::regclass AND NOT i.indisprimary AND i.indpred IS NULL "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)"
    )
    indexes = cursor.fetchall()
    for name, _definition in constraints:
        cursor.execute(f'ALTER TABLE campaigns_recipient DROP CONSTRAINT "{name}"')
    for name, _definition in indexes:
        cursor.execute(f"DROP INDEX {name}")
    return [
        *(f'ALTER TABLE campaigns_recipient ADD CONSTRAINT "{name}" {definition}' for name, definition in constraints),
        *(definition for _name, definition in indexes),
    ]


def seed_counters(ranges: list[tuple[int, int, int]], today: datetime.date) -> int:
    """OrganisationDay rows from the campaigns' ranges by arithmetic rather than a scan of the
    recipients: the numbers g in [first, last] with g mod DAYS = k were sent on day ``today - k``.
    Returns the rows written."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH per_day AS (
                SELECT c.organisation_id, k,
                       sum(floor((c.last - k)::numeric / %s) - floor((c.first - 1 - k)::numeric / %s))::bigint
                           AS sent
                FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[]) AS c(organisation_id, first, last)
                CROSS JOIN generate_series(0, %s - 1) AS k
                GROUP BY c.organisation_id, k
            )
            INSERT INTO stats_organisationday (organisation_id, day, sent, test_sent, delivered, bounced_hard,
                complained)
            SELECT organisation_id, %s::date - k::int, sent,
                   CASE WHEN extract(day FROM %s::date - k::int) = 1 THEN 2 ELSE 0 END,
                   sent - sent / 50, sent / 100, sent / 2000
            FROM per_day
            """,
            [DAYS, DAYS, *(list(column) for column in zip(*ranges, strict=True)), DAYS, today, today],
        )
        return cursor.rowcount


def seed(recipients: int) -> dict:
    from django.db import connection

    from stats.counters import usage_day

    today = usage_day()
    started = time.perf_counter()
    organisations = seed_organisations()
    seeded = seed_users(organisations)
    shares = recipient_shares(recipients, organisations)
    ranges, insert_seconds, index_seconds = seed_recipients(shares, today)
    days = seed_counters(ranges, today)
    analyse_started = time.perf_counter()
    with connection.cursor() as cursor:
        # As autovacuum leaves the counters (visibility map set: index-only scans), statistics fresh.
        cursor.execute("VACUUM ANALYZE stats_organisationday")
        cursor.execute("ANALYZE")
        cursor.execute("SELECT sum(sent) FROM stats_organisationday")
        counted = cursor.fetchone()[0]
    assert counted == recipients, f"the counters say {counted} sent, the recipients are {recipients}"
    seeded.update(
        organisations=len(organisations),
        campaigns=len(ranges),
        recipients=recipients,
        days=days,
        today=today,
        insert_seconds=insert_seconds,
        index_seconds=index_seconds,
        analyse_seconds=time.perf_counter() - analyse_started,
        seed_seconds=time.perf_counter() - started,
    )
    return seeded


# --- measuring ---------------------------------------------------------------------------------


class _Capture:
    """An execute wrapper keeping every statement a request runs, and the time spent waiting on them."""

    def __init__(self) -> None:
        self.queries: list[tuple[str, object]] = []
        self.seconds = 0.0

    def __call__(self, execute, sql, params, many, context):
        self.queries.append((sql, params))
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds += time.perf_counter() - started


def pages(seeded: dict) -> list[tuple[str, str, str, int]]:
    """(label, user key, URL, organisations covered) of every measured request."""
    from organisations.selectors import month_start

    last_month = f"{month_start(seeded['today'], -1):%Y-%m}"
    count = seeded["organisations"]
    state = seeded["state_subtree"]
    national = seeded["national"].pk
    return [
        ("usage page, site operator", "operator", f"/organisations/usage/?organisation={national}", count),
        ("usage page, national administrator", "national", "/organisations/usage/", count),
        ("usage page, state administrator", "state", "/organisations/usage/", state),
        ("usage page, club administrator", "club", "/organisations/usage/", 1),
        ("usage CSV export, site operator", "operator", f"/organisations/usage/export/?month={last_month}", count),
        ("usage CSV export, state administrator", "state", f"/organisations/usage/export/?month={last_month}", state),
    ]


def measure(seeded: dict) -> tuple[list[str], list[str]]:
    """Time every page; (figure lines, plan lines)."""
    from django.db import connection
    from django.test import Client

    lines, plans = [], []
    for label, user, url, organisations in pages(seeded):
        client = Client()
        client.force_login(seeded["users"][user])
        for _ in range(WARM_UP):
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code)
        assert response.content.count(b"\n") > 1 if "export" in url else b"Usage" in response.content
        values, database, cpu = [], [], []
        for _ in range(REQUESTS):
            capture = _Capture()  # a few microseconds a query: the queries' own time is the point
            with connection.execute_wrapper(capture):
                started, own = time.perf_counter(), time.process_time()
                client.get(url)
                values.append((time.perf_counter() - started) * 1000)
                cpu.append((time.process_time() - own) * 1000)
            database.append(capture.seconds * 1000)
        median = statistics.median(values)
        p95 = sorted(values)[math.ceil(0.95 * len(values)) - 1]
        lines.append(
            f"{label} ({organisations} organisation{'s' if organisations != 1 else ''}), "
            f"{seeded['recipients']:,} recipients: median {median:.1f} ms (p95 {p95:.1f} ms) "
            f"(target < {TARGET_MS:.0f} ms); {len(capture.queries)} queries, "
            f"{statistics.median(database):.1f} ms of it waiting on them, "
            f"{statistics.median(cpu):.1f} ms of it the process's own CPU"
        )
        plans += explain(label, capture.queries)
    return lines, plans


IDS = re.compile(r"'\{([0-9,]+)\}'::bigint\[\]")


def _ids(found: re.Match) -> str:
    return f"'{{{found[1].count(',') + 1} ids}}'::bigint[]"


def explain(label: str, queries: list[tuple[str, object]]) -> list[str]:
    """EXPLAIN ANALYZE of each query on the counters: its plan's nodes (no costs) and its time."""
    from django.db import connection

    found = []
    for sql, params in queries:
        if "stats_organisationday" not in sql or not sql.lstrip().upper().startswith("SELECT"):
            continue
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, TIMING OFF, COSTS OFF) " + sql, params)
            plan = [row[0].strip() for row in cursor.fetchall()]
        skipped = (
            "Planning",
            "Execution",
            "Batches",
            "Heap Blocks",
            "Group Key",
            "Sort Key",
            "Recheck",
            "Rows Removed",
        )
        nodes = [
            IDS.sub(_ids, line.removeprefix("->").strip()) for line in plan if line and not line.startswith(skipped)
        ]
        execution = next((line for line in plan if line.startswith("Execution Time")), "")
        found.append(f"{label}: {' | '.join(nodes)} | {execution}")
    return found


def machine_load() -> str:
    """The load average and how many other test and benchmark processes were running."""
    one, five, fifteen = os.getloadavg()
    busy = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            busy += b"pytest" in command or b"qcluster" in command
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min), {busy} pytest or qcluster processes"


# --- main --------------------------------------------------------------------------------------


def benchmark(recipients: int) -> list[str]:
    bench_url = pg.recreate(BENCH_DB)
    try:
        setup_django(bench_url)
        from django.core.management import call_command

        from bench.run import migrate

        lines: list[str] = []
        migrate(call_command, lines)
        seeded = seed(recipients)
        lines.append(
            f"usage seed: {seeded['organisations']} organisations, {seeded['campaigns']} campaigns, "
            f"{recipients:,} recipients, {seeded['days']:,} organisation days in {seeded['seed_seconds']:.0f} s "
            f"(the recipients' INSERT {seeded['insert_seconds']:.0f} s, its indexes {seeded['index_seconds']:.0f} s, "
            f"VACUUM/ANALYZE {seeded['analyse_seconds']:.0f} s)"
        )
        before = machine_load()
        figures, plans = measure(seeded)
        lines += figures
        lines.append(f"usage machine load: at the start {before}; at the end {machine_load()}")
        lines += [f"plan: {line}" for line in plans]
        return lines
    finally:
        from django.db import connections

        connections.close_all()
        pg.drop(BENCH_DB)


def main(argv: list[str] | None = None) -> int:
    parser = harness.argument_parser(__doc__)
    parser.add_argument("--recipients", type=int, default=10_000_000, help="recipients over all campaigns")
    args = harness.arguments(parser, argv, latency=False)
    reason = harness.postgres_unreachable()
    if reason:
        print(f"usage page: skipped: needs PostgreSQL ({reason})", flush=True)
        return 0
    lines = benchmark(args.recipients)
    print("\n".join(lines), flush=True)
    if not args.no_report:
        harness.append_report(SECTION, lines, harness.command_line("bench.usage", argv))
    return 0


def run() -> list[str]:
    """For ``bench.run``: the benchmark in its own process (its own settings and database)."""
    return harness.run_module("bench.usage", ("usage", "plan: usage"), echo_details=False)


if __name__ == "__main__":
    sys.exit(main())
