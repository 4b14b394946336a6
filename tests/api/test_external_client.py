"""A membership site's own client, run for real: the nightly-sync command of docs/api.md (taken from
that file) talks with ``requests`` to a live server, and a receiver on loopback gets a signed
webhook and checks it with the README's snippet (taken from the README)."""

from __future__ import annotations

import re
import sys
import types
from datetime import timedelta
from pathlib import Path

import pytest

from api import webhooks
from api.keys import api_key_create
from audiences.models import Contact, ContactList, Subscription
from campaigns.models import Campaign, CampaignTemplate
from organisations.models import Role
from stats.models import CampaignStats
from tests.api.test_webhooks import Receiver
from tests.factories import CampaignFactory, RecipientFactory
from tests.sns import new_id
from tests.tracking.records import event

ROOT = Path(__file__).resolve().parents[2]


def python_block(path: Path, containing: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.DOTALL)
    return next(block for block in blocks if containing in block)


class _Rows(list):
    def values(self, *fields):
        return [{field: getattr(row, "pk" if field == "pk" else field) for field in fields} for row in self]

    def update(self, **changes):
        for row in self:
            for name, value in changes.items():
                setattr(row, name, value)
        return len(self)


class FakeMembershipSite:
    """The membership site's models, as the command uses them (``members.models``)."""

    def __init__(self, members: list[dict]) -> None:
        self.members = [types.SimpleNamespace(email_problem="", is_current=True, **member) for member in members]
        self.settings: dict[str, str] = {}
        site = self

        class Manager:
            def filter(self, **lookups):
                rows = site.members
                if "is_current" in lookups:
                    rows = [m for m in rows if m.is_current == lookups["is_current"]]
                if "email__iexact" in lookups:
                    rows = [m for m in rows if m.email.lower() == lookups["email__iexact"].lower()]
                return _Rows(rows)

        class Member:
            objects = Manager()

        class Setting:
            @staticmethod
            def get(name):
                return site.settings.get(name)

            @staticmethod
            def set(name, value):
                site.settings[name] = value

        self.module = types.ModuleType("members.models")
        self.module.Member, self.module.Setting = Member, Setting

    def problem_of(self, email: str) -> str:
        return next(m.email_problem for m in self.members if m.email == email)


@pytest.fixture
def membership_site(monkeypatch):
    def install(members: list[dict]) -> FakeMembershipSite:
        site = FakeMembershipSite(members)
        monkeypatch.setitem(sys.modules, "members", types.ModuleType("members"))
        monkeypatch.setitem(sys.modules, "members.models", site.module)
        return site

    return install


def run_nightly_sync() -> None:
    namespace: dict = {"__name__": "cobalt_sync"}
    exec(python_block(ROOT / "docs" / "api.md", "class Command(BaseCommand)"), namespace)
    namespace["Command"]().handle()


def members_list(club) -> set[str]:
    members = ContactList.objects.get(organisation=club, name="Members")
    return set(
        Subscription.objects.filter(contact_list=members, status=Subscription.Status.SUBSCRIBED).values_list(
            "contact__email", flat=True
        )
    )


@pytest.mark.django_db(transaction=True)
def test_the_documented_nightly_sync_and_a_signed_webhook_work_against_a_live_server(
    live_server, club, notify, membership_site, monkeypatch, settings
):
    monkeypatch.setattr("api.feed.SETTLE", timedelta(0))  # read what was just written
    _, raw = api_key_create(organisation=club, role=Role.EDITOR, name="Membership site")
    monkeypatch.setenv("COBALT_URL", live_server.url)
    monkeypatch.setenv("COBALT_API_KEY", raw)
    site = membership_site(
        [
            {"pk": 1, "email": "ann@riverside.example", "first_name": "Ann", "last_name": "Oar"},
            {"pk": 2, "email": "bob@riverside.example", "first_name": "Bob", "last_name": "Cox"},
            {"pk": 3, "email": "cy@riverside.example", "first_name": "Cy", "last_name": "Stroke"},
        ]
    )

    run_nightly_sync()

    assert members_list(club) == {"ann@riverside.example", "bob@riverside.example", "cy@riverside.example"}
    assert Contact.objects.get(organisation=club, external_id="2").first_name == "Bob"

    # Cy leaves the club; a campaign goes to the Members list: Ann's address bounces, Bob complains.
    site.members[2].is_current = False
    campaign = CampaignFactory(organisation=club, status=Campaign.Status.SENDING)
    CampaignStats.objects.create(campaign=campaign, sent=2)
    recipients = [
        RecipientFactory(campaign=campaign, contact=Contact.objects.get(organisation=club, external_id=pk), sent=True)
        for pk in ("1", "2")
    ]
    settings.WEBHOOK_ALLOW_PRIVATE = True
    receiver = Receiver()
    endpoint = webhooks.webhook_endpoint_create(
        organisation=club, url=receiver.url, event_types=["bounce", "complaint"]
    )
    for kind, recipient in (("Bounce", recipients[0]), ("Complaint", recipients[1])):
        record = event(
            kind,
            address=recipient.email,
            message_id=recipient.ses_message_id,
            campaign=campaign.pk,
            recipient=recipient.pk,
        )
        assert notify(record, message_id=new_id()).status_code == 200

    run_nightly_sync()

    assert "cy@riverside.example" not in members_list(club)
    assert site.problem_of("ann@riverside.example") == "bounce"
    assert site.problem_of("bob@riverside.example") == "complaint"
    assert site.settings["cobalt_cursor"]

    # The same events reach the membership site's webhook view, signed.
    webhooks.webhooks_run(seconds=30)
    namespace: dict = {}
    exec(python_block(ROOT / "README.md", "def verify("), namespace)
    try:
        assert len(receiver.received) == 1
        headers, body = receiver.received[0]
        assert namespace["verify"](endpoint.secret, headers, body)
        assert not namespace["verify"]("whsec_wrong", headers, body)
        assert sorted(item["type"] for item in receiver.events()) == ["bounce", "complaint"]
    finally:
        receiver.close()


@pytest.mark.django_db(transaction=True)
def test_the_documented_entry_confirmation_queues_one_message_however_often_it_is_retried(live_server, club, ses):
    template = CampaignTemplate.objects.create(
        organisation=club,
        name="Entry confirmed",
        subject="Your entry for {{ attributes.race }}",
        html_body="<p>Hello {{ first_name }}, entry {{ attributes.entry }} for {{ attributes.race }} is in.</p>",
    )
    _, raw = api_key_create(organisation=club, role=Role.SENDER, name="Membership site")
    namespace: dict = {}
    exec(python_block(ROOT / "docs" / "api.md", "def send_entry_confirmation("), namespace)
    member = types.SimpleNamespace(email="Ann@Riverside.example", first_name="Ann")
    entry = types.SimpleNamespace(pk=41, number="R-41", member=member, race=types.SimpleNamespace(name="Novice 1x"))

    sent = [
        namespace["send_entry_confirmation"](entry, base_url=live_server.url, key=raw, template_id=template.pk)
        for _ in range(2)  # a retry after a lost answer
    ]

    assert sent[0] == sent[1]
    message = Campaign.objects.get(kind=Campaign.Kind.MESSAGE)
    assert message.pk == sent[0]
    recipient = message.recipients.get()
    assert recipient.email == "ann@riverside.example"
    assert recipient.merge_data == {
        "first_name": "Ann",
        "last_name": "",
        "attributes": {"race": "Novice 1x", "entry": "R-41"},
    }
