"""API sync benchmark: contacts per second through ``POST /api/v1/contacts/sync`` on PostgreSQL.

    .venv/bin/python -m bench.apisync            # 100,000 contacts (BENCH_API_SYNC_CONTACTS overrides)

In a fresh subprocess against an empty database made for the run (``cobalt_bench_apisync_<pid>``
on the PG_URL server, dropped afterwards), an editor key of the organisation sends the contacts
through the real API stack (URL routing, key check, rate limit, ninja parsing, the sync service)
with Django's test client, in calls of 10,000 (the API's maximum) naming one list. Three passes
over the same payload: the first creates every contact, the second finds them all unchanged,
the third changes every contact's first name (updates). Then the issue's baseline, in the same
run: the same contacts as a CSV file through the CSV import (``contacts_import``) into a second
organisation, and the ratio of the two rates.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

from bench import pg

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONTACTS = 100_000
CALL_SIZE = 10_000
BENCH_DATABASE = f"cobalt_bench_apisync_{os.getpid()}"


def _payload(start: int, count: int, first_name: str) -> bytes:
    contacts = [
        {
            "external_id": f"member-{number}",
            "email": f"Member{number}@Example.org",
            "first_name": f"{first_name}{number}",
            "last_name": f"Last{number % 977}",
            "attributes": {"club": f"Club {number % 50}", "member_no": number},
            "lists": ["Members"],
        }
        for number in range(start, start + count)
    ]
    return json.dumps({"mode": "merge", "contacts": contacts}).encode()


def _cpu() -> float:
    """CPU seconds this process (the API side: Django, ninja, the sync's Python) has used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _worker_main(total: int) -> None:
    """In the subprocess: the schema from the models, one key, then the three timed passes."""
    import importlib

    import django
    from django.conf import settings

    django.setup()
    from django.apps import apps
    from django.core.management import call_command
    from django.db import connection

    # As bench.imports: tables straight from the models, plus the organisation-leading prefix
    # indexes the migrations add on PostgreSQL (they slow inserts, so they must be there).
    settings.MIGRATION_MODULES = {config.label: None for config in apps.get_app_configs()}
    call_command("migrate", run_syncdb=True, verbosity=0)
    prefix_indexes = importlib.import_module("audiences.migrations.0003_organisation_prefix_indexes")
    with connection.schema_editor() as schema_editor:
        prefix_indexes.forwards(apps, schema_editor)
    from django.test import Client

    from api.keys import api_key_create
    from audiences.models import Contact, Subscription
    from organisations.models import Organisation, Role, sole_organisation_id

    _, raw = api_key_create(
        organisation=Organisation.objects.get(pk=sole_organisation_id()), role=Role.EDITOR, name="bench"
    )
    client = Client(headers={"Authorization": f"Bearer {raw}"}, HTTP_HOST="localhost")
    result = {}
    for label, first_name in (("create", "First"), ("unchanged", "First"), ("update", "Renamed")):
        bodies = [_payload(start, min(CALL_SIZE, total - start), first_name) for start in range(0, total, CALL_SIZE)]
        totals = {"created": 0, "updated": 0, "unchanged": 0, "rejected": 0}
        started, cpu_started = time.perf_counter(), _cpu()
        for body in bodies:
            response = client.post("/api/v1/contacts/sync", body, content_type="application/json")
            if response.status_code != 200:
                raise RuntimeError(f"sync answered {response.status_code}: {response.content[:500]!r}")
            answer = response.json()
            for name in ("created", "updated", "unchanged"):
                totals[name] += answer[name]
            totals["rejected"] += len(answer["rejected"])
        result[label] = {"seconds": time.perf_counter() - started, "cpu": _cpu() - cpu_started, **totals}
    result["contacts"] = Contact.objects.count()
    result["subscriptions"] = Subscription.objects.count()
    result["import"] = _csv_import_baseline(total)
    print(json.dumps(result))


def _csv_import_baseline(total: int) -> dict:
    """The issue's baseline in the same run: the same contacts as a CSV file, imported into a list
    of a second organisation (so that every row is created, as in the API's first pass)."""
    import csv
    import tempfile

    from audiences.imports import contacts_import
    from audiences.models import ContactList
    from organisations.models import Organisation

    organisation = Organisation.objects.create(name="Bench import", slug="bench-import")
    members = ContactList.objects.create(organisation=organisation, name="Members")
    with tempfile.NamedTemporaryFile("w", suffix=".csv", newline="", delete=False) as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "first_name", "last_name", "club", "member_no"])
        for number in range(total):
            writer.writerow(
                [f"Member{number}@Example.org", f"First{number}", f"Last{number % 977}", f"Club {number % 50}", number]
            )
    started = time.perf_counter()
    report = contacts_import(organisation_id=organisation.pk, path=Path(handle.name), contact_list=members)
    seconds = time.perf_counter() - started
    Path(handle.name).unlink()
    return {"seconds": seconds, "created": report.created}


def _worker_run(database_url: str, total: int) -> dict:
    return pg.django_worker("bench.apisync", database_url, str(total))


def run() -> list[str]:
    total = int(os.environ.get("BENCH_API_SYNC_CONTACTS", DEFAULT_CONTACTS))
    try:
        result = _worker_run(pg.recreate(BENCH_DATABASE), total)
    finally:
        pg.drop(BENCH_DATABASE)
    lines = []
    for label, counted in (("create", "created"), ("unchanged", "unchanged"), ("update", "updated")):
        run_ = result[label]
        rate = total / run_["seconds"]
        prefix = "api sync" if label == "create" else f"api sync ({label})"
        lines.append(
            f"{prefix}: {rate:,.0f} contacts/s (postgresql: {total:,} contacts in calls of {CALL_SIZE:,}, "
            f"{run_['seconds']:.1f} s of which {run_['cpu']:.1f} s CPU in the API process, "
            f"{run_[counted]:,} {counted}, {run_['rejected']:,} rejected)"
        )
    api_rate = total / result["create"]["seconds"]
    import_rate = total / result["import"]["seconds"]
    lines.append(
        f"api sync vs CSV import (same run, {total:,} new contacts each): {api_rate:,.0f} vs "
        f"{import_rate:,.0f} contacts/s: {api_rate / import_rate:.2f}x"
    )
    return lines


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        _worker_main(int(sys.argv[2]))
    else:
        for line in run():
            print(line)
