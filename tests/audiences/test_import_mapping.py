"""The column mapping step of CSV imports: the guess, the page, the confirmation, --map, and the
rejected-rows file that can be fixed and uploaded again."""

from __future__ import annotations

import csv
import io
import tracemalloc
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.utils import timezone
from django_q.brokers import get_broker

from audiences.imports import ImportRefused, contacts_import, file_head_read, import_job_run, mapping_guess
from audiences.models import Contact, ContactList, ImportJob
from campaigns.tasks import engine_tick
from organisations.models import sole_organisation_id
from tests.audiences.test_import_upload import confirm_columns, queued_task_args
from tests.factories import ContactListFactory

pytestmark = pytest.mark.django_db

GERMAN_CP1252 = "E-Mail;Vorname;Nachname;Verein\nzoe@example.org;Zoë;Müller;Ruderclub\njörg@example.org;Jörg;Groß;\n"


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture(autouse=True)
def empty_queue():
    get_broker().purge_queue()
    yield
    get_broker().purge_queue()


def write(tmp_path: Path, content: str | bytes, name: str = "contacts.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def upload(staff_client, content: bytes, name: str = "members.csv", list_name: str = "Members"):
    file = SimpleUploadedFile(name, content, content_type="text/csv")
    return staff_client.post("/audiences/imports/", {"file": file, "new_list": list_name})


# --- the guess ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (["E-Mail", "Vorname", "Nachname"], ["email", "first_name", "last_name"]),
        (["EMAIL", "First name", "Surname"], ["email", "first_name", "last_name"]),
        (["e_mail", "first-name", "last_name"], ["email", "first_name", "last_name"]),
        (["Mail", "Prénom", "Nom"], ["email", "first_name", "last_name"]),
        (["Adresse e-mail", "PRENOM", "nom de famille"], ["email", "first_name", "last_name"]),
        (["E-mailadres", "Voornaam", "Achternaam"], ["email", "first_name", "last_name"]),
        (["Correo electrónico", "Nombre", "Apellidos"], ["email", "first_name", "last_name"]),
        (["Email Address", "nombre", "Apellido"], ["email", "first_name", "last_name"]),
        (["Indirizzo email", "Nome", "Cognome"], ["email", "first_name", "last_name"]),
        (["email", "Given Name", "Family Name", "Club", "Member No"], [
            "email", "first_name", "last_name", "attribute", "attribute",
        ]),
        (["email", "", "***"], ["email", "ignore", "ignore"]),
        (["line", "reason", "email", "Vorname"], ["ignore", "ignore", "email", "first_name"]),
        (["email", "line", "reason"], ["email", "attribute", "attribute"]),
    ],
)  # fmt: skip
def test_it_guesses_the_email_and_name_columns_in_six_languages(header, expected):
    assert mapping_guess(header) == expected


def test_a_windows_1252_file_with_german_headers_fills_first_and_last_name(tmp_path):
    path = write(tmp_path, GERMAN_CP1252.encode("cp1252"))

    report = contacts_import(organisation_id=sole_organisation_id(), path=path, contact_list=ContactListFactory())

    assert report.encoding == "cp1252"
    zoe = Contact.objects.get(email="zoe@example.org")
    assert (zoe.first_name, zoe.last_name, zoe.attributes) == ("Zoë", "Müller", {"verein": "Ruderclub"})
    assert [column["field"] for column in report.mapping] == ["email", "first_name", "last_name", "attribute"]


def test_the_mapping_step_reads_the_header_and_five_rows_of_a_large_file_in_little_memory(tmp_path):
    path = tmp_path / "large.csv"
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("email,first_name,last_name,notes\n")
        for number in range(120_000):
            handle.write(f"member{number}@example.org,First{number},Last{number},{'x' * 40}\n")
    assert path.stat().st_size > 8 * 2**20

    tracemalloc.start()
    try:
        head = file_head_read(path)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert head.header == ["email", "first_name", "last_name", "notes"]
    assert [row[0] for row in head.samples] == [f"member{number}@example.org" for number in range(5)]
    assert peak < 3 * 2**20  # the file is 8 MiB and more: it is streamed, never loaded


def test_a_chosen_mapping_wins_over_the_guess(tmp_path):
    path = write(tmp_path, "Adresse,Name,Notes\nada@example.org,Ada,private\n")

    contacts_import(
        organisation_id=sole_organisation_id(),
        path=path,
        contact_list=ContactListFactory(),
        fields=["email", "first_name", "ignore"],
    )

    ada = Contact.objects.get()
    assert (ada.email, ada.first_name, ada.attributes) == ("ada@example.org", "Ada", {})


def test_a_mapping_without_an_email_column_is_refused_and_writes_nothing(tmp_path):
    path = write(tmp_path, "email,first_name\nada@example.org,Ada\n")

    with pytest.raises(ImportRefused, match="No email column: choose the column that holds the email addresses"):
        contacts_import(
            organisation_id=sole_organisation_id(),
            path=path,
            contact_list=ContactListFactory(),
            fields=["attribute", "first_name"],
        )

    assert not Contact.objects.exists()


# --- the page -----------------------------------------------------------------------------------


def test_an_upload_shows_its_columns_guessed_with_sample_rows_and_writes_nothing(staff_client):
    response = upload(staff_client, GERMAN_CP1252.encode("cp1252"))

    job = ImportJob.objects.get()
    assert response["Location"] == f"/audiences/imports/{job.pk}/columns/"
    page = staff_client.get(response["Location"])
    body = page.content.decode()
    assert page.context["form"]["column_0"].value() == "email"
    assert page.context["form"]["column_1"].value() == "first_name"
    assert page.context["form"]["column_2"].value() == "last_name"
    assert page.context["form"]["column_3"].value() == "attribute"
    assert "Zoë" in body and "Groß" in body and "Ruderclub" in body  # decoded as Windows-1252
    assert "Nothing is imported yet" in body
    assert job.status == ImportJob.Status.MAPPING and job.encoding == "cp1252"
    assert not Contact.objects.exists()
    assert queued_task_args() == []
    assert staff_client.get(f"/audiences/imports/{job.pk}/")["Location"] == f"/audiences/imports/{job.pk}/columns/"


def test_column_names_and_sample_cells_are_shown_as_text(staff_client):
    upload(staff_client, b'email,<b>Club</b>\nada@example.org,"<script>alert(1)</script>"\n')

    body = staff_client.get(f"/audiences/imports/{ImportJob.objects.get().pk}/columns/").content.decode()

    assert "<script>alert(1)" not in body and "&lt;script&gt;alert(1)" in body
    assert "<b>Club</b>" not in body and "&lt;b&gt;Club&lt;/b&gt;" in body


def test_confirming_a_changed_mapping_imports_with_it(staff_client, django_capture_on_commit_callbacks):
    upload(staff_client, b"Adresse;Name;Verein\nada@example.org;Lovelace;Rowing\n")
    job = ImportJob.objects.get()

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            f"/audiences/imports/{job.pk}/columns/",
            {"column_0": "email", "column_1": "last_name", "column_2": "ignore"},
        )

    assert response["Location"] == f"/audiences/imports/{job.pk}/"
    assert queued_task_args() == [("audiences.imports.import_job_run", (job.pk, job.organisation_id))]
    job.refresh_from_db()
    assert [column["field"] for column in job.column_mapping] == ["email", "last_name", "ignore"]
    assert job.sample_rows == []  # personal data, needed only for the choice
    assert import_job_run(job.pk) == "done"
    ada = Contact.objects.get()
    assert (ada.email, ada.last_name, ada.attributes) == ("ada@example.org", "Lovelace", {})
    detail = staff_client.get(f"/audiences/imports/{job.pk}/").content.decode()
    assert "“Adresse” → email, “Name” → last name, “Verein” → ignored" in detail


@pytest.mark.parametrize(
    ("choice", "message"),
    [
        ({"column_0": "attribute", "column_1": "first_name"}, "No email column: choose the column"),
        ({"column_0": "email", "column_1": "email"}, "are both imported as email"),
        ({"column_0": "email", "column_1": "nonsense"}, "Select a valid choice"),
    ],
)
def test_a_bad_mapping_shows_a_clear_message_and_writes_nothing(
    staff_client, django_capture_on_commit_callbacks, choice, message
):
    upload(staff_client, b"email,first_name\nada@example.org,Ada\n")
    job = ImportJob.objects.get()

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(f"/audiences/imports/{job.pk}/columns/", choice)

    assert response.status_code == 200
    assert message in response.content.decode()
    job.refresh_from_db()
    assert job.status == ImportJob.Status.MAPPING
    assert [column["field"] for column in job.column_mapping] == ["email", "first_name"]
    assert queued_task_args() == []
    assert not Contact.objects.exists()


def test_a_confirmed_import_cannot_be_confirmed_again(staff_client, django_capture_on_commit_callbacks):
    upload(staff_client, b"email\nada@example.org\n")
    job = ImportJob.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        confirm_columns(staff_client, job)
        again = staff_client.post(f"/audiences/imports/{job.pk}/columns/", {"column_0": "email"})

    assert again["Location"] == f"/audiences/imports/{job.pk}/"
    assert len(queued_task_args()) == 1


def test_cancelling_at_the_mapping_step_deletes_the_upload_and_its_file(staff_client):
    upload(staff_client, b"email\nada@example.org\n")
    job = ImportJob.objects.get()
    stored = Path(job.file.path)
    assert stored.exists()

    response = staff_client.post(f"/audiences/imports/{job.pk}/cancel/")

    assert response["Location"] == "/audiences/imports/"
    assert not ImportJob.objects.exists() and not stored.exists()
    assert not Contact.objects.exists()


def test_an_upload_left_at_the_mapping_step_for_a_day_is_deleted_at_the_next_upload(staff_client):
    upload(staff_client, b"email\nada@example.org\n")
    old = ImportJob.objects.get()
    ImportJob.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=2))
    old_file = Path(old.file.path)

    upload(staff_client, b"email\nbob@example.org\n", name="other.csv")

    assert list(ImportJob.objects.values_list("original_name", flat=True)) == ["other.csv"]
    assert not old_file.exists()


def test_the_engine_tick_deletes_an_upload_left_at_the_mapping_step_for_a_day(staff_client):
    upload(staff_client, b"email\nada@example.org\n")
    upload(staff_client, b"email\nbob@example.org\n", name="today.csv")
    old = ImportJob.objects.exclude(original_name="today.csv").get()
    ImportJob.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=2))
    old_file = Path(old.file.path)

    assert engine_tick()["uploads_discarded"] == 1

    assert list(ImportJob.objects.values_list("original_name", flat=True)) == ["today.csv"]
    assert not old_file.exists()


# --- the rejected-rows file ---------------------------------------------------------------------


def test_the_rejected_rows_file_can_be_fixed_and_uploaded_again(staff_client, django_capture_on_commit_callbacks):
    content = (
        "E-Mail;Vorname;Nachname;Club\n"
        "ada@example.org;Ada;Lovelace;Rowing\n"
        "grace(at)example.org;Grace;Hopper;Chess\n"
        ";Alan;Turing;Running\n"
    ).encode("cp1252")
    with django_capture_on_commit_callbacks(execute=True):
        upload(staff_client, content)
        confirm_columns(staff_client, ImportJob.objects.get())
    first = ImportJob.objects.get()
    assert import_job_run(first.pk) == "done"
    download = staff_client.get(f"/audiences/imports/{first.pk}/rejected.csv")
    rows = list(csv.reader(io.StringIO(b"".join(download.streaming_content).decode())))
    assert rows == [
        ["line", "reason", "E-Mail", "Vorname", "Nachname", "Club"],
        ["3", "invalid email address", "grace(at)example.org", "Grace", "Hopper", "Chess"],
        ["4", "missing email", "", "Alan", "Turing", "Running"],
    ]

    rows[1][2], rows[2][2] = "grace@example.org", "alan@example.org"  # fixed in a spreadsheet
    fixed = io.StringIO()
    csv.writer(fixed).writerows(rows)
    upload(staff_client, fixed.getvalue().encode(), name="rejected-fixed.csv")
    second = ImportJob.objects.latest("pk")
    assert [column["field"] for column in second.column_mapping] == [
        "ignore", "ignore", "email", "first_name", "last_name", "attribute",
    ]  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        confirm_columns(staff_client, second)
    assert import_job_run(second.pk) == "done"

    second.refresh_from_db()
    assert (second.created, second.rejected) == (2, 0)
    people = {c.email: (c.first_name, c.last_name, c.attributes) for c in Contact.objects.all()}
    assert people == {
        "ada@example.org": ("Ada", "Lovelace", {"club": "Rowing"}),
        "grace@example.org": ("Grace", "Hopper", {"club": "Chess"}),
        "alan@example.org": ("Alan", "Turing", {"club": "Running"}),
    }
    assert ContactList.objects.get().subscriptions.count() == 3


def test_rejected_cells_are_kept_whole_in_the_rejected_rows_file(tmp_path):
    path = write(tmp_path, f"email,notes\nbad-address,{'n' * 900}\n")
    rejected = tmp_path / "rejected.csv"

    contacts_import(
        organisation_id=sole_organisation_id(), path=path, contact_list=ContactListFactory(), rejected_path=rejected
    )

    with open(rejected, newline="", encoding="utf-8") as handle:
        assert list(csv.reader(handle)) == [
            ["line", "reason", "email", "notes"],
            ["2", "invalid email address", "bad-address", "n" * 900],
        ]


# --- import_contacts ----------------------------------------------------------------------------


def test_the_command_prints_the_mapping_it_guessed(tmp_path, capsys):
    path = write(tmp_path, GERMAN_CP1252.encode("cp1252"))

    call_command("import_contacts", str(path), "--list", "Verein")

    out = capsys.readouterr().out
    assert "Columns: “E-Mail” → email, “Vorname” → first name, “Nachname” → last name, “Verein” → attribute" in out
    assert Contact.objects.get(email="zoe@example.org").last_name == "Müller"


def test_the_command_takes_map_options(tmp_path, capsys):
    path = write(tmp_path, "Adresse;Name;Notes;line\nada@example.org;Ada;private;7\n")

    call_command(
        "import_contacts",
        str(path),
        "--list",
        "Members",
        "--map",
        "adresse=email",
        "--map",
        "Name=first-name",
        "--map",
        "Notes=ignore",
    )

    out = capsys.readouterr().out
    assert "Columns: “Adresse” → email, “Name” → first name, “Notes” → ignored, “line” → attribute “line”" in out
    ada = Contact.objects.get()
    assert (ada.email, ada.first_name, ada.attributes) == ("ada@example.org", "Ada", {"line": "7"})


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ("Phone=email", "the file has no column “Phone”"),
        ("Name=nickname", "FIELD is one of email, first_name, last_name, attribute, ignore"),
        ("Adresse=ignore", "No email column"),
    ],
)
def test_the_command_refuses_a_bad_map_and_changes_nothing(tmp_path, mapping, message):
    path = write(tmp_path, "Adresse;Name\nada@example.org;Ada\n")

    with pytest.raises(CommandError, match=message):
        call_command("import_contacts", str(path), "--list", "Members", "--map", "Adresse=email", "--map", mapping)

    assert not ContactList.objects.exists() and not Contact.objects.exists()
