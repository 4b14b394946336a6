"""The organisation pages through the Django test client: members and roles, the audit log and its
CSV, the navbar switcher, child organisations and the site operators' page."""

from __future__ import annotations

import csv
import datetime
import io

import pytest
import time_machine

from organisations import audit
from organisations.models import AuditEntry, Membership, Organisation, Role
from organisations.scope import SESSION_KEY
from tests.factories import CampaignFactory

pytestmark = pytest.mark.django_db


def login(client, user):
    client.force_login(user)
    return client


def member_names(response) -> list[str]:
    return [membership.user.username for membership in response.context["memberships"]]


# --- members and roles --------------------------------------------------------------------------


def test_the_members_page_lists_only_the_organisations_own_members(admin_client, club, other_club, make_member):
    make_member("bob.editor", club, Role.EDITOR)
    make_member("carl.chess", other_club, Role.ADMINISTRATOR)

    response = admin_client.get("/organisations/members/")

    assert response.status_code == 200
    assert member_names(response) == ["ada.admin", "bob.editor"]
    assert b"carl.chess" not in response.content


def test_an_administrator_gives_an_existing_user_a_role(admin_client, club, django_user_model):
    django_user_model.objects.create_user(username="dora")

    response = admin_client.post("/organisations/members/", {"username": "dora", "role": "sender"}, follow=True)

    assert Membership.objects.get(user__username="dora", organisation=club).role == Role.SENDER
    assert "dora is now Sender." in response.content.decode()
    assert AuditEntry.objects.filter(action=AuditEntry.Action.ROLE_GRANTED, username="ada.admin").exists()


def test_giving_a_role_to_an_unknown_user_is_a_field_error(admin_client, club):
    response = admin_client.post("/organisations/members/", {"username": "ghost", "role": "viewer"})

    assert response.status_code == 400
    assert "There is no active user “ghost”" in response.content.decode()
    assert Membership.objects.filter(organisation=club).count() == 1


def test_an_administrator_changes_a_members_role(admin_client, club, make_member):
    bob = make_member("bob", club, Role.VIEWER)
    membership = Membership.objects.get(user=bob)

    response = admin_client.post(f"/organisations/members/{membership.pk}/role/", {"role": "editor"}, follow=True)

    membership.refresh_from_db()
    assert membership.role == Role.EDITOR
    assert "bob is now Editor." in response.content.decode()


def test_demoting_the_last_administrator_is_refused_with_a_message(admin_client, club_admin):
    membership = Membership.objects.get(user=club_admin)

    response = admin_client.post(f"/organisations/members/{membership.pk}/role/", {"role": "viewer"}, follow=True)

    assert "ada.admin is the last administrator of Riverside Rowing" in response.content.decode()
    membership.refresh_from_db()
    assert membership.role == Role.ADMINISTRATOR


def test_a_bad_role_is_refused_without_a_change(admin_client, club, make_member):
    membership = Membership.objects.get(user=make_member("bob", club, Role.VIEWER))

    response = admin_client.post(f"/organisations/members/{membership.pk}/role/", {"role": "owner"}, follow=True)

    assert "Choose one of the roles." in response.content.decode()
    membership.refresh_from_db()
    assert membership.role == Role.VIEWER


def test_removing_a_member_asks_first_then_removes(admin_client, club, make_member):
    membership = Membership.objects.get(user=make_member("bob", club, Role.EDITOR))
    url = f"/organisations/members/{membership.pk}/remove/"

    confirm = admin_client.get(url)
    assert confirm.status_code == 200
    assert "Remove bob from Riverside Rowing?" in confirm.content.decode()
    assert Membership.objects.filter(pk=membership.pk).exists()

    admin_client.post(url)
    assert not Membership.objects.filter(pk=membership.pk).exists()


def test_another_organisations_membership_ids_answer_404_and_leave_an_audit_entry(
    admin_client, club, other_club, make_member
):
    theirs = Membership.objects.get(user=make_member("carl.chess", other_club, Role.ADMINISTRATOR))

    assert admin_client.post(f"/organisations/members/{theirs.pk}/role/", {"role": "viewer"}).status_code == 404
    assert admin_client.get(f"/organisations/members/{theirs.pk}/remove/").status_code == 404
    assert admin_client.post(f"/organisations/members/{theirs.pk}/remove/").status_code == 404

    theirs.refresh_from_db()
    assert theirs.role == Role.ADMINISTRATOR
    assert AuditEntry.objects.filter(action=AuditEntry.Action.FORBIDDEN, organisation=club).count() == 3


def test_the_members_page_is_for_administrators_only(client, club, make_member):
    login(client, make_member("sam.sender", club, Role.SENDER))

    assert client.get("/organisations/members/").status_code == 403


def test_a_user_whose_last_membership_is_removed_is_logged_out_at_their_next_request(
    client, admin_client, club, make_member
):
    bob = make_member("bob", club, Role.EDITOR)
    bob_client = type(client)()
    bob_client.force_login(bob)
    assert bob_client.get("/organisations/").status_code == 200

    admin_client.post(f"/organisations/members/{Membership.objects.get(user=bob).pk}/remove/")

    response = bob_client.get("/organisations/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")
    assert "_auth_user_id" not in bob_client.session


# --- the organisation's details -----------------------------------------------------------------


def test_a_viewer_sees_the_details_but_cannot_change_them(client, club, make_member):
    login(client, make_member("vic.viewer", club, Role.VIEWER))

    page = client.get("/organisations/")
    assert page.status_code == 200
    assert page.context["editable"] is False
    assert client.post("/organisations/", {"name": "Hijacked"}).status_code == 403
    club.refresh_from_db()
    assert club.name == "Riverside Rowing"


def test_an_administrator_changes_the_details_and_the_change_is_audited(admin_client, club):
    data = {
        "name": "Riverside RC",
        "postal_address": "1 River Rd",
        "sender_name": "Riverside",
        "reply_to": "hi@riverside.example",
        "is_active": "on",
    }

    response = admin_client.post("/organisations/", data)

    assert response.status_code == 302
    club.refresh_from_db()
    assert (club.name, club.slug, club.postal_address, club.reply_to) == (
        "Riverside RC",
        "riverside",
        "1 River Rd",
        "hi@riverside.example",
    )
    assert AuditEntry.objects.filter(action=AuditEntry.Action.ORGANISATION, organisation=club).exists()


def test_a_bad_reply_to_address_is_a_field_error(admin_client, club):
    response = admin_client.post(
        "/organisations/", {"name": "Riverside", "reply_to": "not an address", "is_active": "on"}
    )

    assert response.status_code == 200
    assert response.context["form"].errors["reply_to"]
    club.refresh_from_db()
    assert club.reply_to == ""


# --- the navbar: which organisation, and the switcher ---------------------------------------------


def test_every_page_names_the_organisation_and_one_organisation_shows_no_switcher(admin_client):
    page = admin_client.get("/campaigns/").content.decode()

    assert 'data-testid="current-organisation"><strong>Riverside Rowing</strong>' in page
    assert "/organisations/switch/" not in page


def test_a_member_of_two_organisations_switches_between_them(admin_client, club, other_club, club_admin, make_member):
    make_member("ada.admin", other_club, Role.VIEWER)

    page = admin_client.get("/organisations/").content.decode()
    assert "/organisations/switch/" in page
    assert page.index("Hilltop Chess") < page.index("Riverside Rowing</option>")  # sorted by name

    response = admin_client.post("/organisations/switch/", {"organisation": other_club.pk})

    assert response.status_code == 302
    assert admin_client.session[SESSION_KEY] == other_club.pk
    after = admin_client.get("/organisations/")
    assert after.context["organisation"] == other_club
    assert after.context["editable"] is False  # a viewer there


def test_switching_to_an_organisation_the_user_is_not_a_member_of_is_not_found(admin_client, club, other_club):
    before = admin_client.session.get(SESSION_KEY)

    assert admin_client.post("/organisations/switch/", {"organisation": other_club.pk}).status_code == 404
    assert admin_client.post("/organisations/switch/", {"organisation": "nonsense"}).status_code == 404
    assert admin_client.session.get(SESSION_KEY) == before


# --- child organisations ---------------------------------------------------------------------------


def test_an_administrator_creates_a_child_organisation_and_becomes_its_administrator(admin_client, club, club_admin):
    response = admin_client.post("/organisations/children/", {"name": "Junior Rowers", "slug": ""}, follow=True)

    child = Organisation.objects.get(slug="junior-rowers")
    assert child.parent == club
    assert Membership.objects.get(user=club_admin, organisation=child).role == Role.ADMINISTRATOR
    assert "Junior Rowers" in response.content.decode()


def test_the_children_page_lists_only_this_organisations_children(admin_client, club, other_club):
    Organisation.objects.create(name="Junior Rowers", slug="juniors", parent=club)
    Organisation.objects.create(name="Junior Chess", slug="junior-chess", parent=other_club)

    response = admin_client.get("/organisations/children/")

    assert [child.name for child in response.context["children"]] == ["Junior Rowers"]


def test_a_taken_slug_for_a_child_is_refused_with_a_message(admin_client, club, other_club):
    response = admin_client.post("/organisations/children/", {"name": "Copy", "slug": "hilltop"})

    assert response.status_code == 400
    assert "The slug “hilltop” is taken" in response.content.decode()


# --- the audit log ---------------------------------------------------------------------------------


def entry_summaries(response) -> list[str]:
    return [row.record.summary for row in response.context["table"].paginated_rows]


def test_the_audit_log_shows_only_the_organisations_entries_filtered(admin_client, club, other_club, club_admin):
    audit.record(None, audit.Action.SEND, "Sent Spring news", organisation=club, user=club_admin)
    audit.record(None, audit.Action.EXPORT, "Exported 5 contacts", organisation=club, rows=5)
    audit.record(None, audit.Action.SEND, "Sent Chess news", organisation=other_club)

    everything = admin_client.get("/organisations/audit/")
    sends = admin_client.get("/organisations/audit/", {"action": "send"})
    by_ada = admin_client.get("/organisations/audit/", {"user": "ADA.ADMIN"})

    assert set(entry_summaries(everything)) == {"ada.admin logged in", "Sent Spring news", "Exported 5 contacts"}
    assert entry_summaries(sends) == ["Sent Spring news"]
    assert entry_summaries(by_ada) == ["Sent Spring news", "ada.admin logged in"]


def test_the_audit_log_filters_by_a_date_range_including_the_last_day(admin_client, club):
    for day in (1, 2, 3):
        with time_machine.travel(datetime.datetime(2026, 3, day, 12, tzinfo=datetime.UTC), tick=False):
            audit.record(None, audit.Action.SEND, f"Sent on the {day}", organisation=club)

    response = admin_client.get("/organisations/audit/", {"date_from": "2026-03-02", "date_to": "2026-03-03"})

    assert entry_summaries(response) == ["Sent on the 3", "Sent on the 2"]


def test_a_reversed_date_range_is_shown_as_a_field_error_not_a_500(admin_client, club):
    response = admin_client.get(
        "/organisations/audit/", {"date_from": "2026-03-05", "date_to": "2026-03-01", "action": "bogus"}
    )

    assert response.status_code == 200
    assert response.context["filter_form"].errors.keys() == {"date_to", "action"}


def test_the_audit_log_is_paged(admin_client, club):
    for number in range(55):
        audit.record(None, audit.Action.SEND, f"Sent {number}", organisation=club)

    first = admin_client.get("/organisations/audit/", {"action": "send"})
    second = admin_client.get("/organisations/audit/", {"action": "send", "page": 2})

    assert len(entry_summaries(first)) == 50
    assert entry_summaries(first)[0] == "Sent 54"
    assert len(entry_summaries(second)) == 5


def csv_rows(response) -> list[list[str]]:
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    return list(csv.reader(io.StringIO(text)))


def test_the_audit_csv_has_the_filtered_entries_formula_safe_and_the_export_is_audited(admin_client, club, other_club):
    audit.record(None, audit.Action.SEND, '=HYPERLINK("http://evil")', organisation=club)
    audit.record(None, audit.Action.IMPORT, "Imported 3 contacts", organisation=club, rows=3)
    audit.record(None, audit.Action.SEND, "Sent Chess news", organisation=other_club)

    response = admin_client.get("/organisations/audit/export/", {"action": "send"})

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    header, *rows = csv_rows(response)
    assert header[:4] == ["when", "user", "action", "details"]
    assert [row[3] for row in rows] == ['\'=HYPERLINK("http://evil")']
    assert rows[0][2] == "Sent a campaign"
    export = AuditEntry.objects.get(action=AuditEntry.Action.EXPORT)
    assert (export.organisation, export.rows, export.username) == (club, 1, "ada.admin")


def test_the_audit_log_is_for_administrators_only(client, club, make_member):
    login(client, make_member("eve.editor", club, Role.EDITOR))

    assert client.get("/organisations/audit/").status_code == 403
    assert client.get("/organisations/audit/export/").status_code == 403


# --- the site operators' page -----------------------------------------------------------------------


@pytest.fixture
def operator_client(client, django_user_model, club):
    operator = django_user_model.objects.create_user(username="olga.operator", is_superuser=True, is_staff=True)
    return login(type(client)(), operator)


def test_only_site_operators_open_the_list_of_every_organisation(admin_client, operator_client, club, other_club):
    assert admin_client.get("/organisations/all/").status_code == 403

    page = operator_client.get("/organisations/all/")
    assert page.status_code == 200
    assert [organisation.name for _, organisation in page.context["tree"]] == ["Hilltop Chess", "Riverside Rowing"]


def test_an_operator_creates_and_switches_off_an_organisation(operator_client, club):
    operator_client.post("/organisations/all/", {"action": "create", "name": "State Body", "slug": "state"})
    state = Organisation.objects.get(slug="state")
    assert state.parent is None

    operator_client.post("/organisations/all/", {"action": "deactivate", "organisation": state.pk})

    state.refresh_from_db()
    assert state.is_active is False


def test_deleting_an_organisation_with_campaigns_is_refused_deactivate_it_instead(operator_client, club, other_club):
    CampaignFactory(organisation=other_club)

    confirm = operator_client.get("/organisations/all/", {"delete": other_club.pk})
    assert "Delete Hilltop Chess?" in confirm.content.decode()
    response = operator_client.post(f"/organisations/all/?delete={other_club.pk}", follow=True)

    assert "deactivate it instead" in response.content.decode()
    assert Organisation.objects.filter(pk=other_club.pk).exists()


def test_an_empty_organisation_is_deleted(operator_client, club):
    empty = Organisation.objects.create(name="Empty", slug="empty")

    operator_client.post(f"/organisations/all/?delete={empty.pk}")

    assert not Organisation.objects.filter(pk=empty.pk).exists()
    assert AuditEntry.objects.filter(action=AuditEntry.Action.DELETE, object_id=str(empty.pk)).exists()


def test_a_deactivated_organisations_members_lose_access_to_it(client, operator_client, club, other_club, make_member):
    chess = make_member("carl.chess", other_club, Role.ADMINISTRATOR)
    operator_client.post("/organisations/all/", {"action": "deactivate", "organisation": other_club.pk})

    response = login(client, chess).get("/organisations/")

    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_an_administrator_sees_the_share_of_the_send_rate_but_cannot_change_it(admin_client, club):
    data = {"name": "Riverside", "is_active": "on", "send_weight": "9"}

    response = admin_client.post("/organisations/", data)

    assert response.status_code == 302
    club.refresh_from_db()
    assert club.send_weight == 1
    page = admin_client.get("/organisations/").content.decode()
    assert 'name="send_weight"' in page and "disabled" in page.split('name="send_weight"')[1].split(">")[0]


def test_a_site_operator_sets_the_share_of_the_send_rate_and_it_is_audited(client, club, django_user_model):
    operator = django_user_model.objects.create_superuser(username="op", password="correct-horse-battery")
    client.force_login(operator)
    data = {"name": "Riverside", "is_active": "on", "send_weight": "3"}

    response = client.post("/organisations/", data)

    assert response.status_code == 302
    club.refresh_from_db()
    assert club.send_weight == 3
    entry = AuditEntry.objects.filter(action=AuditEntry.Action.ORGANISATION, organisation=club).latest("pk")
    assert "Share of the send rate" in entry.summary
    refused = client.post("/organisations/", {**data, "send_weight": "0"})
    assert refused.status_code == 200 and "greater than or equal to 1" in refused.content.decode()
