"""``make bench``: the delivery engine against post_office and the boto3 floor, in one run.

Everything runs on this machine against ``tests.ses_stub`` (a zero-latency SES endpoint in its
own process) and a throw-away PostgreSQL database (``cobalt_bench_engine``):

(a) baseline: post_office ``send_queued_mail -p 2`` through django-ses (BATCH_SIZE 1000,
    THREADS_PER_PROCESS 5, auto-throttle off), the same campaign message rendered on delivery,
    once with the project's ``LOG_LEVEL`` 2 (a ``Log`` per message, the records the engine
    writes too) and once logging failures only (``bench/settings_failures_only_log.py``);
(b) the engine: a real ``manage.py qcluster`` with 2 worker processes (``BENCH_WORKERS``) of
    ``SEND_THREADS`` threads, as in production;
(c) the floor: boto3 ``send_raw_email`` of one pre-built message, one client, a tight loop;
plus the snapshot time for 50,000 and 1,000,000 recipients and the limiter check (SEND_RATE
below the engine's speed must give exactly that rate). Lines are printed and appended, with
the date, command and machine, to docs/performance.md.

Usage: ``python -m bench.run [--engine 20000] [--baseline 5000] [--floor 3000] [--rate 300]
[--snapshots 50000,1000000] [--profile]``; PG_URL overrides the PostgreSQL server
(default ``postgres://postgres@127.0.0.1:5432/postgres``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import json
import multiprocessing
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

from bench import pg
from tests import ses_stub

ROOT = Path(__file__).resolve().parent.parent
BENCH_DB = "cobalt_bench_engine"
REPORT = ROOT / "docs" / "performance.md"

HTML = (
    "<html><body><h1>Autumn news</h1><p>Hi {{ first_name|default:'member' }},</p>"
    "<p>Our rowing club ({{ attributes.club }}) has news for you. " + "Lorem ipsum dolor sit amet. " * 30 + "</p>"
    '<p><a href="https://example.com/news">Read more</a> · <a href="{{ unsubscribe_url }}">Unsubscribe</a></p>'
    "</body></html>"
)
SUBJECT = "Autumn news for {{ first_name }}"


def child_env(stub_url: str, bench_url: str, **extra: str) -> dict:
    env = {key: value for key, value in os.environ.items() if key not in {"REDIS_URL", "COBALT_TESTING", "DEBUG"}}
    env.update(
        DATABASE_URL=bench_url,
        AWS_SES_ENDPOINT_URL=stub_url,
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        SECRET_KEY="bench-only-secret-key-" + "x" * 40,
        SITE_URL="https://mail.cobalt.example",
        Q_CLUSTER_NAME="cobalt_bench",
        LOG_LEVEL="WARNING",
    )
    env.update(extra)
    return env


# Whole-machine CPU per message of each run: every process on the two cores (sender, stub,
# PostgreSQL). All runs are CPU-bound, so these explain the msg/s lines and bound the ratios.
CPU_MS: dict[str, float] = {}


def machine_busy() -> float:
    """CPU seconds the whole machine has spent since boot (all cores; idle, iowait, steal out)."""
    with contextlib.suppress(OSError, ValueError):
        fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
        user, nice, system, _idle, _iowait, irq, softirq = fields
        return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")
    return float("nan")


# --- data --------------------------------------------------------------------------------------


def _insert_select(model, expressions: dict[str, str], from_sql: str, params: list) -> None:
    """INSERT … SELECT filling every other column with its Python default (fields get added)."""
    from django.db import connection

    columns, selects, values = [], [], []
    for model_field in model._meta.concrete_fields:
        if model_field.primary_key:
            continue
        columns.append(connection.ops.quote_name(model_field.column))
        if model_field.attname in expressions:
            selects.append(expressions[model_field.attname])
            continue
        default = model_field.get_default()
        if model_field.get_internal_type() == "JSONField":
            selects.append("CAST(%s AS jsonb)")
            values.append(json.dumps(default))
        elif default is None and not model_field.null and hasattr(model_field, "auto_now"):
            selects.append("now()")
        else:
            selects.append("%s")
            values.append(model_field.get_db_prep_save(default, connection))
    sql = (
        f"INSERT INTO {connection.ops.quote_name(model._meta.db_table)} ({', '.join(columns)}) "
        f"SELECT {', '.join(selects)} {from_sql}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, values + params)


def seed(total: int, list_sizes: dict[str, int]) -> dict:
    """``total`` contacts and one list per entry holding the first ``size`` of them."""
    from audiences.models import Contact, ContactList, Subscription

    _insert_select(
        Contact,
        {
            "email": "'bench' || g || '@example.org'",
            "first_name": "'First' || g",
            "last_name": "'Bench'",
            "attributes": """CAST('{"club": "Rowing"}' AS jsonb)""",
            "status": "'active'",
            "created_at": "now()",
            "updated_at": "now()",
        },
        "FROM generate_series(1, %s) AS g",
        [total],
    )
    first_id = Contact.objects.order_by("id").values_list("id", flat=True).first()
    lists = {}
    for name, size in list_sizes.items():
        contact_list = ContactList.objects.create(name=name)
        _insert_select(
            Subscription,
            {
                "contact_id": "id",
                "contact_list_id": str(contact_list.pk),
                "status": "'subscribed'",
                "changed_at": "now()",
            },
            "FROM campaigns_contact WHERE id < %s",
            [first_id + size],
        )
        lists[name] = contact_list
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return lists


def new_campaign(contact_list, name: str):
    from campaigns.models import Campaign

    campaign = Campaign.objects.create(
        name=name, subject=SUBJECT, from_email='"Cobalt Club" <news@cobalt.example>', html_body=HTML
    )
    campaign.include_lists.add(contact_list)
    return campaign


def timed_snapshot(contact_list, label: str) -> float:
    from campaigns.snapshot import audience_snapshot

    campaign = new_campaign(contact_list, f"snapshot {label}")
    started = time.perf_counter()
    count = audience_snapshot(campaign_id=campaign.pk)
    elapsed = time.perf_counter() - started
    assert count == contact_list.subscriptions.count(), (count, label)
    return elapsed


# --- (a) post_office baseline ------------------------------------------------------------------


def baseline(contact_list, stub_url: str, bench_url: str, settings_module: str = "cobalt_mail.settings") -> float:
    from django.conf import settings
    from post_office.models import STATUS, Email

    from campaigns.composer.rendering import recipient_context
    from campaigns.delivery.mime import _ses_headers, campaign_outbox_template
    from campaigns.snapshot import audience_snapshot

    campaign = new_campaign(contact_list, f"baseline {settings_module}")
    audience_snapshot(campaign_id=campaign.pk)
    template = campaign_outbox_template(campaign)
    emails = []
    for recipient in campaign.recipients.select_related("contact"):
        context = recipient_context(recipient)
        emails.append(
            Email(
                from_email=campaign.from_email,
                to=[recipient.email],
                template=template,
                context=context,
                headers=_ses_headers(campaign, recipient, context),
                status=STATUS.queued,
                backend_alias=settings.POST_OFFICE["DEFAULT_MAILER"],
            )
        )
    Email.objects.bulk_create(emails, batch_size=2000)
    env = child_env(stub_url, bench_url, DJANGO_SETTINGS_MODULE=settings_module)
    busy, started = machine_busy(), time.perf_counter()
    subprocess.run(
        [sys.executable, "manage.py", "send_queued_mail", "--processes", "2"],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    elapsed = time.perf_counter() - started
    CPU_MS[settings_module] = 1000 * (machine_busy() - busy) / len(emails)
    sent = Email.objects.filter(pk__in=[email.pk for email in emails], status=STATUS.sent).count()
    assert sent == len(emails), f"post_office sent {sent} of {len(emails)}"
    return sent / elapsed


# --- (b) the engine in real qcluster processes ------------------------------------------------


@contextlib.contextmanager
def cluster(stub_url: str, bench_url: str, **extra: str):
    workers = os.environ.get("BENCH_WORKERS", "2")  # qcluster processes, one dispatcher each
    env = child_env(stub_url, bench_url, Q_WORKERS=workers, SEND_DISPATCHERS=workers, **extra)
    process = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        time.sleep(3)  # workers import Django and connect before the clock starts
        yield process
    finally:
        import signal

        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def engine_run(contact_list, name: str) -> tuple[int, float, object]:
    """Start a campaign through the services and wait for it to finish; (sent, seconds, campaign)."""
    from campaigns.models import Campaign, Recipient
    from campaigns.services import campaign_send_now
    from campaigns.snapshot import audience_snapshot

    campaign = new_campaign(contact_list, name)
    audience_snapshot(campaign_id=campaign.pk)  # timed separately; the freeze is not sending
    busy, started = machine_busy(), time.perf_counter()
    campaign_send_now(campaign_id=campaign.pk)
    while Campaign.objects.filter(pk=campaign.pk, status=Campaign.Status.SENDING).exists():
        time.sleep(0.1)
        if time.perf_counter() - started > 900:
            raise RuntimeError("the engine did not finish within 15 minutes")
    elapsed = time.perf_counter() - started
    busy = machine_busy() - busy
    sent = campaign.recipients.filter(status=Recipient.Status.SENT).count()
    CPU_MS[name] = 1000 * busy / max(sent, 1)
    assert sent == campaign.recipients.count(), f"engine sent {sent} of {campaign.recipients.count()}"
    return sent, elapsed, campaign


def measured_rate(campaign) -> float:
    """Steady rate from the recipients' sent times (the first chunk has no interval before it)."""
    from django.db.models import Count

    from campaigns.models import Recipient

    per_time = list(
        campaign.recipients.filter(status=Recipient.Status.SENT)
        .values("sent_at")
        .annotate(n=Count("id"))
        .order_by("sent_at")
    )
    total = sum(row["n"] for row in per_time)
    span = (per_time[-1]["sent_at"] - per_time[0]["sent_at"]).total_seconds()
    return (total - per_time[0]["n"]) / span


# --- (c) the floor -----------------------------------------------------------------------------


def floor(stub_url: str, count: int) -> float:
    import boto3

    client = boto3.client(
        "ses",
        region_name="us-east-1",
        endpoint_url=stub_url,
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )
    raw = (
        b"From: news@cobalt.example\r\nTo: someone@example.org\r\nSubject: Autumn news\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: text/html; charset="utf-8"\r\n\r\n' + HTML.encode() + b"\r\n"
    )
    client.send_raw_email(Source="news@cobalt.example", Destinations=["someone@example.org"], RawMessage={"Data": raw})
    busy, own, started = machine_busy(), time.process_time(), time.perf_counter()
    for _ in range(count):
        client.send_raw_email(
            Source="news@cobalt.example", Destinations=["someone@example.org"], RawMessage={"Data": raw}
        )
    elapsed = time.perf_counter() - started
    CPU_MS["floor"] = 1000 * (machine_busy() - busy) / count
    CPU_MS["floor, boto3 alone"] = 1000 * (time.process_time() - own) / count
    return count / elapsed


def cpu_lines() -> list[str]:
    """Machine CPU per message, and what 4x post_office would leave the engine per message."""
    labels = {
        "cobalt_mail.settings": "post_office",
        "bench.settings_failures_only_log": "post_office, failures-only log",
        "engine": "engine",
        "floor": "floor (boto3 + stub)",
        "floor, boto3 alone": "floor, the boto3 call alone",
    }
    lines = [f"cpu per message, whole machine: {labels[key]}: {CPU_MS[key]:.2f} ms" for key in labels if key in CPU_MS]
    if "cobalt_mail.settings" in CPU_MS and "floor" in CPU_MS:
        budget = CPU_MS["cobalt_mail.settings"] / 4
        lines.append(
            f"cpu budget for 4x post_office: {budget:.2f} ms per message in all, of which one SES call "
            f"(boto3 + stub) takes {CPU_MS['floor']:.2f} ms"
        )
    return lines


# --- profile -----------------------------------------------------------------------------------


def profile_engine(contact_list, stub_url: str) -> list[str]:
    """cProfile of one in-process dispatcher (one thread) sending a campaign: top costs per message."""
    import cProfile
    import pstats

    from django.conf import settings

    from campaigns.delivery.engine import campaign_dispatch
    from campaigns.models import Campaign
    from campaigns.snapshot import audience_snapshot

    settings.AWS_SES_REGION_ENDPOINT_URL = stub_url
    settings.SEND_THREADS = 1
    campaign = new_campaign(contact_list, "profile")
    count = audience_snapshot(campaign_id=campaign.pk)
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.SENDING)
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.runcall(campaign_dispatch, campaign_id=campaign.pk, seconds=600)
    elapsed = time.perf_counter() - started
    stats = pstats.Stats(profiler)
    lines = [f"profile: one process, one thread, {count} messages, {count / elapsed:.0f} msg/s under cProfile"]
    rows = sorted(stats.stats.items(), key=lambda item: item[1][3], reverse=True)  # cumulative time
    wanted = {
        "render_for": "rendering (3 templates)",
        "build": "raw MIME assembly incl. rendering",
        "_make_api_call": "botocore API call (serialise, sign, HTTP, parse)",
        "sign": "SigV4 signing",
        "_send_request": "HTTP round trip incl. stub wait",
        "context": "per-recipient context + token",
        "_record": "status writes (Email, Log, Recipient)",
        "claim": "claim (SELECT … SKIP LOCKED + UPDATE)",
        "wait_for_slot": "rate limiter",
    }
    seen = set()
    for (_filename, _line, function), stat in rows:
        if function in wanted and function not in seen:
            seen.add(function)
            lines.append(f"profile: {wanted[function]}: {1000 * stat[3] / count:.2f} ms/msg ({function})")
    return lines


# --- main --------------------------------------------------------------------------------------


def machine() -> str:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} CPUs ({model or platform.processor()}), Python {platform.python_version()}"


def other_benchmarks() -> list[str]:
    lines = []
    for name in (
        "bench.webhook",
        "bench.imports",
        "bench.reports",
        "bench.simulator",
        "bench.orgscale",
        "bench.apisync",
        "bench.apimessage",  # its own process, database and Redis; skipped without Redis
        "bench.fairshare",  # its own process, database and Redis; skipped without Redis
        "bench.usage",  # its own process and database: 10,000,000 recipients, about 3 minutes of seeding
    ):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as missing:
            if missing.name != name:
                raise
            continue
        try:
            lines += module.run()
        except Exception as error:  # one broken benchmark must not lose the others' figures
            lines.append(f"{name}: failed: {type(error).__name__}: {error}")
    return lines


def append_report(lines: list[str], command: str) -> None:
    REPORT.parent.mkdir(exist_ok=True)
    if not REPORT.exists():
        REPORT.write_text("# Performance\n\nResults appended by `make bench` (bench/run.py).\n")
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    block = [f"\n## {stamp}\n", f"- command: `{command}`", f"- machine: {machine()}", "", "```", *lines, "```", ""]
    with REPORT.open("a") as report:
        report.write("\n".join(block))


def migrate(call_command, lines: list[str]) -> None:
    """Real migrations; if the tree has unmerged migration leaves, build the tables from the models."""
    from django.core.management.base import CommandError

    try:
        call_command("migrate", verbosity=0)
    except CommandError as error:
        if "Conflicting migrations" not in str(error):
            raise
        from django.apps import apps
        from django.conf import settings

        settings.MIGRATION_MODULES = {config.label: None for config in apps.get_app_configs()}
        call_command("migrate", run_syncdb=True, verbosity=0)
        lines.append("note: unmerged migrations in the tree; tables were built from the models")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", type=int, default=20000, help="recipients for the engine run")
    parser.add_argument("--baseline", type=int, default=5000, help="messages for the post_office run")
    parser.add_argument("--floor", type=int, default=3000, help="calls for the boto3 floor")
    parser.add_argument("--rate", type=float, default=300, help="SEND_RATE for the limiter check (0: skip)")
    parser.add_argument("--snapshots", default="50000,1000000", help="snapshot sizes")
    parser.add_argument("--profile", action="store_true", help="also profile one in-process dispatcher")
    parser.add_argument("--no-report", action="store_true", help="do not append to docs/performance.md")
    parser.add_argument(
        "--no-others",
        action="store_true",
        help="skip bench.webhook, imports, reports, simulator, orgscale, apisync, apimessage, fairshare, usage",
    )
    args = parser.parse_args(argv)
    command = "python -m bench.run " + shlex.join(argv if argv is not None else sys.argv[1:])

    stub_port = pg.free_port()
    stub = multiprocessing.get_context("fork").Process(target=ses_stub.serve_forever, args=(stub_port,), daemon=True)
    stub.start()
    stub_url = f"http://127.0.0.1:{stub_port}"
    bench_url = pg.recreate(BENCH_DB)
    for key, value in child_env(stub_url, bench_url).items():
        os.environ[key] = value
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cobalt_mail.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    lines: list[str] = []
    try:
        migrate(call_command, lines)
        snapshots = [int(size) for size in args.snapshots.split(",") if size]
        sizes = {f"snapshot-{size}": size for size in snapshots}
        sizes.update(engine=args.engine, baseline=args.baseline, rate=int(args.rate * 12) or 1, profile=2000)
        started = time.perf_counter()
        lists = seed(max(sizes.values()), sizes)
        lines.append(f"seed: {max(sizes.values())} contacts + lists in {time.perf_counter() - started:.1f} s")
        for size in snapshots:
            lines.append(f"snapshot {size}: {timed_snapshot(lists[f'snapshot-{size}'], str(size)):.1f} s")
        post_office_rate = light_rate = float("nan")
        if args.baseline:
            post_office_rate = baseline(lists["baseline"], stub_url, bench_url)
            light_rate = baseline(lists["baseline"], stub_url, bench_url, "bench.settings_failures_only_log")
        lines.append(
            f"post_office: {post_office_rate:.0f} msg/s ({args.baseline} messages, send_queued_mail -p 2, "
            "LOG_LEVEL 2: a Log per message, as the engine writes)"
        )
        lines.append(f"post_office, failures-only log (LOG_LEVEL 1): {light_rate:.0f} msg/s")
        print("\n".join(lines), flush=True)
        with cluster(stub_url, bench_url, SEND_RATE="1000000"):
            sent, elapsed, _campaign = engine_run(lists["engine"], "engine")
        engine_rate = sent / elapsed
        threads = os.environ.get("SEND_THREADS", "4")
        workers = os.environ.get("BENCH_WORKERS", "2")
        detail = f"{sent} messages in {elapsed:.1f} s, qcluster {workers} worker processes x {threads} threads"
        lines.append(f"engine: {engine_rate:.0f} msg/s ({detail})")
        floor_rate = floor(stub_url, args.floor)
        lines.append(f"floor: {floor_rate:.0f} msg/s (boto3 send_raw_email, one client, one process)")
        lines.append(f"engine vs post_office: {engine_rate / post_office_rate:.1f}x")
        lines.append(f"engine vs post_office with failures-only log: {engine_rate / light_rate:.1f}x")
        lines += cpu_lines()
        lines.append(f"engine vs floor: {engine_rate / floor_rate:.2f}x")
        if args.rate:
            with cluster(stub_url, bench_url, SEND_RATE=str(args.rate)):
                _sent, _elapsed, campaign = engine_run(lists["rate"], "rate")
            lines.append(f"limiter: SEND_RATE={args.rate:g} -> measured {measured_rate(campaign):.1f} msg/s")
        if args.profile:
            lines += profile_engine(lists["profile"], stub_url)
        if not args.no_others:  # while the bench database still exists: they may use it
            lines += other_benchmarks()
    finally:
        from django.db import connections

        connections.close_all()
        pg.drop(BENCH_DB)
        stub.terminate()
    print("\n".join(lines), flush=True)
    if not args.no_report:
        append_report(lines, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
