"""CSV import service and the import_contacts command, fed hostile files."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from audiences.imports import ImportRefused, contacts_import
from audiences.models import Contact, ContactList, Subscription, Suppression
from organisations.models import sole_organisation_id
from tests.factories import ContactFactory, ContactListFactory

pytestmark = pytest.mark.django_db


def write(tmp_path: Path, content: str | bytes, name: str = "contacts.csv") -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


def run_import(path: Path, contact_list: ContactList | None = None, **options):
    contact_list = contact_list or ContactListFactory(name="Members")
    return contacts_import(organisation_id=sole_organisation_id(), path=path, contact_list=contact_list, **options)


def database_state() -> tuple:
    return (
        sorted(Contact.objects.values_list("email", "first_name", "last_name", "attributes", "status", "updated_at")),
        sorted(Subscription.objects.values_list("contact__email", "contact_list__name", "status", "changed_at")),
    )


def test_it_imports_good_rows_and_maps_the_header(tmp_path):
    path = write(
        tmp_path,
        "E-Mail,First Name,Surname,Club,Member No\n"
        " Ada@Example.ORG ,Ada,Lovelace,Rowing,007\n"
        "grace@example.org,Grace,Hopper,,12\n",
    )

    report = run_import(path)

    assert (report.created, report.subscribed, report.rejected) == (2, 2, 0)
    ada = Contact.objects.get(email="ada@example.org")
    assert (ada.first_name, ada.last_name) == ("Ada", "Lovelace")
    assert ada.attributes == {"club": "Rowing", "member_no": "007"}
    assert Contact.objects.get(email="grace@example.org").attributes == {"member_no": "12"}
    assert Subscription.objects.filter(contact_list__name="Members", status="subscribed").count() == 2


def test_it_reports_every_bad_row_with_its_line_and_reason_and_imports_the_rest(tmp_path):
    path = write(
        tmp_path,
        "email,first_name,last_name\n"
        "good@example.org,Good,Row\n"
        "not-an-address,Bad,Row\n"
        ",No,Email\n"
        "GOOD@Example.org,Same,Address\n"
        f"long@example.org,{'x' * 101},Name\n"
        "another@example.org,,\n",
    )
    rejected = tmp_path / "rejected.csv"

    report = run_import(path, rejected_path=rejected)

    assert sorted(Contact.objects.values_list("email", flat=True)) == ["another@example.org", "good@example.org"]
    reasons = {row["line"]: row["reason"] for row in report.rejected_preview}
    assert reasons == {
        3: "invalid email address",
        4: "missing email",
        5: "duplicate of line 2 (same address)",
        6: "first name longer than 100 characters",
    }
    with open(rejected, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["line", "reason", "email", "first_name", "last_name"]
    assert [row[:2] for row in rows[1:]] == [[str(line), reason] for line, reason in reasons.items()]
    assert rows[1][2:] == ["not-an-address", "Bad", "Row"]


def test_reimporting_the_same_file_changes_nothing(tmp_path):
    path = write(tmp_path, "email;first_name;city\nada@example.org;Ada;London\nbob@example.org;Bob;Paris\n")
    members = ContactListFactory(name="Members")
    run_import(path, members, update=True)
    before = database_state()

    report = run_import(path, members, update=True)

    assert database_state() == before
    assert (report.created, report.updated, report.unchanged, report.subscribed) == (0, 0, 2, 0)


def test_it_updates_existing_contacts_only_with_update_and_never_erases_with_empty_cells(tmp_path):
    ContactFactory(email="ada@example.org", first_name="Ada", last_name="Lovelace", attributes={"club": "Rowing"})
    path = write(tmp_path, "email,first_name,last_name,city\nada@example.org,Augusta,,London\n")

    run_import(path)
    assert Contact.objects.get().first_name == "Ada"

    report = run_import(path, ContactList.objects.get(), update=True)
    ada = Contact.objects.get()
    assert report.updated == 1
    assert (ada.first_name, ada.last_name) == ("Augusta", "Lovelace")
    assert ada.attributes == {"club": "Rowing", "city": "London"}


def test_it_never_resubscribes_unsubscribed_or_suppressed_contacts(tmp_path):
    members = ContactListFactory(name="Members")
    left = ContactFactory(email="left@example.org")
    Subscription.objects.create(contact=left, contact_list=members, status="unsubscribed")
    ContactFactory(email="quit@example.org", status=Contact.Status.UNSUBSCRIBED)
    Suppression.objects.create(email="blocked@example.org", reason=Suppression.Reason.HARD_BOUNCE)
    path = write(tmp_path, "email\nleft@example.org\nquit@example.org\nblocked@example.org\nnew@example.org\n")

    report = run_import(path, members)

    subscribed = set(members.subscriptions.filter(status="subscribed").values_list("contact__email", flat=True))
    assert subscribed == {"new@example.org"}
    assert report.not_resubscribed == 3
    assert Contact.objects.get(email="quit@example.org").status == Contact.Status.UNSUBSCRIBED
    assert members.subscriptions.get(contact=left).status == "unsubscribed"


def test_it_accepts_utf8_with_bom_and_internationalised_domains(tmp_path):
    path = write(tmp_path, "\ufeffemail,first_name\nJose@Bücher.example,José\n".encode())

    report = run_import(path)

    assert report.encoding == "utf-8-sig"
    contact = Contact.objects.get()
    assert contact.email == "jose@xn--bcher-kva.example"
    assert contact.first_name == "José"


def test_it_detects_a_windows_1252_file(tmp_path):
    path = write(tmp_path, "email;first_name\nzoe@example.org;Zoë\n".encode("cp1252"))

    report = run_import(path)

    assert report.encoding == "cp1252"
    assert Contact.objects.get().first_name == "Zoë"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "The file is empty."),
        (b"\n\r\n", "The file is empty."),
        (b"PK\x03\x04\x14\x00\x06\x00" + bytes(range(256)), "Excel workbook"),
        (b"\x00\x01\x02binary\x00\xff" * 50, "binary data"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "PDF"),
        (
            "email\nutf8@example.org,Zoë\n".encode() + "latin@example.org,Zoë\n".encode("latin-1"),
            "mixes text encodings",
        ),
        (b"name,phone\nAda,123\n", "No email column"),
        (b"Just a letter to say hello.\nBest wishes.\n", "No email column"),
        (b"email,Email Address\na@example.org,b@example.org\n", "both imported as email"),
        (b"email,City,city\na@example.org,Bonn,Bonn\n", "more than once"),
        ("email\n".encode("utf-16"), "UTF-16"),
    ],
    ids=[
        "empty",
        "blank-lines",
        "xlsx",
        "binary",
        "pdf",
        "mixed-encodings",
        "no-email",
        "prose",
        "dup-column",
        "dup-attribute",
        "utf16",
    ],
)
def test_it_refuses_a_file_that_is_not_a_usable_csv_and_changes_nothing(tmp_path, content, message):
    ContactFactory(email="existing@example.org")
    before = database_state()
    path = write(tmp_path, content)

    with pytest.raises(ImportRefused, match=message):
        run_import(path)

    assert database_state() == before


def test_a_header_only_file_imports_nothing_and_rejects_nothing(tmp_path):
    report = run_import(write(tmp_path, "email,first_name,last_name\n"))

    assert (report.rows_read, report.created, report.rejected) == (0, 0, 0)
    assert not Contact.objects.exists()


def test_a_100000_character_line_is_rejected_and_the_other_rows_imported(tmp_path):
    path = write(
        tmp_path,
        "email,notes\n"
        f"huge@example.org,{'A' * 100_000}\n"
        f"{'b' * 100_000}@example.org,hello\n"
        f'"unterminated@example.org,{"C" * 150_000}\n',
    )
    path.write_text(path.read_text() + "fine@example.org,ok\n")

    report = run_import(path)

    assert set(Contact.objects.values_list("email", flat=True)) <= {"fine@example.org"}
    reasons = {row["line"]: row["reason"] for row in report.rejected_preview}
    assert reasons[2] == "column “notes” longer than 1000 characters"
    assert reasons[3] == "email longer than 254 characters"
    assert "unreadable CSV" in reasons[4] or "longer" in reasons[4]
    assert all(len(" ".join(row["values"])) < 1000 for row in report.rejected_preview)


def test_formula_payloads_are_stored_as_text_and_escaped_in_the_rejected_rows_file(tmp_path):
    path = write(
        tmp_path,
        'email,first_name,last_name\nsafe@example.org,"=HYPERLINK(""http://evil.example"",""x"")",+1\n'
        "=cmd|' /C calc'!A0,-2+3,@SUM(A1)\n",
    )
    rejected = tmp_path / "rejected.csv"

    run_import(path, rejected_path=rejected)

    contact = Contact.objects.get()
    assert contact.first_name == '=HYPERLINK("http://evil.example","x")'
    with open(rejected, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[1][2:] == ["'=cmd|' /C calc'!A0", "'-2+3", "'@SUM(A1)"]


def test_the_command_imports_into_a_named_list_and_reports(tmp_path, capsys):
    path = write(tmp_path, "email,first_name\nada@example.org,Ada\nbad-address,Bob\n")

    call_command("import_contacts", str(path), "--list", "Newsletter")

    out = capsys.readouterr().out
    assert "1 new" in out and "1 rejected" in out and "line 3: invalid email address" in out
    assert ContactList.objects.get(name="Newsletter").subscriptions.count() == 1
    assert (tmp_path / "contacts.csv.rejected.csv").exists()


def test_the_command_refuses_a_binary_file_without_creating_the_list(tmp_path):
    path = write(tmp_path, b"\x89PNG\r\n\x1a\n" + bytes(200))

    with pytest.raises(CommandError, match="PNG image"):
        call_command("import_contacts", str(path), "--list", "Newsletter")

    assert not ContactList.objects.exists()
