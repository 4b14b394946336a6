"""The Usage page (/organisations/usage/) and its CSV for billing: messages per organisation from
the daily counters, scoped to the administrator's organisation and those below it (operators: all)."""

from __future__ import annotations

import csv
import datetime
import io

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from organisations.models import AuditEntry, Organisation, Role
from stats.counters import usage_add

pytestmark = pytest.mark.django_db

TODAY = datetime.date(2026, 11, 15)
NOW = datetime.datetime(2026, 11, 15, 12, 0, tzinfo=datetime.UTC)


@pytest.fixture(autouse=True)
def frozen_today():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def tree(organisation):
    """National body → Victoria (state body) → two clubs; New South Wales → one club."""
    organisation.name, organisation.slug = "National body", "national"
    organisation.save()
    victoria = Organisation.objects.create(name="Victoria", slug="vic", parent=organisation)
    riverside = Organisation.objects.create(name="Riverside Rowing", slug="riverside", parent=victoria)
    hilltop = Organisation.objects.create(name="Hilltop Chess", slug="hilltop", parent=victoria)
    nsw = Organisation.objects.create(name="New South Wales", slug="nsw", parent=organisation)
    harbour = Organisation.objects.create(name="Harbour Sailing", slug="harbour", parent=nsw)
    orgs = {
        "national": organisation,
        "victoria": victoria,
        "riverside": riverside,
        "hilltop": hilltop,
        "nsw": nsw,
        "harbour": harbour,
    }
    usage_add(organisation_id=riverside.pk, day=TODAY, sent=100, test_sent=2)
    usage_add(organisation_id=riverside.pk, day=datetime.date(2026, 11, 1), sent=1000)
    usage_add(organisation_id=riverside.pk, day=datetime.date(2026, 10, 31), sent=5000, test_sent=1)
    usage_add(organisation_id=hilltop.pk, day=TODAY, sent=20)
    usage_add(organisation_id=victoria.pk, day=datetime.date(2026, 11, 3), sent=7, test_sent=3)
    usage_add(organisation_id=harbour.pk, day=TODAY, sent=9)
    usage_add(organisation_id=organisation.pk, day=datetime.date(2026, 9, 30), sent=123)  # before last month
    return orgs


def as_member(client, make_member, organisation, role=Role.ADMINISTRATOR, username="ada"):
    client.force_login(make_member(username, organisation, role))
    return client


def summary(response) -> dict[str, tuple]:
    """{organisation name: (own today, this month, last month, with children today, this month, last month)}."""
    return {
        node.organisation.name: (
            *(node.own[name] for name in ("today", "this_month", "last_month")),
            *(node.with_children[name] for name in ("today", "this_month", "last_month")),
        )
        for node in response.context["nodes"]
    }


def csv_rows(response) -> list[dict]:
    text = b"".join(response.streaming_content if response.streaming else [response.content]).decode("utf-8-sig")
    return list(csv.DictReader(io.StringIO(text)))


# --- who sees what ----------------------------------------------------------------------------------


def test_a_club_administrator_sees_only_their_club(client, make_member, tree):
    response = as_member(client, make_member, tree["riverside"]).get("/organisations/usage/")

    assert response.status_code == 200
    assert summary(response) == {"Riverside Rowing": (102, 1102, 5001, 102, 1102, 5001)}
    page = response.content.decode()
    assert "Hilltop Chess" not in page and "Victoria" not in page
    assert "with child organisations" not in page  # a club without clubs shows no second figure


def test_a_state_body_administrator_sees_it_and_its_clubs_with_their_totals_beside(client, make_member, tree):
    response = as_member(client, make_member, tree["victoria"]).get("/organisations/usage/")

    assert summary(response) == {
        "Victoria": (0, 10, 0, 122, 1132, 5001),
        "Hilltop Chess": (20, 20, 0, 20, 20, 0),
        "Riverside Rowing": (102, 1102, 5001, 102, 1102, 5001),
    }
    page = response.content.decode()
    assert "with child organisations: 1132" in page
    assert "Harbour Sailing" not in page and "National body" not in page


def test_a_site_operator_sees_every_organisation(client, tree, django_user_model):
    operator = django_user_model.objects.create_superuser(username="olga", password="correct-horse-battery")
    client.force_login(operator)

    response = client.get("/organisations/usage/")

    assert list(summary(response)) == [
        "National body",
        "New South Wales",
        "Harbour Sailing",
        "Victoria",
        "Hilltop Chess",
        "Riverside Rowing",
    ]
    assert summary(response)["National body"] == (0, 0, 0, 131, 1141, 5001)  # September's 123 is not shown


@pytest.mark.parametrize("role", [Role.VIEWER, Role.EDITOR, Role.SENDER])
def test_members_below_administrator_are_refused(client, make_member, tree, role):
    client = as_member(client, make_member, tree["victoria"], role)

    assert client.get("/organisations/usage/").status_code == 403
    assert client.get("/organisations/usage/export/").status_code == 403


def test_another_organisations_days_answer_404_and_are_audited(client, make_member, tree):
    client = as_member(client, make_member, tree["victoria"])

    assert client.get(f"/organisations/usage/?organisation={tree['harbour'].pk}").status_code == 404
    assert client.get(f"/organisations/usage/?organisation={tree['national'].pk}").status_code == 404
    assert AuditEntry.objects.filter(action=AuditEntry.Action.FORBIDDEN).count() == 2


def test_the_usage_tab_is_shown_to_administrators(client, make_member, tree):
    response = as_member(client, make_member, tree["victoria"]).get("/organisations/")

    assert 'href="/organisations/usage/"' in response.content.decode()


# --- the days of a month ------------------------------------------------------------------------------


def test_the_days_of_the_current_month_run_to_today(client, make_member, tree):
    client = as_member(client, make_member, tree["victoria"])

    response = client.get("/organisations/usage/")

    days = response.context["days"]
    assert response.context["chosen"].organisation == tree["victoria"]
    assert [day.day for day in days] == [datetime.date(2026, 11, n) for n in range(1, 16)]
    by_day = {day.day.day: (day.sent, day.test_sent, day.with_children) for day in days}
    assert by_day[1] == (0, 0, 1000)
    assert by_day[3] == (7, 3, 10)
    assert by_day[15] == (0, 0, 122)
    assert response.context["month_total"] == {"sent": 7, "test_sent": 3, "with_children": 1132}
    assert response.context["next_month"] is None  # no link into the future


def test_switching_to_last_month_for_one_club(client, make_member, tree):
    client = as_member(client, make_member, tree["victoria"])

    response = client.get(f"/organisations/usage/?organisation={tree['riverside'].pk}&month=2026-10")

    days = response.context["days"]
    assert len(days) == 31
    assert (days[-1].day, days[-1].sent, days[-1].test_sent) == (datetime.date(2026, 10, 31), 5000, 1)
    page = response.content.decode()
    assert "Riverside Rowing, October 2026" in page
    assert "?organisation={}&amp;month=2026-11".format(tree["riverside"].pk) in page  # the next month
    assert "/organisations/usage/export/?month=2026-10" in page
    assert "With child organisations" not in page  # a club: no column for clubs below it


@pytest.mark.parametrize("month", ["2026-13", "november", "0000-01", "2026-1", ""])
def test_a_month_that_is_not_one_shows_the_current_month(client, make_member, tree, month):
    response = as_member(client, make_member, tree["victoria"]).get(f"/organisations/usage/?month={month}")

    assert response.status_code == 200
    assert response.context["month"] == datetime.date(2026, 11, 1)


def test_empty_states(client, make_member, organisation):
    client = as_member(client, make_member, organisation)

    response = client.get("/organisations/usage/")
    page = response.content.decode()
    assert summary(response) == {organisation.name: (0, 0, 0, 0, 0, 0)}
    assert "No messages were sent in November 2026." in page

    future = client.get("/organisations/usage/?month=2027-02").content.decode()
    assert "Nothing to show: February 2027 has not begun." in future


# --- the CSV for billing ------------------------------------------------------------------------------


def test_the_csv_has_one_row_per_organisation_for_the_month(client, make_member, tree):
    client = as_member(client, make_member, tree["victoria"])

    response = client.get("/organisations/usage/export/?month=2026-11")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="usage-vic-2026-11.csv"'
    assert csv_rows(response) == [
        {"organisation": "Victoria", "parent": "National body", "month": "2026-11", "messages_sent": "7",
         "test_messages": "3", "total_with_children": "1132"},
        {"organisation": "Hilltop Chess", "parent": "Victoria", "month": "2026-11", "messages_sent": "20",
         "test_messages": "0", "total_with_children": "20"},
        {"organisation": "Riverside Rowing", "parent": "Victoria", "month": "2026-11", "messages_sent": "1100",
         "test_messages": "2", "total_with_children": "1102"},
    ]  # fmt: skip
    assert AuditEntry.objects.filter(action=AuditEntry.Action.EXPORT, rows=3).exists()


def test_the_csv_of_last_month_and_its_cells_are_formula_safe(client, make_member, tree):
    Organisation.objects.filter(pk=tree["riverside"].pk).update(name='=HYPERLINK("http://evil.example","Riverside")')
    client = as_member(client, make_member, tree["victoria"])

    rows = csv_rows(client.get("/organisations/usage/export/?month=2026-10"))

    riverside = next(row for row in rows if row["parent"] == "Victoria" and row["messages_sent"] == "5000")
    assert riverside["organisation"] == '\'=HYPERLINK("http://evil.example","Riverside")'
    assert (riverside["month"], riverside["test_messages"], riverside["total_with_children"]) == (
        "2026-10",
        "1",
        "5001",
    )
    assert rows[0]["total_with_children"] == "5001"


def test_the_operators_csv_covers_every_organisation(client, tree, django_user_model):
    client.force_login(django_user_model.objects.create_superuser(username="olga", password="correct-horse-battery"))

    response = client.get("/organisations/usage/export/?month=2026-09")

    rows = csv_rows(response)
    assert len(rows) == 6
    assert rows[0] == {"organisation": "National body", "parent": "", "month": "2026-09", "messages_sent": "123",
                       "test_messages": "0", "total_with_children": "123"}  # fmt: skip
    assert response["Content-Disposition"] == 'attachment; filename="usage-all-2026-09.csv"'


# --- speed: the page never grows with the organisations -------------------------------------------------


def page_queries(client, count: int, organisation: Organisation) -> int:
    for number in range(count - Organisation.objects.filter(parent=organisation).count()):
        child = Organisation.objects.create(
            name=f"Club {count}-{number}", slug=f"club-{count}-{number}", parent=organisation
        )
        usage_add(organisation_id=child.pk, day=TODAY, sent=number + 1, test_sent=1)
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/organisations/usage/")
    assert response.status_code == 200
    assert len(response.context["nodes"]) == count + 1
    return len(queries)


def test_the_page_makes_as_many_queries_for_30_organisations_as_for_3(client, make_member, organisation):
    client = as_member(client, make_member, organisation)

    assert page_queries(client, 3, organisation) == page_queries(client, 30, organisation)
