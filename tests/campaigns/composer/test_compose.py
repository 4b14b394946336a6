"""The campaign form (body modes, save-time template errors), layouts and reusable templates."""

from __future__ import annotations

import pytest
from django.urls import reverse

from campaigns.composer.layouts import default_layout
from campaigns.models import Campaign, CampaignTemplate, Layout
from tests.factories import CampaignFactory

pytestmark = pytest.mark.django_db


def campaign_post(**overrides) -> dict:
    data = {
        "name": "Spring news",
        "subject": "Hello {{ first_name }}",
        "preheader": "",
        "from_name": "Cobalt Club",
        "from_address": "news@cobalt.example",
        "reply_to": "",
        "layout": str(default_layout().pk),
        "body_mode": "html",
        "body_source": "",
        "html_body": "<p>Hi {{ first_name }}</p>",
        "text_body": "",
    }
    data.update(overrides)
    return data


def test_an_unknown_merge_field_is_an_error_when_saving(staff_client):
    response = staff_client.post(
        reverse("campaigns:create"), campaign_post(html_body="<p>Hi</p>\n<p>{{ frist_name }}</p>")
    )

    assert response.status_code == 200
    assert not Campaign.objects.exists()
    content = response.content.decode()
    assert "HTML body, line 2: unknown merge field" in content
    assert "Did you mean" in content


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("subject", "{{ settings.SECRET_KEY }}", "Subject, line 1: unknown merge field"),
        ("preheader", "{% debug %}", "Preheader, line 1: the tag"),
        ("html_body", '{% include "base.html" %}', "HTML body, line 1: the tag"),
        ("text_body", "{% if first_name %}", "Plain-text body, line 1, column 1:"),
    ],
)
def test_every_part_is_checked_when_saving(staff_client, field, value, message):
    response = staff_client.post(reverse("campaigns:create"), campaign_post(**{field: value}))

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Campaign.objects.exists()


def test_a_markdown_body_is_saved_with_its_html(staff_client):
    response = staff_client.post(
        reverse("campaigns:create"),
        campaign_post(
            body_mode="markdown", html_body="", body_source="## Hi {{ first_name }}\n\n[Leave]({{ unsubscribe_url }})"
        ),
    )

    assert response.status_code == 302
    campaign = Campaign.objects.get()
    assert campaign.body_mode == "markdown"
    assert campaign.body_source.startswith("## Hi")
    assert campaign.html_body == '<h2>Hi {{ first_name }}</h2>\n<p><a href="{{ unsubscribe_url }}">Leave</a></p>'


def test_markdown_errors_point_at_the_markdown_line(staff_client):
    response = staff_client.post(
        reverse("campaigns:create"), campaign_post(body_mode="markdown", body_source="# Hi\n\n{{ nope }}")
    )
    assert "Markdown body, line 3: unknown merge field" in response.content.decode()


def test_a_rich_text_body_is_saved_as_html_with_its_merge_fields_intact(staff_client):
    # What the editor submits: quotes inside the merge field entity-encoded.
    html = "<p><strong>Hi</strong> {{ first_name|default:&quot;rower&quot; }}&nbsp;news</p>"
    response = staff_client.post(reverse("campaigns:create"), campaign_post(body_mode="rich", html_body=html))

    assert response.status_code == 302
    campaign = Campaign.objects.get()
    assert campaign.body_mode == "rich"
    assert campaign.html_body == '<p><strong>Hi</strong> {{ first_name|default:"rower" }}&nbsp;news</p>'


def test_new_campaigns_start_with_the_default_layout(staff_client):
    response = staff_client.get(reverse("campaigns:create"))
    form = response.context["form"]
    assert form["layout"].value() == default_layout().pk


def test_the_markdown_endpoint_converts_for_the_editor(staff_client):
    response = staff_client.post(reverse("compose:markdown"), {"source": "*hi* {{ first_name }}"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert response.content.decode() == "<p><em>hi</em> {{ first_name }}</p>"


def test_staff_create_and_edit_layouts(staff_client):
    html = (
        '<html><body>{{ logo }}{{ content }}<a href="{{ unsubscribe_url }}">Leave</a>{{ postal_address }}</body></html>'
    )
    response = staff_client.post(
        reverse("compose:layout_create"),
        {
            "name": "Autumn",
            "primary_colour": "#AA3300",
            "background_colour": "#ffffff",
            "text_colour": "#111111",
            "logo_url": "https://example.org/logo.png",
            "html": html,
            "css": "a { color: {{ primary_colour }}; }",
        },
    )
    assert response.status_code == 302
    layout = Layout.objects.get(name="Autumn")
    assert layout.primary_colour == "#aa3300"

    response = staff_client.get(reverse("compose:layout_edit", args=[layout.pk]))
    assert response.status_code == 200
    assert "Autumn" in response.content.decode()


@pytest.mark.parametrize(
    ("html", "css", "message"),
    [
        ('<body><a href="{{ unsubscribe_url }}">x</a></body>', "", "needs {{ content }}"),
        ("<body>{{ content }}</body>", "", "needs an unsubscribe link"),
        ('<body>{{ content }}<a href="{{ unsubscribe_url }}">x</a>{{ secret }}</body>', "", "unknown merge field"),
        (
            '<body>{{ content }}<a href="{{ unsubscribe_url }}">x</a></body>',
            "a { color: {{ first_name }} }",
            "Layout CSS",
        ),
    ],
)
def test_broken_layouts_are_refused_with_the_reason(staff_client, html, css, message):
    data = {"name": "Bad", "primary_colour": "#000000", "background_colour": "#ffffff", "text_colour": "#000000"}
    response = staff_client.post(reverse("compose:layout_create"), {**data, "html": html, "css": css})

    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Layout.objects.filter(name="Bad").exists()


def test_a_campaign_saved_as_template_starts_new_campaigns(staff_client):
    campaign = CampaignFactory(subject="Monthly {{ first_name }}", preheader="Pre", layout=default_layout())

    response = staff_client.post(reverse("compose:save_template", args=[campaign.pk]), {"name": "Monthly"})
    assert response.status_code == 302
    template = CampaignTemplate.objects.get(name="Monthly")
    assert (template.subject, template.layout) == ("Monthly {{ first_name }}", default_layout())
    again = staff_client.post(reverse("compose:save_template", args=[campaign.pk]), {"name": "Monthly"}, follow=True)
    assert "The reusable template “Monthly” was replaced with this campaign." in again.content.decode()
    assert CampaignTemplate.objects.filter(name="Monthly").count() == 1

    response = staff_client.post(reverse("compose:template_use", args=[template.pk]))
    new = Campaign.objects.exclude(pk=campaign.pk).get()
    assert response.status_code == 302
    assert response["Location"] == reverse("campaigns:edit", args=[new.pk])
    assert (new.subject, new.html_body, new.layout) == (campaign.subject, campaign.html_body, campaign.layout)
    assert new.status == Campaign.Status.DRAFT


def test_composer_pages_need_a_membership(client, member_user):
    campaign = CampaignFactory()
    client.force_login(member_user)  # logged in, but a member of no organisation
    for url in (
        reverse("compose:preview", args=[campaign.pk]),
        reverse("compose:preview_html", args=[campaign.pk]),
        reverse("compose:layouts"),
    ):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))
