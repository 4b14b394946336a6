"""`make run`: migrate, bootstrap, then run the local SES, the worker cluster, the event simulator
and the web server together until Ctrl-C, which stops all of them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
HOST = os.environ.get("RUN_HOST", "127.0.0.1")
PORT = os.environ.get("RUN_PORT", "8000")
SES_PORT = os.environ.get("LOCAL_SES_PORT", "5005")
SIMULATOR_PORT = os.environ.get("SNS_SIMULATOR_PORT", "5006")


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


def _stop_on_sigterm(signum, frame) -> None:
    raise KeyboardInterrupt  # run the same clean-up as Ctrl-C


def main() -> None:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    # Started from a script in the background, SIGINT may arrive ignored; Ctrl-C must always work.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    ports = ((int(PORT), "RUN_PORT"), (int(SES_PORT), "LOCAL_SES_PORT"), (int(SIMULATOR_PORT), "SNS_SIMULATOR_PORT"))
    for port, what in ports:
        if not port_free(port):
            raise SystemExit(f"Port {port} is already in use. Stop what uses it, or set {what} to another port.")
    env = dict(os.environ)
    env.setdefault("DEBUG", "1")
    env.setdefault("AWS_SES_ENDPOINT_URL", f"http://127.0.0.1:{SES_PORT}")
    env.setdefault("AWS_ACCESS_KEY_ID", "local")
    env.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    env.setdefault("SEND_RATE", "20")
    env.setdefault("SITE_URL", f"http://{HOST}:{PORT}")
    env.setdefault("SNS_LOCAL_SIMULATOR", "1")
    manage = [PYTHON, str(ROOT / "manage.py")]

    subprocess.run([*manage, "migrate", "--no-input", "-v", "0"], env=env, check=True, cwd=ROOT)
    subprocess.run([*manage, "bootstrap"], env=env, check=True, cwd=ROOT)

    children: list[subprocess.Popen] = []

    def start(args: list[str]) -> None:
        children.append(subprocess.Popen(args, env=env, cwd=ROOT, start_new_session=True))

    try:
        start([PYTHON, "-m", "moto.server", "-H", "127.0.0.1", "-p", SES_PORT])
        wait_for_port(int(SES_PORT))
        subprocess.run([*manage, "ses_verify_senders"], env=env, check=True, cwd=ROOT)
        start([*manage, "qcluster"])
        if (ROOT / "tracking" / "management" / "commands" / "ses_simulator.py").exists():
            start([*manage, "ses_simulator", "--webhook-url", f"http://{HOST}:{PORT}/tracking/ses/"])
        start([*manage, "runserver", f"{HOST}:{PORT}"])
        wait_for_port(int(PORT))
        print(f"\n  Cobalt Mail is running at http://{HOST}:{PORT}/  (log in with the staff login above)")
        print(f"  Local SES: http://127.0.0.1:{SES_PORT}/  ·  Press Ctrl-C to stop everything.\n", flush=True)
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        print("A component stopped unexpectedly; stopping the others.", file=sys.stderr)
    except KeyboardInterrupt:
        print("\nStopping…")
    finally:
        stop_all(children)


def stop_all(children: list[subprocess.Popen]) -> None:
    """SIGTERM every component's process group, SIGKILL what is still there after 8 s.

    A qcluster stops within a few seconds: its dispatchers stop between messages and give back what
    they claimed (campaigns/shutdown.py).
    """
    for child in children:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + 8
    try:
        for child in children:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        pass  # a second Ctrl-C, or too slow: stop the rest at once
    for child in children:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    print("Stopped.")


if __name__ == "__main__":
    main()
