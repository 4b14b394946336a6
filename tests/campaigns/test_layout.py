"""Layouts through the real send path: engine → django-ses → local SES, read back as raw MIME."""

from __future__ import annotations

import email
from email import policy

import pytest

from campaigns.audience import audience_snapshot
from campaigns.engine import campaign_dispatch
from campaigns.layouts import DEFAULT_LAYOUT_NAME, default_layout
from campaigns.models import Layout, Recipient
from campaigns.rendering import recipient_context
from campaigns.services import campaign_send_now
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
    unsubscribe = recipient_context(Recipient.objects.get())["unsubscribe_url"]
    assert "<style" not in html
    assert 'class="cobalt-header" style="' in html and "background-color: #1f4e8c" in html
    assert "Results for Ada" in html
    assert f'href="{unsubscribe}"' in html
    assert "Cobalt Rowing, 5 River Lane, Oxford" in html
    assert "Hi Ada, see the results (https://example.org/results)." in text
    assert f"Unsubscribe ({unsubscribe})" in text
    assert "Results for Ada" not in text
    assert "<" not in text
