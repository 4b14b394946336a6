"""Duplicate: a new draft with the same content, layout, audience and its own attachment files."""

from __future__ import annotations

import pytest

from campaigns.models import Campaign, CampaignAttachment, Layout
from tests.campaigns.composer.test_attachments import PDF, upload
from tests.factories import campaign_to, list_with_contacts

pytestmark = pytest.mark.django_db


def test_the_duplicate_button_makes_a_draft_with_everything_but_the_history(staff_client):
    contact_list = list_with_contacts(2)
    original = campaign_to(
        contact_list, body_mode="markdown", body_source="# Hi {{ first_name }}", layout=Layout.objects.first()
    )
    original.exclude_lists.add(list_with_contacts(1))
    upload(staff_client, original, "programme.pdf", PDF)
    Campaign.objects.filter(pk=original.pk).update(status=Campaign.Status.SENT)

    response = staff_client.post(f"/campaigns/{original.pk}/duplicate/")

    copy = Campaign.objects.exclude(pk=original.pk).get()
    assert response["Location"] == f"/campaigns/{copy.pk}/"
    assert copy.status == Campaign.Status.DRAFT and copy.name == f"Copy of {original.name}"
    for field in ("subject", "html_body", "body_mode", "body_source", "layout_id", "from_email"):
        assert getattr(copy, field) == getattr(original, field), field
    assert list(copy.include_lists.all()) == [contact_list]
    assert copy.exclude_lists.count() == 1
    assert CampaignAttachment.objects.get(campaign=copy).file.read() == PDF
