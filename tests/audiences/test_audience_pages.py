"""The contacts, lists and segments pages through the Django test client."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audiences.models import Contact, ContactList, Segment, Subscription
from tests.factories import ContactFactory, ContactListFactory, list_with_contacts

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def emails_in(response) -> list[str]:
    return [row.record.email for row in response.context["table"].paginated_rows]


def test_the_audiences_home_lists_contacts_for_members_only(client, member_user, staff_client):
    ContactFactory(email="ada@example.org")

    assert staff_client.get("/audiences/").status_code == 200
    assert b"ada@example.org" in staff_client.get("/audiences/").content
    client.force_login(member_user)  # a user of no organisation is logged out
    response = client.get("/audiences/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_search_matches_email_or_name_prefixes_and_filters_combine(staff_client):
    members = ContactListFactory(name="Members")
    ada = ContactFactory(email="ada@example.org", first_name="Ada", last_name="Lovelace")
    ContactFactory(email="bob@example.org", first_name="Bob", last_name="Adams")
    ContactFactory(email="cy@example.org", first_name="Cy", last_name="Young", status=Contact.Status.BOUNCED)
    Subscription.objects.create(contact=ada, contact_list=members)

    assert sorted(emails_in(staff_client.get("/audiences/contacts/", {"q": "ad"}))) == [
        "ada@example.org",
        "bob@example.org",
    ]
    assert emails_in(staff_client.get("/audiences/contacts/", {"q": "ADA@EXAMPLE"})) == ["ada@example.org"]
    assert emails_in(staff_client.get("/audiences/contacts/", {"q": "ada love"})) == ["ada@example.org"]
    assert emails_in(staff_client.get("/audiences/contacts/", {"q": "ad", "list": members.pk})) == ["ada@example.org"]
    assert emails_in(staff_client.get("/audiences/contacts/", {"status": "bounced"})) == ["cy@example.org"]


def test_sorting_by_last_name_ignores_case_both_ways(staff_client):
    ContactFactory(email="c@example.org", last_name="Young")
    ContactFactory(email="a@example.org", last_name="adams")
    ContactFactory(email="b@example.org", last_name="Lovelace")

    ascending = emails_in(staff_client.get("/audiences/contacts/", {"sort": "last_name"}))
    descending = emails_in(staff_client.get("/audiences/contacts/", {"sort": "-last_name"}))

    assert ascending == ["a@example.org", "b@example.org", "c@example.org"]
    assert descending == ["c@example.org", "b@example.org", "a@example.org"]


def test_htmx_requests_get_only_the_table_partial_sorted_and_paged_without_counting(staff_client):
    ContactFactory.create_batch(120)

    with CaptureQueriesContext(connection) as queries:
        response = staff_client.get("/audiences/contacts/", {"sort": "-email", "page": 2, "q": "person"}, **HTMX)

    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<div id="contact-results"')
    assert '<nav class="navbar' not in body
    assert 'hx-get="?' in body and 'hx-target="this"' in body
    shown = emails_in(response)
    everyone = sorted(Contact.objects.values_list("email", flat=True), reverse=True)
    assert shown == everyone[50:100]
    assert not [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]


def test_a_nonsense_page_or_sort_does_not_break_the_page(staff_client):
    ContactFactory.create_batch(3)

    for params in ({"page": "abc"}, {"page": "99999"}, {"sort": "password"}, {"list": "x", "status": "nope"}):
        assert staff_client.get("/audiences/contacts/", params).status_code == 200


def test_staff_add_a_contact_with_an_internationalised_domain_normalised(staff_client):
    members = ContactListFactory(name="Members")

    response = staff_client.post(
        "/audiences/contacts/new/",
        {
            "email": "  Zoe.Example@BÜCHER.example ",
            "first_name": "Zoë",
            "attributes": "club = Rowing\ncity=Zürich",
            "lists": [members.pk],
        },
    )

    contact = Contact.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/audiences/contacts/{contact.pk}/"
    assert contact.email == "zoe.example@xn--bcher-kva.example"
    assert contact.attributes == {"club": "Rowing", "city": "Zürich"}
    assert contact.subscriptions.get().contact_list == members


@pytest.mark.parametrize(
    ("email", "error"),
    [
        ("not an address", "is not a valid email address"),
        ("", "This field is required."),
        ("ada@", "is not a valid email address"),
        ("x" * 250 + "@example.org", "longer than 254"),
        ("ADA@example.org", "already exists"),
        ("zoë@example.org", "SES cannot send to addresses with non-ASCII characters before the @"),
        ("club@localhost", "no dot in the domain “localhost”"),
    ],
)
def test_adding_a_bad_or_duplicate_address_shows_a_clear_error(staff_client, email, error):
    ContactFactory(email="ada@example.org")

    response = staff_client.post("/audiences/contacts/new/", {"email": email})

    assert response.status_code == 200
    assert error in " ".join(response.context["form"].errors["email"])
    assert Contact.objects.count() == 1


def test_staff_edit_then_delete_a_contact(staff_client):
    contact = ContactFactory(email="ada@example.org", first_name="Ada")

    staff_client.post(f"/audiences/contacts/{contact.pk}/", {"email": "ada@example.org", "first_name": "Augusta"})
    assert Contact.objects.get().first_name == "Augusta"

    assert staff_client.get(f"/audiences/contacts/{contact.pk}/delete/").status_code == 200
    assert Contact.objects.exists()
    staff_client.post(f"/audiences/contacts/{contact.pk}/delete/")
    assert not Contact.objects.exists()


def test_bulk_actions_apply_to_the_selection_only(staff_client):
    members = ContactListFactory(name="Members")
    first, second, third = ContactFactory.create_batch(3)

    Subscription.objects.create(contact=second, contact_list=members)
    response = staff_client.post(
        "/audiences/contacts/bulk/",
        {
            "action": "add_to_list",
            "contact_list": members.pk,
            "selected": [first.pk, second.pk],
            "next": "//evil.example/",
        },
        follow=True,
    )
    assert set(members.subscriptions.values_list("contact_id", flat=True)) == {first.pk, second.pk}
    assert response.redirect_chain == [("/audiences/contacts/", 302)]
    assert "1 contacts added to “Members” (1 already on it, unsubscribed or suppressed)." in response.content.decode()

    response = staff_client.post("/audiences/contacts/bulk/", {"action": "unsubscribe", "selected": [first.pk]})
    assert response.status_code == 302
    assert Contact.objects.get(pk=first.pk).status == Contact.Status.UNSUBSCRIBED
    assert members.subscriptions.get(contact=first).status == "unsubscribed"

    staff_client.post(
        "/audiences/contacts/bulk/", {"action": "add_to_list", "contact_list": members.pk, "selected": [first.pk]}
    )
    assert members.subscriptions.get(contact=first).status == "unsubscribed"

    staff_client.post("/audiences/contacts/bulk/", {"action": "remove", "selected": [third.pk]})
    assert set(Contact.objects.values_list("pk", flat=True)) == {first.pk, second.pk}


def test_a_bulk_action_without_selection_or_with_junk_ids_changes_nothing(staff_client):
    ContactFactory.create_batch(2)

    for data in ({"action": "remove"}, {"action": "remove", "selected": ["1 OR 1=1"]}, {"action": "drop"}):
        response = staff_client.post("/audiences/contacts/bulk/", data, follow=True)
        assert response.status_code == 200
    assert Contact.objects.count() == 2


def test_lists_can_be_created_renamed_counted_and_deleted_keeping_contacts(staff_client):
    response = staff_client.post("/audiences/lists/", {"name": "Members"})
    members = ContactList.objects.get()
    assert response.status_code == 302
    assert staff_client.post("/audiences/lists/", {"name": "members"}).context["form"].errors["name"]

    contact = ContactFactory()
    Subscription.objects.create(contact=contact, contact_list=members)
    page = staff_client.get("/audiences/lists/")
    assert page.context["table"].rows[0].get_cell("subscribed_count") == 1

    staff_client.post(f"/audiences/lists/{members.pk}/", {"name": "Club members"})
    assert ContactList.objects.get().name == "Club members"
    detail = staff_client.get(f"/audiences/lists/{members.pk}/")
    assert emails_in(detail) == [contact.email]

    staff_client.post(f"/audiences/lists/{members.pk}/delete/")
    assert not ContactList.objects.exists()
    assert Contact.objects.filter(pk=contact.pk).exists()


def rule_post(rules: list[dict], **extra) -> dict:
    data = {"rules-TOTAL_FORMS": len(rules), "rules-INITIAL_FORMS": 0, "match": "all", **extra}
    for index, rule in enumerate(rules):
        for key, value in rule.items():
            data[f"rules-{index}-{key}"] = value
    return data


def test_the_segment_editor_shows_a_live_count_and_saves_form_built_rules(staff_client):
    list_with_contacts(3, name="Members", attributes={"club": "Rowing"})
    ContactFactory(attributes={"club": "Chess"})
    rules = [{"rule": "attribute:equals", "attribute": "club", "value": "rowing"}]

    preview = staff_client.post("/audiences/segments/preview/", rule_post(rules), **HTMX)
    assert 'data-count="3"' in preview.content.decode()

    bad = staff_client.post(
        "/audiences/segments/preview/", rule_post([{"rule": "attribute:gt", "attribute": "age", "value": "old"}])
    )
    assert "is not a number" in bad.content.decode()

    response = staff_client.post("/audiences/segments/new/", rule_post(rules, name="Rowers"))
    segment = Segment.objects.get()
    assert response.status_code == 302
    assert segment.rules == [{"field": "attribute:club", "operator": "equals", "value": "rowing"}]
    edit = staff_client.get(f"/audiences/segments/{segment.pk}/")
    assert edit.context["count"] == 3
    assert edit.context["formset"].forms[0].initial["attribute"] == "club"


def test_a_history_restore_request_gets_the_whole_page(staff_client):
    ContactFactory(email="ada@example.org")

    response = staff_client.get(
        "/audiences/contacts/", {"sort": "-email"}, HTTP_HX_REQUEST="true", HTTP_HX_HISTORY_RESTORE_REQUEST="true"
    )

    assert '<nav class="navbar' in response.content.decode()
    assert "HX-Request" in response["Vary"]
