"""CSV import benchmark: rows per second and peak memory of audiences.imports.contacts_import.

    .venv/bin/python -m bench.imports            # 1,000,000 rows (BENCH_IMPORT_ROWS overrides)

Generates an N-row CSV on disk (0.1 % invalid addresses, 0.1 % duplicates in different case),
then imports it in a fresh subprocess per database, each against an empty database created for
the run: PostgreSQL ``cobalt_bench_import_<pid>`` (dropped afterwards; server from BENCH_POSTGRES_URL,
else DATABASE_URL if it is PostgreSQL, else postgres://postgres@127.0.0.1:5432/postgres) and a
temporary SQLite file. Peak memory is the subprocess's maximum resident set size (getrusage), so
it includes Python and Django themselves; the growth during the import is reported too.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from bench import pg

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ROWS = 1_000_000
# One database per run (two runs at once must not drop each other's database).
BENCH_DATABASE = f"cobalt_bench_import_{os.getpid()}"


def csv_generate(path: Path, rows: int) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write("email,first_name,last_name,city,member_no\n")
        for number in range(rows):
            if number % 1000 == 999:
                handle.write(f"not-an-address-{number},Bad,Row,Nowhere,{number}\n")
            elif number % 1000 == 998:
                handle.write(f"MEMBER{number - 1}@Example.org,Dup,Licate,Again,{number}\n")
            else:
                handle.write(
                    f"member{number}@example.org,First{number},Last{number % 977},City{number % 50},{number}\n"
                )


def _worker_run(database_url: str, csv_path: Path) -> dict:
    return pg.django_worker("bench.imports", database_url, str(csv_path))


def _worker_main(csv_path: Path) -> None:
    """In the subprocess: create the schema in the empty database, then time one import of the file."""
    import importlib

    import django
    from django.conf import settings

    django.setup()
    from django.apps import apps
    from django.core.management import call_command
    from django.db import connection

    # Tables straight from the models (as the test runner does without migrations): the bench
    # measures the import, and must not depend on the state of other work's migration graph.
    # The contact prefix-search indexes the migrations add on PostgreSQL (audiences 0003: they
    # start with the organisation) are created too, as they slow inserts.
    settings.MIGRATION_MODULES = {config.label: None for config in apps.get_app_configs()}
    call_command("migrate", run_syncdb=True, verbosity=0)
    prefix_indexes = importlib.import_module("audiences.migrations.0003_organisation_prefix_indexes")
    with connection.schema_editor() as schema_editor:
        prefix_indexes.forwards(apps, schema_editor)
    from audiences.imports import contacts_import
    from audiences.models import Contact, ContactList
    from organisations.models import sole_organisation_id

    baseline_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    contact_list = ContactList.objects.create(name="Bench")
    started = time.perf_counter()
    report = contacts_import(
        organisation_id=sole_organisation_id(), path=csv_path, contact_list=contact_list, source="bench"
    )
    seconds = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = {
        "rows": report.rows_read,
        "seconds": seconds,
        "created": report.created,
        "rejected": report.rejected,
        "contacts": Contact.objects.count(),
        "baseline_mib": baseline_kib / 1024,
        "peak_mib": peak_kib / 1024,
    }
    try:
        result["pages_ms"] = _contacts_page_timings()
    except Exception as error:  # the page depends on the whole project's URLs and templates
        result["pages_error"] = f"{type(error).__name__}: {error}"
    print(json.dumps(result))


def _contacts_page_timings() -> dict[str, float]:
    """Milliseconds to render the contacts page (full page, best of 3) over the imported table."""
    from django.contrib.auth import get_user_model
    from django.contrib.messages.storage.fallback import FallbackStorage
    from django.db import connection
    from django.test import RequestFactory

    from audiences.models import ContactList
    from audiences.views import contacts, lists

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # fresh planner statistics, as autovacuum would leave them
    from organisations.models import Organisation, Role, sole_organisation_id

    staff = get_user_model().objects.create_user("bench", is_staff=True)
    organisation = Organisation.objects.get(pk=sole_organisation_id())
    list_id = ContactList.objects.get().pk
    cases = {
        "first page": {},
        "page 200": {"page": "200"},
        "sorted by last name, page 3": {"sort": "last_name", "page": "3"},
        "search 'member12345'": {"q": "member12345"},
        "search 'first99 last9'": {"q": "first99 last9"},
        "status unsubscribed": {"status": "unsubscribed"},
        "list filter": {"list": str(list_id)},
        "lists page (subscriber counts)": {"view": lists},
    }
    timings = {}
    factory = RequestFactory()
    for name, params in cases.items():
        best = float("inf")
        view = params.pop("view", contacts)
        for _ in range(3):
            request = factory.get("/audiences/contacts/", params)
            request.user, request.htmx = staff, False
            # What the permission middleware sets (these views are called without the middleware).
            request.organisation, request.role, request.organisations = organisation, Role.ADMINISTRATOR, ()
            request.session = {}
            request._messages = FallbackStorage(request)
            started = time.perf_counter()
            response = view(request)
            assert response.status_code == 200, name
            best = min(best, time.perf_counter() - started)
        timings[name] = round(best * 1000, 1)
    return timings


def _lines(label: str, result: dict) -> list[str]:
    rate = result["rows"] / result["seconds"]
    pages = ", ".join(f"{name} {ms:.0f} ms" for name, ms in result.get("pages_ms", {}).items())
    pages = pages or f"not measured ({result.get('pages_error', 'unknown error')})"
    return [
        f"contacts page ({label}, {result['contacts']:,} contacts): {pages}",
        f"import: {rate:,.0f} rows/s ({label}: {result['rows']:,} rows in {result['seconds']:.1f} s, "
        f"{result['created']:,} created, {result['rejected']:,} rejected)",
        f"import peak memory: {result['peak_mib']:.0f} MiB ({label}: whole process; "
        f"+{result['peak_mib'] - result['baseline_mib']:.0f} MiB during the import)",
    ]


def run() -> list[str]:
    rows = int(os.environ.get("BENCH_IMPORT_ROWS", DEFAULT_ROWS))
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="cobalt-bench-import-") as folder:
        csv_path = Path(folder) / "contacts.csv"
        csv_generate(csv_path, rows)
        lines.append(f"import file: {rows:,} rows, {csv_path.stat().st_size / 2**20:.0f} MiB")

        try:
            lines += _lines("postgresql", _worker_run(pg.recreate(BENCH_DATABASE), csv_path))
        finally:
            pg.drop(BENCH_DATABASE)

        sqlite_path = Path(folder) / "bench.sqlite3"
        lines += _lines("sqlite", _worker_run(f"sqlite:///{sqlite_path}", csv_path))
    return lines


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        _worker_main(Path(sys.argv[2]))
    else:
        for line in run():
            print(line)
