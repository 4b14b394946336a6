"""What every benchmark needs around PostgreSQL and ports: one server URL, throw-away databases.

``PG_URL`` names the server (default ``postgres://postgres@127.0.0.1:5432/postgres``); each
benchmark creates its own database on it, and drops it afterwards.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse, urlunparse

DEFAULT_SERVER = "postgres://postgres@127.0.0.1:5432/postgres"


def server_url() -> str:
    return os.environ.get("PG_URL") or DEFAULT_SERVER


def database_url(name: str) -> str:
    """The URL of database ``name`` on the benchmark server."""
    return urlunparse(urlparse(server_url())._replace(path=f"/{name}"))


def admin(statement: str) -> None:
    """Run one statement on the server's maintenance database (autocommit: CREATE/DROP DATABASE)."""
    import psycopg

    with psycopg.connect(database_url("postgres"), autocommit=True) as connection:
        connection.execute(statement)


def recreate(name: str) -> str:
    """Drop (disconnecting its sessions) and create database ``name``; returns its URL."""
    drop(name)
    admin(f"CREATE DATABASE {name}")
    return database_url(name)


def drop(name: str) -> None:
    admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def django_worker(module: str, database_url: str, *arguments: str) -> dict:
    """Run ``python -m module --worker ARGUMENTS`` against ``database_url`` in a fresh process (no
    DEBUG, which keeps every query in memory; no Redis) and return the JSON of its last line."""
    env = {
        **{key: value for key, value in os.environ.items() if key not in {"REDIS_URL", "DEBUG"}},
        "DATABASE_URL": database_url,
        "SECRET_KEY": secrets.token_urlsafe(32),
        "DEBUG": "0",
        "COBALT_TESTING": "0",
        "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "cobalt_mail.settings",
    }
    completed = python_module(module, "--worker", *arguments, env=env, failure=f"{module} worker failed")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def python_module(module: str, *arguments: str, env: dict[str, str], failure: str) -> subprocess.CompletedProcess:
    """Run ``python -m module ARGUMENTS`` from the project's root, its output captured; a non-zero exit
    raises RuntimeError with ``failure`` and the end of its stderr."""
    completed = subprocess.run(
        [sys.executable, "-m", module, *arguments],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{failure}:\n{completed.stderr[-3000:]}")
    return completed
