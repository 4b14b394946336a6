"""What the benchmarks that run their own processes share: setting up, stopping, reporting.

``bench.apimessage``, ``bench.fairshare`` and ``bench.scaleout`` each run on a ``Loopback``: a
throw-away PostgreSQL database and a django-q2 cluster both named ``cobalt_bench_<name>``, a Redis
database that is **flushed** before and after, the SES stub of ``tests/ses_stub.py`` in a forked
process, and ``manage.py qcluster`` / gunicorn processes started through ``Processes`` (their logs in
``var/scaleout/``). Whatever happens (a failure, Ctrl-C, SIGTERM), every process is killed and the
database dropped on the way out. ``bench.usage`` shares the reachability check, the report and the
``bench.run`` wrapper.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import multiprocessing
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from bench import pg

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "docs" / "performance.md"
LOGS = ROOT / "var" / "scaleout"
# Engine settings an outer shell must not leak into the clusters (the runs measure the defaults).
ENGINE_SETTINGS = (
    "SEND_RATE", "SEND_STALE_SECONDS", "SEND_THREADS", "SEND_BATCH_SIZE", "SEND_TASK_SECONDS",
    "SEND_MAX_ATTEMPTS", "SES_CONNECT_TIMEOUT", "SES_READ_TIMEOUT", "Q_WORKERS", "Q_TIMEOUT", "Q_RETRY",
    "RATE_LIMITER", "SEND_SES_API", "SEND_DISPATCHERS",
)  # fmt: skip

Measured = TypeVar("Measured")


class Stopped(Exception):
    """SIGTERM to a harness: unwind so that every process it started is killed."""


def raise_stopped(signum: int, frame) -> None:
    raise Stopped(signal.strsignal(signum))


def wait(condition, *, timeout: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)
    return True


# --- processes ---------------------------------------------------------------------------------


class Processes:
    """Every process group a run starts, and the SES stub; ``close`` kills the groups, whatever
    happened, and ``stop_helpers`` the in-process helpers (the stub here; subclasses add theirs)."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen] = []
        self.stub: multiprocessing.Process | None = None

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        LOGS.mkdir(parents=True, exist_ok=True)
        with (LOGS / f"{name}.log").open("w") as log:
            process = subprocess.Popen(
                args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.started.append(process)
        return process

    @staticmethod
    def kill(process: subprocess.Popen) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)

    def close(self) -> None:
        for process in self.started:
            self.kill(process)

    def stop_helpers(self) -> None:
        if self.stub is not None:
            self.stub.terminate()
            self.stub.join(timeout=10)


def _serve_stub(*args) -> None:
    """The stub's process: forked after the harness's SIGTERM handler, which it must not keep."""
    from tests import ses_stub

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    ses_stub.serve_forever(*args)


def start_stub(processes: Processes, log_path: Path, latency: float) -> str:
    """The SES stub in a forked process, answering every send after ``latency`` seconds and logging
    every message it accepted to ``log_path`` (arrival time, accepted time, message id, addresses);
    returns its URL."""
    from tests import ses_stub

    port = pg.free_port()
    log_path.touch()
    ready = multiprocessing.get_context("fork").Event()
    stub = multiprocessing.get_context("fork").Process(
        target=_serve_stub, args=(port, ready, ses_stub.Timing(latency=latency), str(log_path)), daemon=True
    )
    stub.start()
    processes.stub = stub
    ready.wait(timeout=10)
    return f"http://127.0.0.1:{port}"


def start_web(processes: Processes, env: dict[str, str], names: list[str], threads: int) -> list[int]:
    """One gunicorn web process (one gthread worker of ``threads`` threads) per name; their ports,
    once every one answers."""
    from cobalt_mail.devserver import wait_for_port

    gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent)) or "gunicorn"
    ports = [pg.free_port() for _ in names]
    for name, port in zip(names, ports, strict=True):
        processes.start(name, [
            gunicorn, "cobalt_mail.wsgi:application", "--bind", f"127.0.0.1:{port}", "--workers", "1",
            "--worker-class", "gthread", "--threads", str(threads), "--keep-alive", "30", "--log-level", "warning",
        ], env)  # fmt: skip
    for port in ports:
        wait_for_port(port, timeout=60)
    return ports


def start_clusters(processes: Processes, env: dict[str, str], names: list[str]) -> list[subprocess.Popen]:
    """One ``manage.py qcluster`` per name; returns once every one has reported itself ready."""
    from bench.faults import cluster_ready

    clusters = [processes.start(name, [sys.executable, "manage.py", "qcluster"], env) for name in names]
    for cluster in clusters:
        if not wait(lambda cluster=cluster: cluster_ready(cluster.pid), timeout=90):
            raise RuntimeError(f"cluster {cluster.pid} did not report itself ready within 90 s (see {LOGS})")
    return clusters


class StubLog:
    """The stub's log, read as it grows."""

    def __init__(self, path: Path) -> None:
        self.file = path.open("rb")
        self.partial = b""

    def arrivals(self) -> list[tuple[float, list[str]]]:
        """(arrival time at SES, addresses) of every message logged since the last call."""
        data = self.partial + self.file.read()
        lines = data.split(b"\n")
        self.partial = lines.pop()
        found = []
        for line in lines:
            arrived, _accepted, _message_id, addresses = line.decode().split("\t")
            found.append((float(arrived), addresses.split(",")))
        return found


# --- the run's resources -----------------------------------------------------------------------


def postgres_unreachable() -> str | None:
    """Why the PostgreSQL server cannot be used, or None when it answers."""
    try:
        import psycopg

        with psycopg.connect(pg.database_url("postgres"), connect_timeout=3):
            pass
    except Exception as error:  # any failure means: no PostgreSQL to run on
        return f"{pg.server_url()}: {type(error).__name__}"
    return None


@dataclass(frozen=True)
class Loopback:
    """One benchmark's own resources on this machine (see the module's docstring)."""

    name: str  # bench.<name>: database and cluster cobalt_bench_<name>
    redis_url: str
    label: str  # how its printed lines start: "<label>: skipped: …" without PostgreSQL or Redis
    section: str  # its section's title in docs/performance.md

    @property
    def database(self) -> str:
        return f"cobalt_bench_{self.name}"

    def unreachable(self) -> str | None:
        """Why PostgreSQL or Redis cannot be used, or None when both answer."""
        reason = postgres_unreachable()
        if reason:
            return f"PostgreSQL at {reason}"
        try:
            import redis

            redis.Redis.from_url(self.redis_url, socket_connect_timeout=3).ping()
        except Exception as error:
            return f"Redis at {self.redis_url}: {type(error).__name__}"
        return None

    def child_env(self, stub_url: str, bench_url: str, **extra: str) -> dict[str, str]:
        from bench.run import child_env as base

        env = base(stub_url, bench_url, REDIS_URL=self.redis_url, Q_CLUSTER_NAME=self.database, **extra)
        for key in ENGINE_SETTINGS:  # an outer shell's engine settings must not leak into the run
            if key not in extra:
                env.pop(key, None)
        return env

    def setup_django(self, stub_url: str, **extra: str) -> tuple[str, list[str]]:
        """Create and migrate the database, configure Django in this process against it, the stub and
        Redis (flushed, the rate limiter reset); (the database's URL, the migration's notes)."""
        import redis

        bench_url = pg.recreate(self.database)
        for key in ENGINE_SETTINGS:
            os.environ.pop(key, None)
        os.environ.update(self.child_env(stub_url, bench_url, **extra))
        os.environ["DJANGO_SETTINGS_MODULE"] = "cobalt_mail.settings"
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        from django.core.management import call_command

        from bench.run import migrate
        from campaigns.delivery.ratelimit import limiter_reset

        notes: list[str] = []
        migrate(call_command, notes)
        redis.Redis.from_url(self.redis_url).flushdb()
        limiter_reset()
        return bench_url, notes

    def cleanup(self, processes: Processes, workdir: Path) -> None:
        processes.close()
        processes.stop_helpers()
        if "django" in sys.modules:
            with contextlib.suppress(Exception):
                from django.db import connections

                connections.close_all()
        with contextlib.suppress(Exception):
            import redis

            redis.Redis.from_url(self.redis_url).flushdb()
        with contextlib.suppress(Exception):
            pg.drop(self.database)
        shutil.rmtree(workdir, ignore_errors=True)

    def run(
        self, measure: Callable[[Path, Processes], Measured], processes: Processes | None = None
    ) -> Measured | None:
        """``measure(workdir, processes)``, then everything it started stopped and dropped, also on a
        failure or SIGTERM; None, with the "skipped" line printed, without PostgreSQL or Redis."""
        reason = self.unreachable()
        if reason:
            print(f"{self.label}: skipped: needs PostgreSQL and Redis ({reason})", flush=True)
            return None
        signal.signal(signal.SIGTERM, raise_stopped)
        processes = Processes() if processes is None else processes
        workdir = Path(tempfile.mkdtemp(prefix=f"cobalt-bench-{self.name}-"))
        try:
            return measure(workdir, processes)
        finally:
            self.cleanup(processes, workdir)

    def main(
        self,
        measure: Callable[[argparse.Namespace, Path, Processes], tuple[list[str], str]],
        args: argparse.Namespace,
        argv: list[str] | None,
        *,
        say: Callable[[str], None],
    ) -> int:
        """``run`` for a benchmark whose ``measure(args, workdir, processes)`` gives (lines, details):
        the lines printed, the details said (stderr), both appended under its section of
        docs/performance.md unless ``--no-report``; the exit status."""
        measured = self.run(functools.partial(measure, args))
        if measured is not None:
            lines, details = measured
            print("\n".join(lines), flush=True)
            say(details)
            if not args.no_report:
                append_report(self.section, lines, command_line(f"bench.{self.name}", argv), details=details)
        return 0


# --- arguments, the report, bench.run ----------------------------------------------------------


def argument_parser(doc: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(description=doc.split("\n\n")[0])


def arguments(parser: argparse.ArgumentParser, argv: list[str] | None, *, latency: bool) -> argparse.Namespace:
    """Add the options the benchmarks share (SES's latency where they run the stub, ``--no-report``) and parse."""
    if latency:
        parser.add_argument("--latency", type=float, default=0.05, help="seconds SES takes for every send")
    parser.add_argument("--no-report", action="store_true", help="do not append to docs/performance.md")
    return parser.parse_args(argv)


def command_line(module: str, argv: list[str] | None) -> str:
    """The command as the report shows it."""
    return (f"python -m {module} " + shlex.join(argv if argv is not None else sys.argv[1:])).strip()


def append_report(
    section: str, lines: list[str], command: str, *, details: str | None = None, machine: str | None = None
) -> None:
    """Append a dated block (command, machine, details, the lines) under ``section`` of docs/performance.md."""
    from bench.run import machine as this_machine

    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    details_item = [] if details is None else [f"- {details}"]
    block = ["", f"### {stamp}", "", f"- command: `{command}`", f"- machine: {machine or this_machine()}",
             *details_item, "", "```", *lines, "```", ""]  # fmt: skip
    text = REPORT.read_text() if REPORT.exists() else "# Performance\n"
    with REPORT.open("a") as report:
        if f"\n{section}" not in text:
            report.write(f"\n{section}\n")
        report.write("\n".join(block))


def run_module(module: str, prefixes: tuple[str, ...], *, echo_details: bool) -> list[str]:
    """For ``bench.run``: ``python -m module --no-report`` in its own process (its own Django
    settings and database), the lines that start with one of ``prefixes`` back."""
    env = {key: value for key, value in os.environ.items() if key not in {"DATABASE_URL", "REDIS_URL", "DEBUG"}}
    completed = pg.python_module(module, "--no-report", env=env, failure=f"{module} failed")
    if echo_details:
        print(completed.stderr, end="", file=sys.stderr, flush=True)  # the details line
    return [line for line in completed.stdout.splitlines() if line.startswith(prefixes)]


def sent_campaign_fields(now: datetime.datetime) -> dict:
    """A campaign's fields as if sent at ``now``: for seeds that write its recipients set-wise."""
    from campaigns.models import Campaign

    return {
        "from_email": "news@cobalt.example",
        "html_body": "<p>Hi</p>",
        "status": Campaign.Status.SENT,
        "started_at": now,
        "finished_at": now,
        "snapshot_at": now,
    }
