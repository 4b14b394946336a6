"""Managing layouts in the browser's pages: make one the default, delete one nothing uses."""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages

from campaigns.composer.layouts import default_layout
from campaigns.models import Campaign, CampaignTemplate, Layout
from tests.factories import campaign_to, list_with_contacts

pytestmark = pytest.mark.django_db


def new_layout(name: str) -> Layout:
    base = default_layout()
    return Layout.objects.create(name=name, html=base.html, css=base.css)


def said(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def test_making_a_layout_the_default_moves_the_flag_and_new_campaigns_use_it(staff_client):
    old = default_layout()
    autumn = new_layout("Autumn")

    response = staff_client.post(f"/campaigns/layouts/{autumn.pk}/default/")

    assert response.status_code == 302
    assert said(response) == ["“Autumn” is now the default layout for new campaigns."]
    assert list(Layout.objects.filter(is_default=True)) == [autumn]
    assert Layout.objects.get(pk=old.pk).is_default is False
    assert default_layout() == autumn
    assert staff_client.get(f"/campaigns/layouts/{autumn.pk}/default/").status_code == 405


def test_an_unused_layout_is_deleted_after_a_confirmation_page(staff_client):
    spare = new_layout("Spare")

    confirm = staff_client.get(f"/campaigns/layouts/{spare.pk}/delete/")
    assert confirm.status_code == 200 and "Delete layout “Spare”?" in confirm.content.decode()
    assert Layout.objects.filter(pk=spare.pk).exists()  # a GET changes nothing

    response = staff_client.post(f"/campaigns/layouts/{spare.pk}/delete/")

    assert said(response) == ["Layout “Spare” deleted."]
    assert not Layout.objects.filter(pk=spare.pk).exists()


def test_the_default_layout_and_layouts_in_use_are_kept_with_the_reason(staff_client):
    default = default_layout()
    used = new_layout("Newsletter")
    campaign = campaign_to(list_with_contacts(1), name="Spring news")
    Campaign.objects.filter(pk=campaign.pk).update(layout=used, status=Campaign.Status.SENT)
    CampaignTemplate.objects.create(name="Monthly", subject="Hi", html_body="<p>x</p>", layout=used)

    refused_default = staff_client.post(f"/campaigns/layouts/{default.pk}/delete/")
    refused_used = staff_client.post(f"/campaigns/layouts/{used.pk}/delete/", follow=True)

    assert said(refused_default) == [
        f"“{default.name}” is the default layout for new campaigns. Make another layout the default first."
    ]
    (message,) = [str(m) for m in refused_used.context["messages"] if "Newsletter" in str(m)]
    assert message.startswith("“Newsletter” is used by 1 campaign (“Spring news”) and 1 template, so it is kept")
    assert "Spring news" in refused_used.content.decode()
    assert Layout.objects.filter(pk__in=[default.pk, used.pk]).count() == 2
    assert Campaign.objects.get(pk=campaign.pk).layout_id == used.pk


def test_layout_actions_are_for_administrators_and_unknown_layouts_are_404(member_user, organisation, staff_client):
    from django.test import Client

    from organisations.models import Membership, Role

    spare = new_layout("Spare")
    Membership.objects.create(user=member_user, organisation=organisation, role=Role.EDITOR)
    client = Client()
    client.force_login(member_user)

    assert client.post(f"/campaigns/layouts/{spare.pk}/delete/").status_code == 403
    assert client.post(f"/campaigns/layouts/{spare.pk}/default/").status_code == 403
    assert staff_client.post("/campaigns/layouts/999999/delete/").status_code == 404
    assert Layout.objects.filter(pk=spare.pk, is_default=False).exists()
