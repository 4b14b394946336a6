"""The preview page (inbox header, recipient choice, views, links) and its sandboxed HTML."""

from __future__ import annotations

import pytest
from django.urls import reverse

from campaigns.composer.layouts import default_layout
from tests.factories import CampaignFactory, ContactFactory, campaign_to, list_with_contacts

pytestmark = pytest.mark.django_db


def test_the_preview_shows_subject_and_preheader_as_an_inbox_would(staff_client):
    campaign = CampaignFactory(
        subject="Regatta news for {{ first_name }}", preheader="Results inside, {{ first_name }}"
    )

    response = staff_client.get(reverse("compose:preview", args=[campaign.pk]))

    assert response.status_code == 200
    content = response.content.decode()
    assert '<strong id="inbox-subject">Regatta news for Alex</strong>' in content
    assert "— Results inside, Alex" in content
    assert 'sandbox=""' in content
    assert f'src="{reverse("compose:preview_html", args=[campaign.pk])}"' in content


def test_it_previews_as_a_chosen_recipient_of_the_audience(staff_client):
    contact_list = list_with_contacts(3)
    campaign = campaign_to(contact_list, subject="Hi {{ first_name }}")
    chosen = contact_list.subscriptions.order_by("id").last().contact

    response = staff_client.get(reverse("compose:preview", args=[campaign.pk]), {"contact": chosen.pk})

    assert f'<strong id="inbox-subject">Hi {chosen.first_name}</strong>' in response.content.decode()
    assert response.context["contact"] == chosen
    assert chosen in response.context["choices"]
    html = staff_client.get(reverse("compose:preview_html", args=[campaign.pk]), {"contact": chosen.pk})
    assert f"Hi {chosen.first_name}," in html.content.decode()


def test_a_contact_outside_the_audience_is_not_shown(staff_client):
    campaign = campaign_to(list_with_contacts(1), subject="Hi {{ first_name }}")
    stranger = ContactFactory(first_name="Mallory")

    response = staff_client.get(reverse("compose:preview", args=[campaign.pk]), {"contact": stranger.pk})
    assert response.context["contact"] is None
    assert "Mallory" not in response.content.decode()
    html = staff_client.get(reverse("compose:preview_html", args=[campaign.pk]), {"contact": stranger.pk})
    assert "Mallory" not in html.content.decode()


def test_the_recipient_search_filters_the_choices(staff_client):
    contact_list = list_with_contacts(4)
    campaign = campaign_to(contact_list)
    target = contact_list.subscriptions.first().contact

    response = staff_client.get(reverse("compose:preview", args=[campaign.pk]), {"q": target.email})
    assert response.context["choices"] == [target]


def test_the_plain_text_view_shows_the_text_part(staff_client):
    campaign = CampaignFactory(html_body='<p>Hi {{ first_name }}</p><p><a href="https://example.org/x">More</a></p>')

    response = staff_client.get(reverse("compose:preview", args=[campaign.pk]), {"view": "text"})

    content = response.content.decode()
    text_part = 'aria-label="Plain-text version">Hi Alex\nMore (https://example.org/x)\n</pre>'
    assert f'<pre class="box" id="preview-text" tabindex="0" {text_part}' in content
    assert "<iframe" not in content


def test_the_mobile_view_narrows_the_frame(staff_client):
    campaign = CampaignFactory()
    response = staff_client.get(reverse("compose:preview", args=[campaign.pk]), {"view": "mobile"})
    assert 'class="preview-frame is-mobile"' in response.content.decode()  # 375 px wide (static/css/app.css)


def test_the_preview_lists_links_with_a_check(staff_client):
    campaign = CampaignFactory(
        html_body='<a href="https://example.org/ok">Fine</a> <a href="www.example.org">No scheme</a>',
        layout=default_layout(),
    )

    response = staff_client.get(reverse("compose:preview", args=[campaign.pk]))

    links = {link.text: link for link in response.context["links"]}
    assert links["Fine"].ok
    assert not links["No scheme"].ok
    assert links["Unsubscribe"].ok  # the layout's footer link, rendered
    assert "well formed" in response.content.decode()


def test_the_preview_html_is_served_with_a_script_blocking_policy(staff_client):
    campaign = CampaignFactory(html_body="<p>x</p><script>alert(1)</script>")

    response = staff_client.get(reverse("compose:preview_html", args=[campaign.pk]))

    assert response.status_code == 200
    policy = response["Content-Security-Policy"]
    assert "script-src 'none'" in policy
    assert "default-src 'none'" in policy
    assert policy.endswith("sandbox")
    assert response["X-Frame-Options"] == "SAMEORIGIN"


def test_a_campaign_that_does_not_render_shows_the_problem(staff_client):
    campaign = CampaignFactory(html_body="<p>{{ nope }}</p>")

    response = staff_client.get(reverse("compose:preview", args=[campaign.pk]))
    assert response.status_code == 200
    assert "unknown merge field" in response.content.decode()
    html = staff_client.get(reverse("compose:preview_html", args=[campaign.pk]))
    assert html.status_code == 422


@pytest.mark.parametrize(
    "params",
    [
        {"contact": "9" * 30, "view": "<script>"},
        {"contact": "-1", "q": "x" * 5000},
        {"contact": "1 OR 1=1", "view": "text"},
    ],
)
def test_hostile_preview_parameters_fall_back_to_the_sample(staff_client, params):
    campaign = CampaignFactory()

    response = staff_client.get(reverse("compose:preview", args=[campaign.pk]), params)
    assert response.status_code == 200
    assert response.context["contact"] is None
    assert staff_client.get(reverse("compose:preview_html", args=[campaign.pk]), params).status_code == 200


def test_unknown_campaigns_and_layouts_are_not_found(staff_client):
    assert staff_client.get(reverse("compose:preview", args=[10**12])).status_code == 404
    assert staff_client.get(reverse("compose:layout_edit", args=[10**30])).status_code == 404
