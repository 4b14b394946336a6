"""Layouts through the real send path: engine → django-ses → local SES, read back as raw MIME."""

from __future__ import annotations

import email
import re
from email import policy

import pytest
from django.urls import reverse

from campaigns.composer.layouts import DEFAULT_LAYOUT_NAME, default_layout
from campaigns.delivery.engine import campaign_dispatch
from campaigns.models import Layout, Recipient
from campaigns.services import campaign_send_now
from campaigns.snapshot import audience_snapshot
from campaigns.tokens import LinkPurpose, LinkToken, link_token_read
from tests.factories import campaign_to, list_with_contacts

pytestmark = pytest.mark.django_db


def test_a_default_layout_always_exists():
    Layout.objects.all().delete()
    layout = default_layout()
    assert (layout.name, layout.is_default) == (DEFAULT_LAYOUT_NAME, True)
    assert "{{ content }}" in layout.html and "{{ unsubscribe_url }}" in layout.html


def test_sent_messages_carry_the_layout_with_inlined_css_preheader_and_text_part(
    ses, settings, django_capture_on_commit_callbacks
):
    settings.POSTAL_ADDRESS = "Cobalt Rowing, 5 River Lane, Oxford"
    campaign = campaign_to(
        list_with_contacts(1, first_name="Ada"),
        layout=default_layout(),
        preheader="Results for {{ first_name }}",
        html_body='<p>Hi {{ first_name }}, <a href="https://example.org/results">see the results</a>.</p>',
    )

    with django_capture_on_commit_callbacks(execute=False):
        campaign_send_now(campaign_id=campaign.pk)
    audience_snapshot(campaign_id=campaign.pk)
    assert campaign_dispatch(campaign_id=campaign.pk, seconds=60) == "finished"

    (raw,) = ses.sent()
    message = email.message_from_string(raw["raw_data"], policy=policy.default)
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    # The token is dated to the second it was minted, so the link is read back from the message
    # rather than minted again here: it must be this recipient's current (not legacy) unsubscribe link.
    ((unsubscribe, token),) = re.findall(rf'href="({re.escape(settings.SITE_URL)}/u/([^/"]+)/)"', html)
    assert unsubscribe == settings.SITE_URL + reverse("campaigns:unsubscribe", args=[token])
    assert link_token_read(token, purpose=LinkPurpose.UNSUBSCRIBE) == LinkToken(recipient_id=Recipient.objects.get().pk)
    assert "<style" not in html
    assert 'class="cobalt-header" style="' in html and "background-color: #1f4e8c" in html
    assert "Results for Ada" in html
    assert "Cobalt Rowing, 5 River Lane, Oxford" in html
    assert "Hi Ada, see the results (https://example.org/results)." in text
    assert f"Unsubscribe ({unsubscribe})" in text
    assert "Results for Ada" not in text
    assert "<" not in text
