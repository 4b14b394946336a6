"""Attachments: refused types, the size cap, stored once, inside the raw MIME SES received."""

from __future__ import annotations

import email
from email import policy

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from campaigns.composer.rendering import compile_campaign
from campaigns.models import CampaignAttachment
from tests.factories import CampaignFactory

pytestmark = pytest.mark.django_db

PDF = b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n"


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def upload(client, campaign, name: str, content: bytes):
    return client.post(
        reverse("compose:attachments", args=[campaign.pk]), {"file": SimpleUploadedFile(name, content)}, follow=False
    )


def test_a_pdf_is_stored_once_for_the_campaign(staff_client, media_root):
    campaign = CampaignFactory()

    response = upload(staff_client, campaign, "programme.pdf", PDF)

    assert response.status_code == 302
    attachment = CampaignAttachment.objects.get()
    assert (attachment.filename, attachment.content_type, attachment.size) == (
        "programme.pdf",
        "application/pdf",
        len(PDF),
    )
    stored = list((media_root / "attachments" / f"campaign-{campaign.pk}").iterdir())
    assert len(stored) == 1 and stored[0].read_bytes() == PDF
    assert compile_campaign(campaign).attachments == (("programme.pdf", PDF, "application/pdf"),)


@pytest.mark.parametrize("name", ["setup.exe", "run.bat", "script.js", "invoice.pdf.exe", "macro.VBS", "tool.msi"])
def test_programs_and_scripts_are_refused_with_a_clear_message(staff_client, name):
    campaign = CampaignFactory()

    response = upload(staff_client, campaign, name, b"harmless bytes")

    assert response.status_code == 400
    assert "files are refused (programs and scripts are blocked" in response.content.decode()
    assert not CampaignAttachment.objects.exists()


def test_an_executable_renamed_to_pdf_is_refused(staff_client):
    campaign = CampaignFactory()
    response = upload(staff_client, campaign, "report.pdf", b"MZ\x90\x00" + b"\x00" * 100)
    assert response.status_code == 400
    assert "is a program or script" in response.content.decode()


def test_the_size_cap_is_per_campaign(staff_client, settings):
    settings.ATTACHMENT_MAX_BYTES = 100
    campaign = CampaignFactory()

    assert upload(staff_client, campaign, "a.txt", b"x" * 60).status_code == 302
    response = upload(staff_client, campaign, "b.txt", b"y" * 60)

    assert response.status_code == 400
    assert "attachments over the 100\xa0bytes limit (60\xa0bytes already attached)" in response.content.decode()
    assert CampaignAttachment.objects.count() == 1


def test_attachments_are_inside_the_raw_mime_ses_received(ses, staff_client):
    campaign = CampaignFactory()
    upload(staff_client, campaign, "programme.pdf", PDF)
    upload(staff_client, campaign, "notes.txt", b"Bring a towel.\n")

    staff_client.post(reverse("compose:test_send", args=[campaign.pk]), {"addresses": "me@example.org"})

    (raw,) = ses.sent()
    message = email.message_from_string(raw["raw_data"], policy=policy.default)
    files = {part.get_filename(): part for part in message.iter_attachments()}
    assert sorted(files) == ["notes.txt", "programme.pdf"]
    assert files["programme.pdf"].get_content_type() == "application/pdf"
    assert files["programme.pdf"].get_content() == PDF
    assert files["notes.txt"].get_content().splitlines() == ["Bring a towel."]
    assert "Hi Alex," in message.get_body(("html",)).get_content()


def test_attachments_can_be_removed_while_the_campaign_is_a_draft(staff_client):
    campaign = CampaignFactory()
    upload(staff_client, campaign, "a.txt", b"abc")
    attachment = CampaignAttachment.objects.get()

    response = staff_client.post(reverse("compose:attachment_delete", args=[campaign.pk, attachment.pk]))

    assert response.status_code == 302
    assert not CampaignAttachment.objects.exists()


def test_a_duplicated_campaign_gets_its_own_copy_of_the_files(staff_client):
    from campaigns.composer.attachments import attachments_copy

    original = CampaignFactory()
    upload(staff_client, original, "programme.pdf", PDF)
    duplicate = CampaignFactory()

    assert attachments_copy(source=original, target=duplicate) == 1
    first = CampaignAttachment.objects.get(campaign=original)
    copy = CampaignAttachment.objects.get(campaign=duplicate)
    assert copy.file.name != first.file.name
    first.file.delete()

    assert compile_campaign(duplicate).attachments == (("programme.pdf", PDF, "application/pdf"),)


def test_an_attachment_file_lost_from_storage_blocks_sending_with_advice_but_not_the_pages(staff_client):
    import os

    from django.test import Client

    from audiences.models import Contact
    from campaigns.models import Recipient
    from campaigns.services import CampaignError, campaign_send_now
    from campaigns.tokens import recipient_token
    from tests.factories import campaign_to, list_with_contacts

    campaign = campaign_to(list_with_contacts(1))
    upload(staff_client, campaign, "programme.pdf", PDF)
    os.remove(CampaignAttachment.objects.get().file.path)
    contact = Contact.objects.get()
    recipient = Recipient.objects.create(campaign=campaign, contact=contact, email=contact.email)

    assert Client().get(f"/m/{recipient_token(recipient.pk)}/").status_code == 200  # public "view online"
    preview = staff_client.get(reverse("compose:preview", args=[campaign.pk]))
    assert preview.status_code == 200 and "1 attachment" in preview.content.decode()
    with pytest.raises(CampaignError, match="An attachment's file cannot be read: remove it"):
        campaign_send_now(campaign_id=campaign.pk)
