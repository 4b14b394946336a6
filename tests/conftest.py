"""Shared fixtures: the local SES server, staff users, real qcluster workers and the browser."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from campaigns.delivery import ratelimit
from organisations.models import Membership, Organisation, Role, sole_organisation_id
from tests.ses_stub import StubSES

# The signed-SNS fixtures (tests/sns.py): the webhook tests and every test fed through the webhook.
from tests.sns import cert_server, notify, post, signed, signing, sns_settings  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Playwright's sync API runs an event loop in the test thread; Django's ORM must still be usable.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
# boto3 must never find real credentials in tests.
os.environ["AWS_ACCESS_KEY_ID"] = "testing"
os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
os.environ.pop("AWS_SESSION_TOKEN", None)
os.environ.pop("AWS_PROFILE", None)
logging.getLogger("werkzeug").setLevel(logging.ERROR)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- local SES (moto server on loopback) ----------------------------------------------------------


class LocalSES:
    """A moto SES server on a free loopback port; boto3 talks to it over real HTTP."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()

    def reset(self, sender_domains: set[str]) -> None:
        requests.post(f"{self.url}/moto-api/reset", timeout=10).raise_for_status()
        import boto3

        client = boto3.client("ses", region_name="us-east-1", endpoint_url=self.url)
        for domain in sender_domains:
            client.verify_domain_identity(Domain=domain)

    def sent(self) -> list[dict]:
        """Every raw message the server accepted: {"id", "source", "destinations", "raw_data"}."""
        data = requests.get(f"{self.url}/moto-api/data.json", timeout=10).json()
        return data.get("ses", {}).get("RawMessage", [])


@pytest.fixture(scope="session")
def ses_server() -> LocalSES:
    server = LocalSES()
    yield server
    server.server.stop()


@pytest.fixture
def ses(ses_server: LocalSES, settings) -> LocalSES:
    """Send through django-ses to the local SES server (undoing the test runner's locmem mailers)."""
    settings.MAILERS = settings.COBALT_MAILERS
    settings.AWS_SES_REGION_ENDPOINT_URL = ses_server.url
    settings.AWS_SES_REGION_NAME = "us-east-1"
    settings.SEND_RATE = 1000
    ses_server.reset({address.rpartition("@")[2] for address in settings.SENDER_ADDRESSES})
    from campaigns.delivery import ratelimit

    ratelimit.limiter_reset()
    return ses_server


# --- users ------------------------------------------------------------------------------------------


@pytest.fixture
def organisation(db):
    """The installation's organisation (a fresh installation has exactly one)."""
    return Organisation.objects.get(pk=sole_organisation_id())


@pytest.fixture
def staff_user(django_user_model, organisation):
    """An administrator of the installation's one organisation (every page open to them)."""
    user = django_user_model.objects.create_user(
        username="stella.staff", password="correct-horse-battery", is_staff=True, email="stella@cobalt.example"
    )
    Membership.objects.create(user=user, organisation=organisation, role=Role.ADMINISTRATOR)
    return user


@pytest.fixture
def member_user(django_user_model):
    return django_user_model.objects.create_user(username="norm.member", password="correct-horse-battery")


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


# --- real qcluster workers --------------------------------------------------------------------------


def database_url_for_subprocess() -> str:
    from django.db import connection

    settings = connection.settings_dict
    if settings["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{settings['NAME']}"
    auth = settings["USER"] + (f":{settings['PASSWORD']}" if settings["PASSWORD"] else "")
    return f"postgres://{auth}@{settings['HOST'] or 'localhost'}:{settings['PORT'] or 5432}/{settings['NAME']}"


class Workers:
    """Real `manage.py qcluster` processes against the test database and the local SES."""

    def __init__(self, env: dict) -> None:
        self.env = env
        self.processes: list[subprocess.Popen] = []
        # One folder per test run (COBALT_TEST_DB_SUFFIX), so that two runs keep their own logs.
        self.logs = ARTIFACTS / "qcluster" / os.environ.get("COBALT_TEST_DB_SUFFIX", "main")
        self.logs.mkdir(parents=True, exist_ok=True)

    def start(self, count: int = 1, **extra_env: str) -> list[subprocess.Popen]:
        started = []
        for _ in range(count):
            log = open(self.logs / f"worker-{len(self.processes)}.log", "w")
            process = subprocess.Popen(
                [sys.executable, str(ROOT / "manage.py"), "qcluster"],
                env={**self.env, **extra_env},
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self.processes.append(process)
            started.append(process)
        return started

    def kill(self, process: subprocess.Popen) -> None:
        """SIGKILL the whole process group: the cluster and its worker children die at once."""
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def stop_all(self) -> None:
        """SIGKILL what is left: every test has waited for its own outcome by now and the engine
        is crash-safe by design, so nothing is gained by waiting for an orderly stop."""
        for process in self.processes:
            if process.poll() is None:
                self.kill(process)


@pytest.fixture
def workers(transactional_db, ses, settings):
    from django_q.brokers import get_broker

    get_broker().purge_queue()
    env = {
        **os.environ,
        "COBALT_TESTING": "1",
        "DATABASE_URL": database_url_for_subprocess(),
        "AWS_SES_ENDPOINT_URL": ses.url,
        "SEND_RATE": str(settings.SEND_RATE),
        "SEND_TASK_SECONDS": "10",
        "Q_WORKERS": "2",
        "SITE_URL": settings.SITE_URL,
    }
    pool = Workers(env)
    yield pool
    pool.stop_all()
    get_broker().purge_queue()


def wait_until(condition, *, timeout: float = 60.0, interval: float = 0.25, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"Timed out after {timeout:.0f} s waiting for {message}")


# --- browser ----------------------------------------------------------------------------------------


def browser_missing_reason() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"Chromium not found at {CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the playwright package is not installed"
    return None


# Tests taking these fixtures start real qcluster processes / drive Chromium: `make test-fast`
# leaves both out (-m "not browser and not worker"), so they are marked here, not by hand.
WORKER_FIXTURES = frozenset({"workers", "clusters", "dev_server"})  # dev_server: `make run`, qcluster included
BROWSER_FIXTURES = frozenset({"page", "browser"})
BROWSER_TESTS = ROOT / "tests" / "e2e"


def slow_tests_mark(items) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & WORKER_FIXTURES and "worker" not in item.keywords:
            item.add_marker(pytest.mark.worker)
        if (item.path.is_relative_to(BROWSER_TESTS) or fixtures & BROWSER_FIXTURES) and "browser" not in item.keywords:
            item.add_marker(pytest.mark.browser)


def pytest_collection_modifyitems(config, items):
    slow_tests_mark(items)
    reason = browser_missing_reason()
    browser_tests = [item for item in items if "browser" in item.keywords]
    if reason and browser_tests:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            raise pytest.UsageError(f"REQUIRE_BROWSER=1 but {reason}: {len(browser_tests)} browser tests cannot run.")
        for item in browser_tests:
            item.add_marker(pytest.mark.skip(reason=reason))
        config._cobalt_browser_skipped = (len(browser_tests), reason)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    skipped = getattr(config, "_cobalt_browser_skipped", None)
    if skipped:
        count, reason = skipped
        terminalreporter.write_line(
            f"!!! {count} BROWSER TESTS WERE SKIPPED: {reason}. Set REQUIRE_BROWSER=1 to make this a failure.",
            red=True,
            bold=True,
        )


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture
def logged_in_page(page, live_server, staff_user):
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", staff_user.username)
    page.fill("#id_password", "correct-horse-battery")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
    return page


@pytest.fixture
def stub_ses(settings):
    """The local SES stub (tests/ses_stub.py) wired into django-ses, recording every message."""
    with StubSES() as stub:
        settings.MAILERS = settings.COBALT_MAILERS
        settings.AWS_SES_REGION_ENDPOINT_URL = stub.url
        settings.AWS_SES_REGION_NAME = "us-east-1"
        settings.SEND_RATE = 1000
        ratelimit.limiter_reset()
        yield stub


@pytest.fixture
def engine_tick_schedule(db):
    """The every-minute engine tick, as migration 0002 creates it (also without migrations)."""
    from django.utils import timezone
    from django_q.models import Schedule

    schedule, _ = Schedule.objects.update_or_create(
        name="engine-tick",
        defaults={
            "func": "campaigns.tasks.engine_tick",
            "schedule_type": Schedule.MINUTES,
            "minutes": 1,
            "repeats": -1,
            "next_run": timezone.now(),
        },
    )
    return schedule


@pytest.fixture
def clusters(workers):
    """Real qcluster processes (the shared ``workers`` fixture, which SIGKILLs them at the end)."""
    return workers
