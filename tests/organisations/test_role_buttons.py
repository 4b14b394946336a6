"""Pages show only the buttons the member's role can use: a viewer sees no exports and no
"Add contact", an editor sees no Send now or Schedule (and is told who can), a sender sees both.
The server refuses them all the same (tests/cobalt_mail/test_access.py)."""

from __future__ import annotations

import pytest

from organisations.models import Role
from tests.factories import CampaignFactory, ContactListFactory, SegmentFactory

pytestmark = pytest.mark.django_db


def page_as(client, make_member, club, role: str, url: str) -> str:
    client.force_login(make_member(f"someone.{role}", club, role))
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.parametrize(
    "url",
    [
        "/audiences/contacts/",
        "/audiences/lists/{list}/",
        "/audiences/segments/{segment}/",
        "/reports/campaigns/{campaign}/recipients/",
    ],
)
def test_a_viewer_sees_no_export_or_editing_buttons_but_an_editor_does(client, make_member, club, url):
    contact_list = ContactListFactory(organisation=club)
    segment = SegmentFactory(organisation=club)
    campaign = CampaignFactory(organisation=club, status="sent")
    url = url.format(list=contact_list.pk, segment=segment.pk, campaign=campaign.pk)

    as_viewer = page_as(client, make_member, club, Role.VIEWER, url)
    as_editor = page_as(client, make_member, club, Role.EDITOR, url)

    assert "Export CSV" not in as_viewer
    assert "Export CSV" in as_editor
    if "recipients" in url:
        assert "Save as segment" not in as_viewer and "Save as segment" in as_editor
    if url == "/audiences/contacts/":
        assert "Add contact" not in as_viewer and "Add contact" in as_editor


def test_an_editor_sees_no_send_or_schedule_buttons_and_is_told_which_role_sends(client, make_member, club):
    campaign = CampaignFactory(organisation=club)

    as_editor = page_as(client, make_member, club, Role.EDITOR, f"/campaigns/{campaign.pk}/")
    as_sender = page_as(client, make_member, club, Role.SENDER, f"/campaigns/{campaign.pk}/")

    assert "Send now" not in as_editor and 'id="schedule-form"' not in as_editor
    assert "need the Sender role in Riverside Rowing" in as_editor
    assert "Send now" in as_sender and 'id="schedule-form"' in as_sender
    assert "need the Sender role" not in as_sender
