"""Login throttling: repeated failures lock a username, and an address, out for a while."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

pytestmark = pytest.mark.django_db

RIGHT = "correct-horse-battery"  # the staff_user fixture's password


def log_in(client, username: str, password: str, *, address: str = "192.0.2.10", **headers):
    return client.post("/login/", {"username": username, "password": password}, REMOTE_ADDR=address, **headers)


def logged_in(client) -> bool:
    return "_auth_user_id" in client.session


def test_it_refuses_the_right_password_after_20_wrong_ones_until_the_cool_off_ends(client, staff_user, caplog):
    caplog.set_level(logging.INFO, logger="cobalt_mail.logins")
    answers = [log_in(client, "stella.staff", f"guess-{number}").status_code for number in range(20)]

    refused = log_in(client, "stella.staff", RIGHT)

    assert answers == [200] * 9 + [429] * 11
    assert refused.status_code == 429
    assert not logged_in(client)
    page = refused.content.decode()
    assert "Too many failed logins for this username and from your network address." in page
    assert "Logging in is blocked until" in page
    assert "in about 15 minutes" in page
    assert 1 <= int(refused["Retry-After"]) <= 15 * 60
    assert "Login locked out: username 'stella.staff' after 10 failed logins" in caplog.text

    with time_machine.travel(timezone.now() + timedelta(minutes=14)):
        assert log_in(client, "stella.staff", RIGHT).status_code == 429
    with time_machine.travel(timezone.now() + timedelta(minutes=16)):
        allowed = log_in(client, "stella.staff", RIGHT)

    assert allowed.status_code == 302
    assert logged_in(client)
    assert "Login lock-out ended: username 'stella.staff' may log in again since" in caplog.text


def test_a_locked_out_username_is_refused_from_any_address(client, staff_user):
    for number in range(10):
        log_in(client, "stella.staff", f"guess-{number}", address="192.0.2.10")

    refused = log_in(client, "stella.staff", RIGHT, address="198.51.100.20")

    assert refused.status_code == 429
    assert "for this username." in refused.content.decode()
    assert not logged_in(client)


def test_an_address_that_tries_many_usernames_is_locked_out_for_all_of_them(client, staff_user):
    for number in range(10):
        log_in(client, f"someone-{number}", "guess", address="192.0.2.10")

    from_there = log_in(client, "stella.staff", RIGHT, address="192.0.2.10")
    assert from_there.status_code == 429
    assert "from your network address." in from_there.content.decode()

    from_elsewhere = log_in(client, "stella.staff", RIGHT, address="198.51.100.20")
    assert from_elsewhere.status_code == 302
    assert logged_in(client)


def test_behind_the_tls_proxy_it_counts_the_address_the_proxy_saw_not_the_proxy(client, staff_user, settings):
    settings.BEHIND_TLS_PROXY = True
    for number in range(10):
        # The client may put anything in X-Forwarded-For; the proxy appends the address it saw.
        log_in(client, f"someone-{number}", "guess", address="127.0.0.1", HTTP_X_FORWARDED_FOR="10.0.0.1, 192.0.2.10")

    attacker = log_in(client, "stella.staff", RIGHT, address="127.0.0.1", HTTP_X_FORWARDED_FOR="192.0.2.10")
    colleague = log_in(client, "stella.staff", RIGHT, address="127.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.20")

    assert attacker.status_code == 429
    assert colleague.status_code == 302
