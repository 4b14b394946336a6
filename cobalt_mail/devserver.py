"""`make run`: migrate, bootstrap, then run the local SES, the worker cluster, the web server and the
event simulator together until Ctrl-C, which stops all of them within 10 seconds.

What it prints is what a person needs: errors, one line per batch of simulated SES events, and a
banner once everything answers (the address, the login, where the password is, the send rate).
Each component runs in its own process group and session, so that stopping it reaches every
process it forked (a ``qcluster`` is a tree of processes, some of which ignore SIGTERM by design:
campaigns/shutdown.py). Stopping: SIGTERM to every group, up to ``STOP_GRACE_SECONDS`` for an
orderly exit, then SIGKILL to every group still holding a process, whether or not its leader has
already gone. Ctrl-C, SIGTERM and SIGHUP (the terminal closed) all stop everything, whenever they
come; a second one skips the grace period.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
HOST = os.environ.get("RUN_HOST", "127.0.0.1")
PORT = os.environ.get("RUN_PORT", "8000")
SES_PORT = os.environ.get("LOCAL_SES_PORT", "5005")
SIMULATOR_PORT = os.environ.get("SNS_SIMULATOR_PORT", "5006")
DEFAULT_SEND_RATE = "20"
STOP_GRACE_SECONDS = 7.0  # then SIGKILL: everything is gone within 10 s of Ctrl-C
START_TIMEOUT_SECONDS = 120.0


class Stop(Exception):
    """Ctrl-C, SIGTERM or SIGHUP arrived: stop everything."""


class ComponentFailed(Exception):
    """A component could not start, or stopped by itself."""


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise SystemExit(f"Nothing answered on port {port} after {timeout:.0f} s; see the messages above.")


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


class Supervisor:
    """Starts components in their own process groups and stops every one of them, whatever happens.

    Signals only set a flag (an exception raised in the middle of starting a process could lose
    its id); every wait here polls that flag.
    """

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.components: list[tuple[str, subprocess.Popen]] = []
        self.one_offs: set[int] = set()  # pids of commands that end by themselves
        self.signals = 0

    def install_signal_handlers(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame) -> None:
        self.signals += 1

    def check(self) -> None:
        if self.signals:
            raise Stop

    def sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.check()
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        self.check()

    def start(self, name: str, args: list[str], **popen: object) -> subprocess.Popen:
        self.check()
        process = subprocess.Popen(args, env=self.env, cwd=ROOT, start_new_session=True, **popen)
        self.components.append((name, process))
        return process

    def run(self, name: str, args: list[str]) -> str:
        """Run a one-off command to its end and return its output; its output is shown if it fails."""
        with tempfile.TemporaryFile(mode="w+") as output:
            process = self.start(name, args, stdout=output, stderr=subprocess.STDOUT)
            self.one_offs.add(process.pid)
            while process.poll() is None:
                self.sleep(0.1)
            output.seek(0)
            text = output.read()
        if process.returncode != 0:
            sys.stderr.write(text)
            raise ComponentFailed(f"{name} failed (exit status {process.returncode}); see above.")
        return text

    def wait_until_answers(self, name: str, url: str, process: subprocess.Popen) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ComponentFailed(f"The {name} stopped while starting; see the messages above.")
            try:
                with urllib.request.urlopen(url, timeout=2):
                    return
            except urllib.error.HTTPError:
                return  # it answers, which is all we wait for
            except OSError:
                self.sleep(0.2)
        raise ComponentFailed(f"The {name} did not answer at {url} within {START_TIMEOUT_SECONDS:.0f} s.")

    def watch(self) -> None:
        """Until a signal comes or a component stops by itself."""
        while True:
            for name, process in self.components:
                if process.pid not in self.one_offs and process.poll() is not None:
                    raise ComponentFailed(f"The {name} stopped unexpectedly (exit status {process.returncode}).")
            self.sleep(0.5)

    def stop_all(self, *, grace: float = STOP_GRACE_SECONDS) -> None:
        """SIGTERM every group; after ``grace`` (or at once on another signal) SIGKILL what is left."""
        groups = [process.pid for _, process in self.components]  # leader pid == group id
        signals_before = self.signals
        for group in groups:
            _signal_group(group, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and self.signals == signals_before:
            self._reap()
            if not any(_group_alive(group) for group in groups):
                return
            time.sleep(0.1)
        for group in groups:
            _signal_group(group, signal.SIGKILL)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and any(_group_alive(group) for group in groups):
            self._reap()
            time.sleep(0.05)
        self._reap()

    def _reap(self) -> None:
        for _, process in self.components:
            process.poll()


def _signal_group(group: int, signum: int) -> None:
    try:
        os.killpg(group, signum)
    except (ProcessLookupError, PermissionError):
        pass  # the whole group has gone already


def _group_alive(group: int) -> bool:
    """Whether any process is left in the group (the leader's zombie counts until it is reaped)."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def development_environment() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("DEBUG", "1")
    env.setdefault("AWS_SES_ENDPOINT_URL", f"http://127.0.0.1:{SES_PORT}")
    env.setdefault("AWS_ACCESS_KEY_ID", "local")
    env.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    env.setdefault("SEND_RATE", DEFAULT_SEND_RATE)
    env.setdefault("SITE_URL", f"http://{HOST}:{PORT}")
    env.setdefault("SNS_LOCAL_SIMULATOR", "1")
    env.setdefault("SNS_SIMULATOR_PORT", SIMULATOR_PORT)
    # Errors only from every component (no line per request, task or reload); the simulator
    # prints its own progress.
    env.setdefault("LOG_LEVEL", "WARNING")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def banner(env: dict[str, str]) -> str:
    username = env.get("STAFF_USERNAME", "admin")
    if env.get("STAFF_PASSWORD"):
        password = "the password in STAFF_PASSWORD"
    else:
        password = f"the password in {Path('var') / 'staff-password.txt'}"
    rate = env["SEND_RATE"]
    if "SEND_RATE" in os.environ:
        sending = f"Sending is limited to {rate} messages/s (SEND_RATE)."
    else:
        sending = (
            f"Sending is limited to {rate} messages/s by make run (SEND_RATE); to change it: SEND_RATE=100 make run"
        )
    return "\n".join(
        [
            "",
            f"  Cobalt Mail is running at http://{HOST}:{PORT}/",
            f"  Log in as {username} with {password}.",
            *demo_logins_line(),
            f"  {sending}",
            f"  Local SES at http://127.0.0.1:{SES_PORT}/ with simulated events. Press Ctrl-C to stop.",
            "",
        ]
    )


def demo_logins_line() -> list[str]:
    """The demo federation's logins (bootstrap made them), one per role, and their shared password."""
    password_file = ROOT / "var" / "demo-password.txt"
    if not password_file.exists():
        return []
    password = password_file.read_text().strip()
    return [f"  Demo clubs: club1-viewer, club1-editor, club1-sender, club1-admin, club2-admin, password {password}"]


def start_components(supervisor: Supervisor) -> None:
    manage = [PYTHON, str(ROOT / "manage.py")]
    supervisor.run("database migration", [*manage, "migrate", "--no-input", "-v", "0"])
    supervisor.run("first-run set-up", [*manage, "bootstrap"])  # it prints the password: not shown
    local_ses = supervisor.start("local SES", [PYTHON, "-m", "common.local_ses", "--port", SES_PORT])
    supervisor.wait_until_answers("local SES", f"http://127.0.0.1:{SES_PORT}/moto-api/data.json", local_ses)
    supervisor.run("sender verification", [*manage, "ses_verify_senders"])
    supervisor.start("worker cluster", [*manage, "qcluster"])
    # Its start-up banner goes to stdout; errors and warnings are logged to stderr.
    web = supervisor.start("web server", [*manage, "runserver", f"{HOST}:{PORT}"], stdout=subprocess.DEVNULL)
    supervisor.wait_until_answers("web server", f"http://{HOST}:{PORT}/login/", web)
    # Started once the webhook answers, so it has nothing to warn about.
    webhook = f"http://{HOST}:{PORT}/tracking/ses/"
    supervisor.start("event simulator", [*manage, "ses_simulator", "--webhook-url", webhook])


def main() -> None:
    ports = ((int(PORT), "RUN_PORT"), (int(SES_PORT), "LOCAL_SES_PORT"), (int(SIMULATOR_PORT), "SNS_SIMULATOR_PORT"))
    for port, what in ports:
        if not port_free(port):
            raise SystemExit(f"Port {port} is already in use. Stop what uses it, or set {what} to another port.")
    env = development_environment()
    supervisor = Supervisor(env)
    supervisor.install_signal_handlers()
    print("Starting Cobalt Mail (database, local SES, workers, web server, event simulator)…", flush=True)
    status = 0
    try:
        start_components(supervisor)
        print(banner(env), flush=True)
        supervisor.watch()
    except Stop:
        print("\nStopping…", flush=True)
    except ComponentFailed as error:
        print(f"{error} Stopping the others.", file=sys.stderr, flush=True)
        status = 1
    finally:
        supervisor.stop_all()
    print("Stopped.", flush=True)
    sys.exit(status)


if __name__ == "__main__":
    main()
