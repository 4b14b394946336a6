"""Settings helpers fail loudly on bad values."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from cobalt_mail.env import database_from_url, env_bool, env_float, env_int, env_list, env_str


def test_booleans_accept_the_usual_spellings(monkeypatch):
    monkeypatch.setenv("FLAG", "Yes")
    assert env_bool("FLAG") is True
    monkeypatch.setenv("FLAG", "off")
    assert env_bool("FLAG", default=True) is False


def test_an_empty_boolean_keeps_the_default(monkeypatch):
    monkeypatch.setenv("SNS_VERIFY_SIGNATURES", "")
    assert env_bool("SNS_VERIFY_SIGNATURES", default=True) is True
    monkeypatch.setenv("FLAG", "  ")
    assert env_bool("FLAG") is False


def test_a_bad_boolean_stops_start_up_naming_the_variable(monkeypatch):
    monkeypatch.setenv("FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="FLAG='maybe' is not a boolean"):
        env_bool("FLAG")


def test_numbers_are_checked_for_type_and_minimum(monkeypatch):
    monkeypatch.setenv("N", "abc")
    with pytest.raises(ImproperlyConfigured, match="not a whole number"):
        env_int("N", 1)
    monkeypatch.setenv("N", "0")
    with pytest.raises(ImproperlyConfigured, match="minimum is 1"):
        env_int("N", 1, minimum=1)
    monkeypatch.setenv("RATE", "2.5")
    assert env_float("RATE", None) == 2.5


def test_secrets_can_come_from_a_file(monkeypatch, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("s3cr3t\n")
    monkeypatch.setenv("API_KEY_FILE", str(secret))
    assert env_str("API_KEY") == "s3cr3t"


def test_lists_are_comma_separated(monkeypatch):
    monkeypatch.setenv("HOSTS", "a.example, b.example,,")
    assert env_list("HOSTS") == ["a.example", "b.example"]


def test_database_urls_for_postgres_and_sqlite(tmp_path):
    pg = database_from_url("postgres://user:p%40ss@db.internal:6543/cobalt", base_dir=tmp_path)
    assert (pg["ENGINE"], pg["NAME"], pg["USER"], pg["PASSWORD"], pg["HOST"], pg["PORT"]) == (
        "django.db.backends.postgresql",
        "cobalt",
        "user",
        "p@ss",
        "db.internal",
        "6543",
    )
    assert database_from_url("sqlite:///var/db.sqlite3", base_dir=tmp_path)["NAME"] == str(tmp_path / "var/db.sqlite3")
    assert database_from_url("sqlite:////tmp/x.sqlite3", base_dir=tmp_path)["NAME"] == "/tmp/x.sqlite3"


def test_an_unknown_database_scheme_is_refused_with_an_example():
    with pytest.raises(ImproperlyConfigured, match="postgres://user:password@host:5432/name"):
        database_from_url("mysql://x/y", base_dir=None)
