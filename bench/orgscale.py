"""Scoping by organisation at scale, against the tree before organisations, in one run.

    .venv/bin/python -m bench.orgscale [--contacts 1000000] [--organisations 100] [--before REV]

Issue #14's speed rule: with 100 organisations and 1,000,000 contacts spread over them, the
contacts page, the report page and the campaign progress poll stay within 20% of the figures
before organisations existed. Both trees are measured here, each in a fresh PostgreSQL database
migrated by its own code; both are seeded first, then measured in alternating rounds (before,
after, before, …) so that a machine getting busier or quieter during the run moves both alike:

- before (``--before``, default ``029223d``, checked out with ``git worktree`` into a temporary
  folder): 1,000,000 contacts in the one installation, a staff user;
- after (this tree): the same 1,000,000 contacts spread evenly over 100 organisations, and a
  member (administrator) of one of them looking at its pages.

Each tree gets a 200,000-recipient sent campaign (in the measured organisation) for the report
page and the progress poll. Every page is requested through Django's test client with the
whole middleware stack; each round takes the median of 30 requests a page, before and after one
right after the other; the figure is the median over 7 rounds of each round's after/before ratio.

For the after tree the SQL of each page is captured and every SELECT touching an owned table
is EXPLAINed: the plan lines naming an index are printed (``plan:``), so that
``docs/performance.md`` shows that every scoped query uses an index starting with the
organisation.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import pg

ROOT = Path(__file__).resolve().parent.parent
REQUESTS = 30
CAMPAIGN_RECIPIENTS = 200_000
PAGES = {
    "contacts page": "/audiences/contacts/",
    "contacts page, sorted by last name": "/audiences/contacts/?sort=last_name&page=3",
    "contacts page, search": "/audiences/contacts/?q=member12",
    "report page": "/reports/campaigns/{campaign}/",
    "campaign progress poll": "/campaigns/{campaign}/progress/",
    "campaigns list": "/campaigns/",
}
OWNED_TABLES = ("campaigns_contact", "campaigns_campaign", "campaigns_contactlist", "campaigns_segment")


ROUNDS = 7


class _Tree:
    """One tree with its own seeded database; ``measure`` runs a fresh child against it."""

    def __init__(self, tree: Path, database: str, contacts: int, organisations: int) -> None:
        self.tree, self.database = tree, database
        self.env = {
            **{key: value for key, value in os.environ.items() if key not in {"REDIS_URL", "DEBUG"}},
            "DATABASE_URL": pg.recreate(database),
            "SECRET_KEY": "bench",
            "COBALT_TESTING": "0",
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(tree),
        }
        # The child runs from a copy outside any package: the script's own folder (bench/) first
        # on sys.path would hide the tree's apps behind bench/reports.py and its neighbours.
        self.script = Path(tempfile.mkdtemp(prefix="cobalt-bench-org-")) / "orgscale_child.py"
        self.script.write_text(Path(__file__).read_text(encoding="utf-8"), encoding="utf-8")
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=tree, env=self.env, check=True
        )
        self.seeded = self._child("--seed", str(contacts), str(organisations))

    def measure(self, explain: bool = False) -> dict:
        return self._child("--measure", str(self.seeded["campaign"]), *(["--explain"] if explain else []))

    def _child(self, *arguments: str) -> dict:
        child = subprocess.run(
            [sys.executable, str(self.script), *arguments],
            cwd=self.tree,
            env=self.env,
            check=False,
            capture_output=True,
            text=True,
        )
        if child.returncode != 0:
            raise RuntimeError(f"bench child failed in {self.tree}:\n{child.stderr[-4000:]}")
        return json.loads(child.stdout.strip().splitlines()[-1])

    def drop(self) -> None:
        pg.drop(self.database)


def run(contacts: int = 1_000_000, organisations: int = 100, before: str = "029223d") -> list[str]:
    """Seed both trees, then measure them in alternating rounds (before, after, before, …): a
    machine that gets busier or quieter during the run moves both sides alike. Each page's figure
    is the median over the rounds of each round's median."""
    with tempfile.TemporaryDirectory(prefix="cobalt-bench-before-") as folder:
        old_tree = Path(folder) / "tree"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(old_tree), before], cwd=ROOT, check=True, capture_output=True
        )
        old = new = None
        try:
            old = _Tree(old_tree, "cobalt_bench_org_before", contacts, 1)
            new = _Tree(ROOT, "cobalt_bench_org_after", contacts, organisations)
            rounds = []
            for number in range(ROUNDS):
                rounds.append((old.measure(), new.measure(explain=number == ROUNDS - 1)))
        finally:
            for tree in (old, new):
                if tree is not None:
                    tree.drop()
            subprocess.run(["git", "worktree", "remove", "--force", str(old_tree)], cwd=ROOT, check=False)
    lines = [
        f"organisations: before {before} (1 organisation, {contacts:,} contacts) vs after "
        f"({organisations} organisations, {contacts:,} contacts; seeded in "
        f"{old.seeded['seed_seconds']:.0f} s / {new.seeded['seed_seconds']:.0f} s; "
        f"{ROUNDS} alternating rounds of {REQUESTS} requests a page)"
    ]
    for name in PAGES:
        before_ms = statistics.median(o["pages"][name] for o, _ in rounds)
        after_ms = statistics.median(n["pages"][name] for _, n in rounds)
        # Each round's after/before, from requests made seconds apart: the median of these paired
        # ratios is the figure (a busier or quieter minute moves both halves of a pair alike).
        ratios = sorted(n["pages"][name] / o["pages"][name] for o, n in rounds)
        lines.append(
            f"organisations {name}: before median {before_ms:.1f} ms, after {after_ms:.1f} ms; "
            f"paired ratio median {statistics.median(ratios):.2f}x "
            f"(rounds: {' '.join(f'{ratio:.2f}' for ratio in ratios)})"
        )
    lines += [f"plan: {line}" for line in rounds[-1][1].get("plans", [])]
    return lines


# --- the child: Django configured against the bench database, in one tree ---------------------


def _django() -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cobalt_mail.settings")
    django.setup()
    from django.conf import settings

    settings.ALLOWED_HOSTS = ["testserver"]


def _child_seed(contacts: int, organisations: int) -> None:
    _django()
    started = time.perf_counter()
    campaign_id = _seed(contacts, organisations)
    print(json.dumps({"seed_seconds": time.perf_counter() - started, "campaign": campaign_id}))


def _child_measure(campaign_id: int, explain: bool) -> None:
    _django()
    from django.contrib.auth import get_user_model
    from django.test import Client

    client = Client()
    client.force_login(get_user_model().objects.get(username="bench"))
    pages, plans = _measure(client, campaign_id, explain)
    print(json.dumps({"pages": pages, "plans": plans}))


def _seed(contacts: int, organisations: int):
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.utils import timezone

    from campaigns.models import Campaign

    has_organisations = "organisation_id" in [
        column.name
        for column in connection.introspection.get_table_description(connection.cursor(), "campaigns_contact")
    ]
    user = get_user_model().objects.create_user("bench", password="bench-password-1", is_staff=True)
    measured_org = None
    with connection.cursor() as cursor:
        if has_organisations:
            cursor.execute("DELETE FROM organisations_membership")
            cursor.execute(
                """
                INSERT INTO organisations_organisation (name, slug, postal_address, sender_name, reply_to,
                    is_active, created_at)
                SELECT 'Club ' || g, 'club-' || g, '', '', '', true, now() FROM generate_series(1, %s) AS g
                """,
                [organisations],
            )
            cursor.execute("SELECT id FROM organisations_organisation ORDER BY id")
            org_ids = [row[0] for row in cursor.fetchall()]
            # The measured organisation: one in the middle of the id range.
            measured_org = org_ids[len(org_ids) // 2]
            cursor.execute(
                """
                INSERT INTO campaigns_contact (organisation_id, email, first_name, last_name, attributes, status,
                    source, created_at, updated_at)
                SELECT (%s::bigint[])[1 + g %% %s], 'member' || g || '@example.org', 'First' || g,
                       'Last' || (g %% 977), '{}', CASE WHEN g %% 50 = 0 THEN 'unsubscribed' ELSE 'active' END,
                       'bench', now(), now()
                FROM generate_series(1, %s) AS g
                """,
                [org_ids, len(org_ids), contacts],
            )
            cursor.execute(
                "INSERT INTO organisations_membership (user_id, organisation_id, role, created_at) "
                "VALUES (%s, %s, 'administrator', now())",
                [user.pk, measured_org],
            )
        else:
            cursor.execute(
                """
                INSERT INTO campaigns_contact (email, first_name, last_name, attributes, status, source,
                    created_at, updated_at)
                SELECT 'member' || g || '@example.org', 'First' || g, 'Last' || (g %% 977), '{}',
                       CASE WHEN g %% 50 = 0 THEN 'unsubscribed' ELSE 'active' END, 'bench', now(), now()
                FROM generate_series(1, %s) AS g
                """,
                [contacts],
            )
    now = timezone.now()
    fields = {"organisation_id": measured_org} if has_organisations else {}
    campaigns = [
        Campaign.objects.create(
            name=f"Bench campaign {number}",
            subject="Bench",
            from_email="news@cobalt.example",
            html_body="<p>Hi</p>",
            status=Campaign.Status.SENT,
            started_at=now,
            finished_at=now,
            snapshot_at=now,
            **fields,
        )
        for number in range(20)
    ]
    campaign = campaigns[-1]
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO campaigns_recipient (campaign_id, email, status, attempts, error, sent_at, ses_message_id)
            SELECT %s, 'member' || g || '@example.org', 'sent', 1, '', now(), 'ses-' || g
            FROM generate_series(1, %s) AS g
            """,
            [campaign.pk, CAMPAIGN_RECIPIENTS],
        )
        # As autovacuum leaves a table: statistics fresh and the visibility map set (index-only scans).
        cursor.execute("VACUUM ANALYZE")
    from stats.counters import snapshot_recorded
    from stats.models import CampaignStats

    CampaignStats.objects.update_or_create(campaign=campaign, defaults={"sent": CAMPAIGN_RECIPIENTS})
    snapshot_recorded(
        campaign_id=campaign.pk, recipients=CAMPAIGN_RECIPIENTS, domains={"example.org": CAMPAIGN_RECIPIENTS}
    )
    return campaign.pk


def _measure(client, campaign_id: int, explain: bool) -> tuple[dict[str, float], list[str]]:
    from django.db import connection

    pages, plans = {}, []
    for name, url in PAGES.items():
        url = url.format(campaign=campaign_id)
        headers = {"HX-Request": "true"} if "poll" in name else {}
        response = client.get(url, headers=headers)  # warm caches
        assert response.status_code in (200, 286), (url, response.status_code)
        values = []
        for _ in range(REQUESTS):
            started = time.perf_counter()
            client.get(url, headers=headers)
            values.append(time.perf_counter() - started)
        pages[name] = statistics.median(values) * 1000
        if explain:
            capture = _Capture()
            with connection.execute_wrapper(capture):
                client.get(url, headers=headers)
            plans += _plans(name, capture.queries)
    return pages, plans


class _Capture:
    """An execute wrapper keeping every statement a request runs."""

    def __init__(self) -> None:
        self.queries: list[tuple[str, tuple]] = []

    def __call__(self, execute, sql, params, many, context):
        self.queries.append((sql, params))
        return execute(sql, params, many, context)


def _plans(page: str, queries: list[tuple[str, tuple]]) -> list[str]:
    """For each SELECT on an owned table: the plan's scan lines (which index, which filter)."""
    from django.db import connection

    found = []
    for sql, params in queries:
        if not sql.lstrip().upper().startswith("SELECT") or not any(table in sql for table in OWNED_TABLES):
            continue
        # With sequential scans off: the bench's small tables (20 campaigns, a few lists) would be
        # read whole by any sane plan; the question is whether an index starting with the
        # organisation serves the query when the table is large.
        with connection.cursor() as cursor:
            cursor.execute("SET enable_seqscan = off")
            cursor.execute("EXPLAIN " + sql, params)
            plan = [row[0].strip() for row in cursor.fetchall()]
            cursor.execute("RESET enable_seqscan")
        scans = [line.split("  (cost")[0] for line in plan if "Scan" in line and any(t in line for t in OWNED_TABLES)]
        if scans:
            found.append(f"{page}: {' | '.join(scans)}")
    return sorted(set(found))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contacts", type=int, default=int(os.environ.get("BENCH_ORG_CONTACTS", "1000000")))
    parser.add_argument("--organisations", type=int, default=100)
    parser.add_argument("--before", default="029223d")
    args = parser.parse_args()
    for line in run(args.contacts, args.organisations, args.before):
        print(line, flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--seed":
        _child_seed(int(sys.argv[2]), int(sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--measure":
        _child_measure(int(sys.argv[2]), "--explain" in sys.argv)
    else:
        main()
