"""`make run` (cobalt_mail/devserver.py) for real: its output, and Ctrl-C stopping every process it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cobalt_mail import devserver
from tests.conftest import ROOT, free_port, wait_until

STOP_LIMIT_SECONDS = 10.0


def processes() -> dict[int, tuple[int, int, str]]:
    """Every live process: pid -> (parent pid, session id, state), from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (command)"
        state, parent, session = fields[0], int(fields[1]), int(fields[3])
        if state != "Z":  # a zombie has stopped; only its parent's wait is missing
            table[int(entry.name)] = (parent, session, state)
    return table


def descendants(root: int) -> dict[int, int]:
    """pid -> session id of every live process below ``root``."""
    table = processes()
    found, frontier = {}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, session, _) in table.items():
            if ppid == parent and pid not in found:
                found[pid] = session
                frontier.append(pid)
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class DevServer:
    """`python -m cobalt_mail.devserver` on a temporary SQLite database and free ports."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        own = {"DATABASE_URL", "REDIS_URL", "COBALT_TESTING", "SEND_RATE", "LOG_LEVEL", "DEBUG"}
        env = {key: value for key, value in os.environ.items() if key not in own}
        env.update(
            DATABASE_URL=f"sqlite:///{tmp_path / 'run.sqlite3'}",
            RUN_PORT=str(self.port),
            LOCAL_SES_PORT=str(free_port()),
            SNS_SIMULATOR_PORT=str(free_port()),
            STAFF_PASSWORD="devserver-test-password",  # leaves var/staff-password.txt alone
            DEBUG="1",
        )
        self.env = env
        self.output_path = tmp_path / "output.txt"
        self.output = open(self.output_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cobalt_mail.devserver"],
            cwd=ROOT, env=env, stdout=self.output, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self.seen: dict[int, int] = {}  # every process it started so far -> its session

    def text(self) -> str:
        return self.output_path.read_text()

    def look(self) -> dict[int, int]:
        self.seen.update(descendants(self.process.pid))
        return self.seen

    def wait_for(self, condition, *, timeout: float, message: str) -> None:
        def check():
            self.look()
            if self.process.poll() is not None:
                raise AssertionError(f"make run ended early:\n{self.text()}")
            return condition()

        wait_until(check, timeout=timeout, interval=0.1, message=message)

    def survivors(self) -> list[str]:
        """Processes it started (or that share their sessions) still alive."""
        sessions = set(self.seen.values()) - {os.getsid(0)}
        live = processes()
        return [f"{pid} {command_line(pid)}" for pid, (_, session, _) in live.items()
                if pid in self.seen or session in sessions]  # fmt: skip

    def stop_and_check(self, *, second_signal_after: float) -> float:
        """Ctrl-C, another Ctrl-C later; returns the seconds until every process had gone."""
        self.look()
        started = time.monotonic()
        self.process.send_signal(signal.SIGINT)
        time.sleep(second_signal_after)
        self.look()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        while time.monotonic() - started < STOP_LIMIT_SECONDS + 5:
            if self.process.poll() is None:
                self.look()
            elif not self.survivors():
                break
            time.sleep(0.1)
        elapsed = time.monotonic() - started
        left = self.survivors()
        self.kill_everything()
        assert not left, f"still running {elapsed:.1f} s after Ctrl-C: {left}\n{self.text()}"
        return elapsed

    def kill_everything(self) -> None:
        for pid in [*self.seen, self.process.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.process.wait(timeout=10)
        self.output.close()


@pytest.fixture
def dev_server(tmp_path):
    server = DevServer(tmp_path)
    yield server
    if server.process.poll() is None or server.survivors():
        server.kill_everything()


def test_make_run_prints_a_short_banner_and_stops_everything_within_10_seconds_of_ctrl_c(dev_server):
    dev_server.wait_for(lambda: "Press Ctrl-C" in dev_server.text(), timeout=240, message="the banner")
    # Nothing more than errors while it idles: no line per local SES poll or per request.
    time.sleep(4)
    text = dev_server.text()
    names = " ".join(command_line(pid) for pid in dev_server.look())
    assert all(part in names for part in ("local_ses", "qcluster", "runserver", "ses_simulator"))

    elapsed = dev_server.stop_and_check(second_signal_after=1.0)

    assert elapsed < STOP_LIMIT_SECONDS
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) <= 8, text
    assert f"Cobalt Mail is running at http://127.0.0.1:{dev_server.port}/" in text
    assert "Log in as admin with the password in STAFF_PASSWORD." in text
    assert "Sending is limited to 20 messages/s by make run (SEND_RATE); to change it: SEND_RATE=100 make run" in text
    for noise in ("HTTP/1.1", "moto-api", "not reachable", "Traceback", "devserver-test-password"):
        assert noise not in text


@pytest.mark.parametrize("moment", ["after 3 seconds", "as the worker cluster starts"])
def test_ctrl_c_while_starting_stops_every_component_within_10_seconds(dev_server, moment):
    if moment == "after 3 seconds":
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            dev_server.look()
            time.sleep(0.1)
    else:
        dev_server.wait_for(
            lambda: any("qcluster" in command_line(pid) for pid in dev_server.look()),
            timeout=240,
            message="the worker cluster to start",
        )
        time.sleep(1.0)  # its main process is up, forking its sentinel and workers

    elapsed = dev_server.stop_and_check(second_signal_after=4.0)

    assert elapsed < STOP_LIMIT_SECONDS
    assert "Stopped." in dev_server.text()


def test_stopping_kills_a_component_whose_leader_exits_but_leaves_a_process_ignoring_sigterm():
    # A qcluster's sentinel ignores SIGTERM (campaigns/shutdown.py); if the main process goes
    # first, the rest of its group must still be stopped.
    script = (
        "import os, signal, sys, time\n"
        "if os.fork() == 0:\n"
        "    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "    print(os.getpid(), flush=True)\n"
        "    time.sleep(600)\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
        "time.sleep(600)\n"
    )
    supervisor = devserver.Supervisor(dict(os.environ))
    leader = supervisor.start("component", [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    stubborn = int(leader.stdout.readline())

    started = time.monotonic()
    supervisor.stop_all(grace=1.0)

    assert time.monotonic() - started < 5
    assert leader.poll() is not None
    assert stubborn not in processes()


def test_the_banner_names_the_password_file_and_the_send_rate_set_by_make_run(monkeypatch):
    monkeypatch.delenv("SEND_RATE", raising=False)
    monkeypatch.delenv("STAFF_PASSWORD", raising=False)
    monkeypatch.delenv("STAFF_USERNAME", raising=False)

    text = devserver.banner(devserver.development_environment())

    assert "Log in as admin with the password in var/staff-password.txt." in text
    assert "Sending is limited to 20 messages/s by make run (SEND_RATE)" in text
    monkeypatch.setenv("SEND_RATE", "250")
    assert "Sending is limited to 250 messages/s (SEND_RATE)." in devserver.banner(devserver.development_environment())
