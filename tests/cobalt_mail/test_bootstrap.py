from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from audiences.models import Contact, ContactList
from campaigns.models import Campaign
from organisations.models import Organisation

pytestmark = pytest.mark.django_db


def test_bootstrap_creates_a_staff_login_and_demo_data_once(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STAFF_USERNAME", "newcomer")
    monkeypatch.setenv("STAFF_PASSWORD", "a-long-password-1")
    call_command("bootstrap")
    call_command("bootstrap")

    user = get_user_model().objects.get(username="newcomer")
    assert user.is_staff and user.check_password("a-long-password-1")
    national = Organisation.objects.get(parent=None)  # the demo clubs: tests/organisations/test_bootstrap_demo.py
    assert ContactList.objects.filter(organisation=national).count() == 1
    assert Contact.objects.filter(organisation=national).count() == 200
    assert Campaign.objects.filter(organisation=national).count() == 1
    assert Contact.objects.filter(email="bounce@simulator.amazonses.com").exists()
