"""CSV exports of a list, a segment and a search: streamed, with formulas escaped."""

from __future__ import annotations

import csv
import io

import pytest

from audiences.models import Subscription
from common.csvfiles import formula_escape
from tests.factories import ContactFactory, ContactListFactory, SegmentFactory

pytestmark = pytest.mark.django_db


def rows_of(response) -> list[list[str]]:
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="')
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    return list(csv.reader(io.StringIO(text)))


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        ("=1+1", "'=1+1"),
        ("+33 1 23", "'+33 1 23"),
        ("-5", "'-5"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=x", "'\t=x"),
        ("\r=x", "'\r=x"),
        ("plain", "plain"),
        ("a=b", "a=b"),
        (None, ""),
    ],
)
def test_formula_escape_prefixes_cells_a_spreadsheet_would_evaluate(value, escaped):
    assert formula_escape(value) == escaped


def test_a_list_export_streams_its_subscribed_contacts_with_attribute_columns_escaped(staff_client):
    members = ContactListFactory(name="Members")
    evil = ContactFactory(
        email="evil@example.org",
        first_name='=HYPERLINK("http://x.example")',
        last_name="@me",
        attributes={"city": "+London", "club": "Rowing"},
    )
    left = ContactFactory(email="left@example.org")
    ContactFactory(email="other@example.org")
    Subscription.objects.create(contact=evil, contact_list=members)
    Subscription.objects.create(contact=left, contact_list=members, status="unsubscribed")

    rows = rows_of(staff_client.get(f"/audiences/lists/{members.pk}/export/"))

    assert rows[0] == ["email", "first_name", "last_name", "status", "source", "created_at", "city", "club"]
    assert len(rows) == 2
    assert rows[1][:4] == ["evil@example.org", '\'=HYPERLINK("http://x.example")', "'@me", "active"]
    assert rows[1][6:] == ["'+London", "Rowing"]


def test_a_segment_and_a_search_export_their_matches(staff_client):
    ContactFactory(email="ada@example.org", first_name="Ada", attributes={"club": "Chess"})
    ContactFactory(email="bob@example.org", first_name="Bob", attributes={"club": "Rowing"})
    segment = SegmentFactory(name="Chess", rules=[{"field": "attribute:club", "operator": "equals", "value": "chess"}])

    by_segment = rows_of(staff_client.get(f"/audiences/segments/{segment.pk}/export/"))
    by_search = rows_of(staff_client.get("/audiences/contacts/export/", {"q": "bob"}))

    assert [row[0] for row in by_segment[1:]] == ["ada@example.org"]
    assert [row[0] for row in by_search[1:]] == ["bob@example.org"]


def test_an_export_escapes_attribute_names_a_spreadsheet_would_run_in_the_header(staff_client):
    # The contact form accepts attribute names matching ^[\w-]+$, so a name may start with "-".
    created = staff_client.post(
        "/audiences/contacts/new/",
        {"email": "mallory@example.org", "attributes": "-2-3 = ten\n-cmd = x\nclub = Chess"},
    )
    assert created.status_code == 302

    rows = rows_of(staff_client.get("/audiences/contacts/export/", {"q": "mallory"}))

    assert rows[0] == ["email", "first_name", "last_name", "status", "source", "created_at", "'-2-3", "'-cmd", "club"]
    assert rows[1][0] == "mallory@example.org"
    assert rows[1][6:] == ["ten", "x", "Chess"]
