"""What every benchmark needs around PostgreSQL and ports: one server URL, throw-away databases.

``PG_URL`` names the server (default ``postgres://postgres@127.0.0.1:5432/postgres``); each
benchmark creates its own database on it, and drops it afterwards.
"""

from __future__ import annotations

import os
import socket
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
