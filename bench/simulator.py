"""The local SES event simulator against a real webhook on the embedded default (SQLite), as `make run`.

For each size (``--messages 5000,20000``): a fresh SQLite database with one campaign of that many
recipients, the local SES of `make run` (``common.local_ses``) holding one accepted message
per recipient (tagged, so every event matches its recipient), and ``manage.py runserver`` as the
webhook, as `make run` runs them. Then, each on its own copy of the database:

- the simulator: ``manage.py ses_simulator --once`` (reads each message once, posts over
  ``--connections`` keep-alive connections): events/s posted and accepted, and its peak memory;
- the old simulator (``tracking/simulator.py`` at ``--old-commit``, default the commit before the
  change): its read-and-plan pass (every message fetched through ``/moto-api/data.json``) for its
  peak memory, and its one-at-a-time posting for ``--old-seconds`` to measure its rate.

Lines: ``simulator N: new X events/s (peak M MiB) · old Y events/s (peak M MiB) · Z x``.
Run: ``.venv/bin/python -m bench.simulator [--messages 5000,20000]``; ``make bench`` runs it with
the defaults.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
OLD_COMMIT = "64d7a29"
TOPIC_ARN = "arn:aws:sns:us-east-1:000000000000:cobalt-local-simulator"  # settings.SNS_SIMULATOR_TOPIC_ARN

SEED = """
from campaigns.models import Campaign, Contact, ContactList, Recipient
from tracking.models import CampaignStats
n = {count}
contact_list = ContactList.objects.create(name="Bench")
contacts = [Contact(email=f"reader{{i}}@example.org", first_name=f"R{{i}}") for i in range(n)]
Contact.objects.bulk_create(contacts, batch_size=1000)
campaign = Campaign.objects.create(name="Bench", subject="News", from_email="news@cobalt.example",
                                   html_body="<p>x</p>", status="sent")
CampaignStats.objects.create(campaign=campaign, sent=n)
Recipient.objects.bulk_create([Recipient(campaign=campaign, contact=c, email=c.email, status=Recipient.Status.SENT)
                               for c in Contact.objects.order_by("id")], batch_size=1000)
first = Recipient.objects.order_by("id").values_list("id", flat=True).first()
print(campaign.pk, first)
"""

OLD_RUNNER = """
import sys, time, django
django.setup()
sys.path.insert(0, {old_dir!r})
from pathlib import Path
from old_simulator import Simulator, SigningIdentity, CertificateServer
identity = SigningIdentity(Path({identity!r}))
server = CertificateServer(identity, port={cert_port})
sim = Simulator(webhook_url={webhook!r}, ses_endpoint={ses!r}, state_path=Path({state!r}), identity=identity,
                cert_url=server.cert_url, topic_arn={topic!r})
if {poll_only}:
    sim.poll()
else:
    sim.poll()
    print("planned", time.time(), flush=True)
    sim.flush(everything=True)
"""


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(url: str, timeout: float = 120) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


def peak_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_watched(args: list[str], env: dict, *, seconds: float | None = None) -> tuple[float, float, str]:
    """Run ``args``; returns (wall seconds, peak MiB, output); stopped after ``seconds`` if given."""
    process = subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(process.stdout), daemon=True)
    reader.start()
    started, peak = time.monotonic(), 0.0
    while process.poll() is None:
        peak = max(peak, peak_mib(process.pid))
        if seconds is not None and time.monotonic() - started > seconds:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    process.wait()
    elapsed = time.monotonic() - started
    reader.join(timeout=5)
    return elapsed, peak, "".join(output)


class Setup:
    """A seeded SQLite database and a local SES holding ``count`` tagged messages."""

    def __init__(self, count: int, workdir: Path) -> None:
        self.workdir = workdir
        self.database = workdir / "seeded.sqlite3"
        self.cert_port = free_port()
        self.ses_port = free_port()
        self.env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "COBALT_TESTING", "DATABASE_URL"}}
        self.env.update(
            DEBUG="1", LOG_LEVEL="WARNING", SNS_LOCAL_SIMULATOR="1", SNS_SIMULATOR_PORT=str(self.cert_port),
            AWS_ACCESS_KEY_ID="local", AWS_SECRET_ACCESS_KEY="local", DJANGO_SETTINGS_MODULE="cobalt_mail.settings",
            AWS_SES_ENDPOINT_URL=f"http://127.0.0.1:{self.ses_port}", PYTHONPATH=str(ROOT),
        )  # fmt: skip
        env = self.env_for(self.database)
        manage = [PYTHON, str(ROOT / "manage.py")]
        subprocess.run([*manage, "migrate", "-v", "0"], env=env, cwd=ROOT, check=True)
        seeded = subprocess.run([*manage, "shell", "-c", SEED.format(count=count)], env=env, cwd=ROOT, check=True,
                                capture_output=True, text=True).stdout.split()  # fmt: skip
        self.campaign, first_recipient = int(seeded[-2]), int(seeded[-1])
        self.ses = subprocess.Popen([PYTHON, "-m", "common.local_ses", "--port", str(self.ses_port)], cwd=ROOT)
        self.ses_url = f"http://127.0.0.1:{self.ses_port}"
        wait_for(f"{self.ses_url}/cobalt-api/ses/messages?limit=1")
        self.fill(count, first_recipient)

    def env_for(self, database: Path) -> dict:
        return {**self.env, "DATABASE_URL": f"sqlite:///{database}"}

    def fill(self, count: int, first_recipient: int) -> None:
        import boto3

        client = boto3.client("ses", region_name="us-east-1", endpoint_url=self.ses_url,
                              aws_access_key_id="local", aws_secret_access_key="local")  # fmt: skip
        client.verify_domain_identity(Domain="cobalt.example")
        body = (
            "<p>Autumn news. " + "Lorem ipsum dolor sit amet. " * 40 + '<a href="https://example.com/news">Read</a></p>'
        )

        def send(number: int) -> None:
            address = f"reader{number}@example.org"
            raw = (f"From: news@cobalt.example\r\nTo: {address}\r\nSubject: Autumn news\r\n"
                   f"X-SES-CONFIGURATION-SET: cobalt-mail\r\n"
                   f"X-SES-MESSAGE-TAGS: campaign={self.campaign}, recipient={first_recipient + number}\r\n"
                   f"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{body}")  # fmt: skip
            client.send_raw_email(Source="news@cobalt.example", Destinations=[address], RawMessage={"Data": raw})

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(send, range(count)))

    def webhook(self, database: Path) -> tuple[subprocess.Popen, str]:
        port = free_port()
        server = subprocess.Popen(
            [PYTHON, str(ROOT / "manage.py"), "runserver", "--noreload", f"127.0.0.1:{port}"],
            env=self.env_for(database), cwd=ROOT, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for(f"http://127.0.0.1:{port}/login/")
        return server, f"http://127.0.0.1:{port}/tracking/ses/"

    def copy(self, name: str) -> Path:
        target = self.workdir / f"{name}.sqlite3"
        shutil.copyfile(self.database, target)
        return target

    def events(self, database: Path) -> int:
        import sqlite3

        with sqlite3.connect(database) as connection:
            return connection.execute("SELECT COUNT(*) FROM tracking_event").fetchone()[0]

    def close(self) -> None:
        self.ses.terminate()
        self.ses.wait()


def measure_new(setup: Setup, connections: int) -> tuple[float, float, int]:
    database = setup.copy(f"new{connections}")
    server, webhook = setup.webhook(database)
    try:
        args = [PYTHON, str(ROOT / "manage.py"), "ses_simulator", "--once", "--webhook-url", webhook,
                "--ses-endpoint", setup.ses_url, "--cert-port", str(setup.cert_port),
                "--connections", str(connections)]  # fmt: skip
        elapsed, peak, output = run_watched(args, setup.env_for(database))
    finally:
        server.terminate()
        server.wait()
    # "Posted N events in S s.": the command's own timing, without Django's start-up.
    words = output.rsplit("Posted ", 1)[1].split() if "Posted " in output else ["0", "events", "in", str(elapsed)]
    return int(words[0]) / float(words[3]), peak, setup.events(database)


def measure_old(setup: Setup, old_dir: Path, *, seconds: float) -> tuple[float, float]:
    """(events/s while posting for ``seconds``, peak MiB of its read-and-plan pass)."""
    database = setup.copy("old")
    server, webhook = setup.webhook(database)
    env = setup.env_for(database)

    def runner(poll_only: bool) -> list[str]:
        script = OLD_RUNNER.format(old_dir=str(old_dir), identity=str(old_dir / "identity"), cert_port=setup.cert_port,
                                   webhook=webhook, ses=setup.ses_url, state=str(old_dir / f"state-{poll_only}.json"),
                                   topic=TOPIC_ARN, poll_only=poll_only)  # fmt: skip
        return [PYTHON, "-c", script]

    try:
        _, peak, _ = run_watched(runner(True), env)
        before = setup.events(database)
        _, _, output = run_watched(runner(False), env, seconds=seconds)
        ended = time.time()
        # Posting only (its read-and-plan pass and Django's start-up left out, as for the new one).
        planned_at = float(output.split("planned ", 1)[1].split()[0]) if "planned " in output else ended - seconds
        rate = (setup.events(database) - before) / max(0.1, ended - planned_at)
    finally:
        server.terminate()
        server.wait()
    return rate, peak


def run(*, sizes: tuple[int, ...] = (5000, 20000), connections: int = 32, old_seconds: float = 60.0) -> list[str]:
    lines = []
    workdir = Path(tempfile.mkdtemp(prefix="cobalt-bench-simulator-"))
    old_dir = workdir / "old"
    old_dir.mkdir()
    old_source = subprocess.run(["git", "show", f"{OLD_COMMIT}:tracking/simulator.py"], cwd=ROOT,
                                capture_output=True, text=True, check=True).stdout  # fmt: skip
    (old_dir / "old_simulator.py").write_text(old_source)
    try:
        for size in sizes:
            size_dir = workdir / f"size-{size}"  # a fresh database per size
            size_dir.mkdir()
            setup = Setup(size, size_dir)
            try:
                new_rate, new_peak, stored = measure_new(setup, connections)
                old_rate, old_peak = measure_old(setup, old_dir, seconds=old_seconds)
            finally:
                setup.close()
            lines.append(
                f"simulator {size:,} messages: {new_rate:,.0f} events/s over {connections} connections "
                f"(peak {new_peak:,.0f} MiB, {stored:,} events stored) · old one at a time {old_rate:,.0f} events/s "
                f"(read-and-plan peak {old_peak:,.0f} MiB) · {new_rate / max(old_rate, 0.01):.1f}x"
            )
            print(lines[-1], flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--messages", default="5000,20000", help="sizes, comma-separated")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--old-seconds", type=float, default=60.0, help="how long to let the old one post")
    options = parser.parse_args(argv)
    sizes = tuple(int(size) for size in options.messages.split(",") if size)
    run(sizes=sizes, connections=options.connections, old_seconds=options.old_seconds)


if __name__ == "__main__":
    main()
