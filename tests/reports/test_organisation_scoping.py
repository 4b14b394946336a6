"""Reports and the events page by organisation (issue 14).

A federation on one installation: a national body, a state body under it and a club under the
state, plus an unrelated federation. A role on an organisation shows the figures of its own
campaigns and of its children's (at any depth), never their recipients or events (which carry
addresses); nothing of a parent, a sibling or another federation. Another organisation's ids
answer 404 and leave an audit entry.
"""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audiences.models import Segment
from campaigns.models import Campaign, Recipient
from organisations.models import AuditEntry, Membership, Organisation, Role
from reports import selectors
from stats.models import CampaignStats
from tests.factories import ContactFactory, EventFactory
from tracking.models import Event

pytestmark = pytest.mark.django_db


@pytest.fixture
def national(organisation) -> Organisation:
    organisation.name, organisation.slug = "National Federation", "national"
    organisation.save()
    return organisation


@pytest.fixture
def state(national) -> Organisation:
    return Organisation.objects.create(name="Northern State", slug="northern", parent=national)


@pytest.fixture
def club(state) -> Organisation:
    return Organisation.objects.create(name="Riverside Club", slug="riverside", parent=state)


@pytest.fixture
def elsewhere(national) -> Organisation:
    return Organisation.objects.create(name="Chess Federation", slug="chess")


def sent_campaign(organisation: Organisation, name: str, addresses: list[str]) -> Campaign:
    """A sent campaign of the organisation: recipients delivered, a delivery event each, counters."""
    now = timezone.now()
    campaign = Campaign.objects.create(
        organisation=organisation,
        name=name,
        subject="News",
        from_email="news@cobalt.example",
        html_body="<p>Hi</p>",
        status=Campaign.Status.SENT,
        started_at=now,
        finished_at=now,
        snapshot_at=now,
    )
    for address in addresses:
        contact = ContactFactory(organisation=organisation, email=address)
        recipient = Recipient.objects.create(
            campaign=campaign, contact=contact, email=address, status=Recipient.Status.SENT, sent_at=now
        )
        EventFactory(recipient=recipient)
    count = len(addresses)
    CampaignStats.objects.create(campaign=campaign, recipients=count, sent=count, delivered=count)
    return campaign


@pytest.fixture
def campaigns(national, state, club, elsewhere) -> dict[str, Campaign]:
    return {
        "national": sent_campaign(national, "National news", ["nina@national.example"]),
        "state": sent_campaign(state, "State news", ["sam@state.example"]),
        "club": sent_campaign(club, "Club news", ["cleo@club.example", "carl@club.example"]),
        "elsewhere": sent_campaign(elsewhere, "Chess news", ["kasparov@chess.example"]),
    }


@pytest.fixture
def login(django_user_model):
    """A client logged in as a new user with one role in one organisation."""

    def make(organisation: Organisation, role: str = Role.VIEWER) -> Client:
        username = f"{organisation.slug}.{role}"
        user = django_user_model.objects.create_user(username=username, password="correct-horse-battery")
        Membership.objects.create(user=user, organisation=organisation, role=role)
        client = Client()
        client.force_login(user)
        return client

    return make


def forbidden_entries() -> int:
    return AuditEntry.objects.filter(action=AuditEntry.Action.FORBIDDEN).count()


def page(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, url
    return response.content.decode()


# --- figures: the own organisation and its children -------------------------------------------


def test_the_dashboard_lists_the_own_and_every_child_campaign_with_its_organisation(login, national, campaigns):
    text = page(login(national), reverse("reports:index"))

    for key in ("national", "state", "club"):
        assert campaigns[key].name in text
        assert f'data-testid="campaign-organisation-{campaigns[key].pk}"' in text
    assert "Riverside Club" in text and "Northern State" in text
    assert campaigns["elsewhere"].name not in text


def test_a_club_sees_only_its_own_campaigns_and_no_organisation_column(login, club, campaigns):
    text = page(login(club), reverse("reports:index"))

    assert campaigns["club"].name in text
    for key in ("national", "state", "elsewhere"):
        assert campaigns[key].name not in text
    assert "campaign-organisation-" not in text


def test_a_parent_sees_a_grandchilds_report_without_links_to_its_recipients(login, national, campaigns):
    club_campaign = campaigns["club"]
    client = login(national)

    text = page(client, reverse("reports:campaign", args=[club_campaign.pk]))
    live = client.get(reverse("reports:campaign_live", args=[club_campaign.pk]))

    assert 'data-testid="fig-delivered">2<' in text
    assert "A campaign of Riverside Club" in text
    assert reverse("reports:recipients", args=[club_campaign.pk]) not in text
    assert f'href="{reverse("campaigns:detail", args=[club_campaign.pk])}"' not in text
    assert live.status_code in (200, 286)
    assert "cleo@club.example" not in text


def test_the_own_campaigns_report_links_to_its_recipients(login, club, campaigns):
    text = page(login(club), reverse("reports:campaign", args=[campaigns["club"].pk]))

    assert reverse("reports:recipients", args=[campaigns["club"].pk]) in text
    assert 'data-testid="campaign-organisation"' not in text


@pytest.mark.parametrize("url_name", ["reports:campaign", "reports:campaign_live"])
@pytest.mark.parametrize(
    ("viewer", "target"),
    [("club", "state"), ("club", "national"), ("state", "national"), ("national", "elsewhere"), ("club", "elsewhere")],
)
def test_a_parents_sibling_or_other_federations_report_answers_404_and_is_audited(
    login, campaigns, url_name, viewer, target
):
    client = login(campaigns[viewer].organisation, Role.ADMINISTRATOR)
    before = forbidden_entries()

    response = client.get(reverse(url_name, args=[campaigns[target].pk]))

    assert response.status_code == 404
    assert forbidden_entries() == before + 1


def test_comparing_a_child_campaign_with_the_own_shows_both_with_their_organisations(login, national, campaigns):
    ids = [campaigns["national"].pk, campaigns["club"].pk]

    text = page(login(national), f"{reverse('reports:compare')}?ids={ids[0]}&ids={ids[1]}")

    assert "National news" in text and "Club news" in text
    assert f'data-testid="campaign-organisation-{ids[1]}">Riverside Club<' in text


def test_comparing_with_another_federations_campaign_answers_404_and_is_audited(login, national, campaigns):
    ids = [campaigns["national"].pk, campaigns["elsewhere"].pk]
    before = forbidden_entries()

    response = login(national).get(f"{reverse('reports:compare')}?ids={ids[0]}&ids={ids[1]}")

    assert response.status_code == 404
    assert forbidden_entries() == before + 1


def test_the_account_panel_stays_installation_wide_for_every_member(login, club, campaigns):
    text = page(login(club), reverse("reports:index"))

    assert 'data-testid="account-bounce-rate"' in text
    assert "every organisation on this site" in text


# --- recipients: the own organisation only ------------------------------------------------------


@pytest.mark.parametrize(
    ("url_name", "method"),
    [
        ("reports:recipients", "get"),
        ("reports:recipients_export", "get"),
        ("reports:recipients_segment", "post"),
    ],
)
def test_a_parent_gets_404_for_a_childs_recipients_and_nothing_is_exported_or_saved(
    login, national, campaigns, url_name, method
):
    client = login(national, Role.ADMINISTRATOR)
    before = forbidden_entries()

    response = getattr(client, method)(reverse(url_name, args=[campaigns["club"].pk]), {"outcome": "bounced"})

    assert response.status_code == 404
    assert forbidden_entries() == before + 1
    assert not AuditEntry.objects.filter(action=AuditEntry.Action.EXPORT).exists()
    assert not Segment.objects.exists()
    assert b"club.example" not in response.content


def test_a_parent_gets_404_for_a_childs_recipient_timeline(login, national, campaigns):
    recipient = Recipient.objects.filter(campaign=campaigns["club"]).first()
    before = forbidden_entries()

    response = login(national, Role.ADMINISTRATOR).get(reverse("reports:timeline", args=[recipient.pk]))

    assert response.status_code == 404
    assert forbidden_entries() == before + 1


def test_the_own_recipients_and_their_timeline_are_shown(login, club, campaigns):
    client = login(club)
    recipient = Recipient.objects.filter(campaign=campaigns["club"]).first()

    text = page(client, reverse("reports:recipients", args=[campaigns["club"].pk]))
    timeline = page(client, reverse("reports:timeline", args=[recipient.pk]))

    assert "cleo@club.example" in text and "carl@club.example" in text
    assert "Delivery" in timeline or "delivery" in timeline


def test_an_export_is_audited_with_its_row_count_in_the_organisation(login, club, campaigns):
    client = login(club, Role.EDITOR)

    response = client.get(reverse("reports:recipients_export", args=[campaigns["club"].pk]))
    rows = b"".join(response.streaming_content).decode().strip().splitlines()

    assert len(rows) == 1 + 2
    entry = AuditEntry.objects.get(action=AuditEntry.Action.EXPORT)
    assert (entry.rows, entry.organisation, entry.object_id) == (2, club, str(campaigns["club"].pk))
    assert entry.username == "riverside.editor"


def test_save_as_segment_puts_the_segment_in_the_campaigns_organisation(login, club, campaigns):
    client = login(club, Role.EDITOR)

    response = client.post(reverse("reports:recipients_segment", args=[campaigns["club"].pk]), {"outcome": "opened"})

    assert response.status_code == 302
    assert Segment.objects.get().organisation == club


# --- the events page: the own organisation's campaigns only --------------------------------------


def event_rows(client: Client, query: str = "") -> str:
    return page(client, f"{reverse('tracking:events')}{query}")


def test_the_events_page_shows_only_the_own_organisations_events(login, state, campaigns):
    text = event_rows(login(state))

    assert text.count('data-testid="event-row"') == 1
    assert "sam@state.example" in text
    for address in ("nina@national.example", "cleo@club.example", "kasparov@chess.example"):
        assert address not in text


def test_a_parent_never_sees_its_childrens_event_addresses(login, national, campaigns):
    text = event_rows(login(national))

    assert text.count('data-testid="event-row"') == 1
    assert "cleo@club.example" not in text and "sam@state.example" not in text


def test_filtering_events_by_another_organisations_campaign_answers_404_and_is_audited(login, national, campaigns):
    before = forbidden_entries()

    response = login(national).get(f"{reverse('tracking:events')}?campaign={campaigns['club'].pk}")

    assert response.status_code == 404
    assert forbidden_entries() == before + 1


def test_unmatched_events_are_shown_to_site_operators_only(login, django_user_model, national, campaigns):
    Event.objects.create(
        sns_message_id="unmatched-1", event_type="bounce", email="stray@nowhere.example", occurred_at=timezone.now()
    )
    operator = django_user_model.objects.create_superuser(username="olga.operator", password="x" * 20)
    operator_client = Client()
    operator_client.force_login(operator)
    member = login(national, Role.ADMINISTRATOR)

    member_text = event_rows(member, "?campaign=none")
    operator_text = event_rows(operator_client, "?campaign=none")

    assert "stray@nowhere.example" not in member_text
    assert 'data-testid="unmatched-link"' not in member_text
    assert "stray@nowhere.example" in operator_text
    assert ">1 unmatched event<" in operator_text


# --- indexes ----------------------------------------------------------------------------------------


def test_the_scoped_campaign_queries_can_use_an_index_starting_with_the_organisation(national, campaigns):
    """The dashboard's and the events page's campaign look-ups name an organisation index in their
    plan (sequential scans are switched off on PostgreSQL: with a few rows it would rightly scan)."""
    dashboard = selectors.report_campaigns(national).exclude(status=Campaign.Status.DRAFT)[:100]
    own = Campaign.objects.filter(organisation=national).values("id")
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL enable_seqscan = off")
        plans = [dashboard.explain(), own.explain()]

    # campaign_org_created_idx / campaign_org_status_idx, or the organisation foreign key's own index.
    organisation_index = re.compile(r"campaign_org_\w+_idx|campaigns_campaign_organisation_id_\w+")
    for plan in plans:
        assert organisation_index.search(plan), plan
        assert "SCAN campaigns_campaign\n" not in plan and "Seq Scan on campaigns_campaign" not in plan, plan
