"""One address check for imports, the contact form and import_contacts: what SES can send to."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command

from audiences.addresses import EMAIL_INVALID, EMAIL_NON_ASCII_LOCAL, EMAIL_SEVERAL, email_check
from audiences.imports import contacts_import, import_job_run
from audiences.models import Contact, ImportJob
from organisations.models import sole_organisation_id
from tests.audiences.test_import_upload import confirm_columns
from tests.factories import ContactListFactory

pytestmark = pytest.mark.django_db

MIXED_FILE = (
    "email,first_name\n"
    "x@localhost,Local\n"  # 2
    "josé@example.org,José\n"  # 3
    "jose@bücher.example,Jose\n"  # 4
    "<angle@example.com>,Angle\n"  # 5
    "Ann Smith <ann@b.org>,Ann\n"  # 6
    '"ann@b.org, bob@b.org",Two\n'  # 7
    "plain@example.org,Plain\n"  # 8
    "bad@exa mple.org,Space\n"  # 9
    "dot@xn--.org,Broken\n"  # 10
)


@pytest.mark.parametrize(
    ("raw", "email", "rewritten"),
    [
        ("Ada@Example.ORG", "ada@example.org", False),
        ("  ada@example.org ", "ada@example.org", False),
        ("jose@Bücher.example", "jose@xn--bcher-kva.example", False),
        ("<angle@example.com>", "angle@example.com", True),
        ("Name <a@b.org>", "a@b.org", True),
        ('"Smith, Ann" <Ann@B.org>', "ann@b.org", True),
    ],
)
def test_it_accepts_addresses_ses_can_send_to(raw, email, rewritten):
    checked = email_check(raw)

    assert (checked.email, checked.rewritten) == (email, rewritten)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "missing email"),
        ("x@localhost", "no dot in the domain “localhost”"),
        ("zoë@example.org", EMAIL_NON_ASCII_LOCAL),
        ("a@b.org; c@d.org", EMAIL_SEVERAL),
        ("not-an-address", EMAIL_INVALID),
        ("<a@b.org", EMAIL_INVALID),
        ("a@-bad-.org", EMAIL_INVALID),
        ("x" * 250 + "@example.org", "email longer than 254 characters"),
        ("a@xn--.org", EMAIL_INVALID),
        ("a@exa\u2028mple.org", "the domain “exa\u2028mple.org” is not a valid internet domain"),
        ("a@" + "ü" * 70 + ".org", "is not a valid internet domain"),
    ],
)
def test_it_refuses_each_kind_of_bad_address_with_its_own_reason(raw, reason):
    with pytest.raises(ValidationError) as refused:
        email_check(raw)

    assert reason in refused.value.messages[0]


def test_the_non_ascii_local_part_reason_is_plain_words():
    assert EMAIL_NON_ASCII_LOCAL.startswith("SES cannot send to addresses with non-ASCII characters before the @")


def test_an_import_gives_each_rejected_row_its_reason_and_counts_rewritten_addresses(tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_text(MIXED_FILE, encoding="utf-8")

    report = contacts_import(organisation_id=sole_organisation_id(), path=path, contact_list=ContactListFactory())

    reasons = {row["line"]: row["reason"] for row in report.rejected_preview}
    assert reasons[2].startswith("no dot in the domain “localhost”")
    assert reasons[3] == EMAIL_NON_ASCII_LOCAL
    assert reasons[7] == EMAIL_SEVERAL
    assert reasons[9] == reasons[10] == EMAIL_INVALID
    assert len({reasons[2], reasons[3], reasons[7], reasons[9]}) == 4
    assert set(Contact.objects.values_list("email", flat=True)) == {
        "jose@xn--bcher-kva.example",
        "angle@example.com",
        "ann@b.org",
        "plain@example.org",
    }
    assert report.rewritten == 2
    assert report.rewritten_preview == [
        {"line": 5, "written": "<angle@example.com>", "email": "angle@example.com"},
        {"line": 6, "written": "Ann Smith <ann@b.org>", "email": "ann@b.org"},
    ]


def test_the_result_page_says_how_many_addresses_were_rewritten_and_why_rows_were_refused(
    staff_client, settings, tmp_path, django_capture_on_commit_callbacks
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    settings.MEDIA_ROOT = tmp_path / "media"
    file = SimpleUploadedFile("mixed.csv", MIXED_FILE.encode(), content_type="text/csv")
    with django_capture_on_commit_callbacks(execute=True):
        staff_client.post("/audiences/imports/", {"file": file, "new_list": "Members"})
        confirm_columns(staff_client, ImportJob.objects.get())
    job = ImportJob.objects.get()
    assert import_job_run(job.pk) == "done"

    body = staff_client.get(f"/audiences/imports/{job.pk}/").content.decode()

    assert "2 addresses were written with a name or angle brackets, and imported as the bare address" in body
    assert "line 6: “Ann Smith &lt;ann@b.org&gt;” → ann@b.org" in body
    assert "no dot in the domain “localhost”" in body
    assert EMAIL_NON_ASCII_LOCAL in body
    job.refresh_from_db()
    assert job.rewritten == 2


@pytest.mark.parametrize(
    ("email", "error"),
    [
        ("x@localhost", "“x@localhost” cannot be used: no dot in the domain “localhost”"),
        ("josé@example.org", "“josé@example.org” cannot be used: SES cannot send to addresses with non-ASCII"),
    ],
)
def test_the_contact_form_refuses_with_the_same_reasons(staff_client, email, error):
    response = staff_client.post("/audiences/contacts/new/", {"email": email})

    assert error in " ".join(response.context["form"].errors["email"])
    assert not Contact.objects.exists()


def test_the_contact_form_stores_an_internationalised_domain_in_punycode(staff_client):
    staff_client.post("/audiences/contacts/new/", {"email": "Name <Jose@Bücher.example>"})

    assert Contact.objects.get().email == "jose@xn--bcher-kva.example"


def test_the_command_reports_the_same_reasons_and_the_rewritten_addresses(tmp_path, capsys):
    path = tmp_path / "mixed.csv"
    path.write_text(MIXED_FILE, encoding="utf-8")

    call_command("import_contacts", str(path), "--list", "Members")

    out = capsys.readouterr().out
    assert "line 2: no dot in the domain “localhost”" in out
    assert f"line 3: {EMAIL_NON_ASCII_LOCAL}" in out
    assert "2 addresses were rewritten to the bare address" in out
    assert "line 6: Ann Smith <ann@b.org> → ann@b.org" in out
