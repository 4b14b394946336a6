"""Campaigns, layouts, templates and attachments stay inside their organisation (issue 14).

Two organisations on one installation: ours (the ``staff_client`` administers it) and a rowing
club administered by someone else. Every page, form, service and background step must keep one
organisation's campaigns, audiences, layouts and templates away from the other.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audiences.models import Contact, Subscription
from campaigns import services, tasks
from campaigns.composer.attachments import attachment_add
from campaigns.composer.layouts import default_layout
from campaigns.delivery import engine
from campaigns.models import Campaign, CampaignAttachment, CampaignTemplate, Layout, Recipient
from campaigns.snapshot import audience_count, audience_snapshot
from campaigns.tokens import LinkPurpose, link_token
from organisations.models import AuditEntry, Membership, Organisation, Role
from tests.factories import (
    CampaignFactory,
    ContactFactory,
    ContactListFactory,
    LayoutFactory,
    SegmentFactory,
    campaign_to,
    list_with_contacts,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def club(organisation) -> Organisation:
    """A second organisation (created after the first, which the ``organisation`` fixture makes)."""
    return Organisation.objects.create(name="Riverside Rowing Club", slug="riverside")


@pytest.fixture
def club_client(django_user_model, club) -> Client:
    user = django_user_model.objects.create_user(username="rita.rower", password="correct-horse-battery")
    Membership.objects.create(user=user, organisation=club, role=Role.ADMINISTRATOR)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def club_campaign(club) -> Campaign:
    return campaign_to(list_with_contacts(2, organisation=club, name="Rowers"), organisation=club, name="Regatta")


def forbidden_entries() -> int:
    return AuditEntry.objects.filter(action=AuditEntry.Action.FORBIDDEN).count()


def campaign_post(organisation: Organisation, **overrides) -> dict:
    data = {
        "name": "Spring news",
        "subject": "Hello {{ first_name }}",
        "preheader": "",
        "from_name": "Cobalt Club",
        "from_address": "news@cobalt.example",
        "reply_to": "",
        "layout": str(default_layout(organisation).pk),
        "body_mode": "html",
        "body_source": "",
        "html_body": '<p>Hi {{ first_name }}</p><p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>',
        "text_body": "",
    }
    data.update(overrides)
    return data


def test_the_campaign_list_shows_only_the_organisations_campaigns(staff_client, organisation, club_campaign):
    ours = CampaignFactory(organisation=organisation, name="Our newsletter")

    page = staff_client.get(reverse("campaigns:list")).content.decode()

    assert ours.name in page
    assert club_campaign.name not in page


@pytest.mark.parametrize(
    ("url_name", "method"),
    [
        ("campaigns:detail", "get"),
        ("campaigns:edit", "get"),
        ("campaigns:progress", "get"),
        ("campaigns:send", "post"),
        ("campaigns:pause", "post"),
        ("campaigns:cancel", "post"),
        ("campaigns:duplicate", "post"),
        ("compose:preview", "get"),
        ("compose:preview_html", "get"),
        ("compose:link_check", "post"),
        ("compose:link_results", "get"),
        ("compose:attachments", "get"),
        ("compose:save_template", "post"),
    ],
)
def test_another_organisations_campaign_answers_404_and_is_audited(staff_client, club_campaign, url_name, method):
    before = forbidden_entries()

    response = getattr(staff_client, method)(reverse(url_name, args=[club_campaign.pk]), {"name": "Stolen"})

    assert response.status_code == 404
    assert forbidden_entries() == before + 1
    club_campaign.refresh_from_db()
    assert club_campaign.status == Campaign.Status.DRAFT
    assert Campaign.objects.count() == 1
    assert not CampaignTemplate.objects.exists()


def test_another_organisations_layout_and_template_answer_404(staff_client, club):
    layout = LayoutFactory(organisation=club)
    template = CampaignTemplate.objects.create(organisation=club, name="Club news", subject="Hi", html_body="<p>x</p>")
    before = forbidden_entries()

    answers = [
        staff_client.get(reverse("compose:layout_edit", args=[layout.pk])).status_code,
        staff_client.post(reverse("compose:layout_default", args=[layout.pk])).status_code,
        staff_client.post(reverse("compose:layout_delete", args=[layout.pk])).status_code,
        staff_client.post(reverse("compose:template_use", args=[template.pk])).status_code,
    ]

    assert answers == [404, 404, 404, 404]
    assert forbidden_entries() == before + 4
    assert Layout.objects.filter(pk=layout.pk, is_default=False).exists()
    assert not Campaign.objects.exists()


def test_another_organisations_attachment_cannot_be_removed(staff_client, organisation, club_campaign):
    attachment = attachment_add(
        campaign=club_campaign, upload=SimpleUploadedFile("minutes.pdf", b"%PDF-1.4 minutes", "application/pdf")
    )
    ours = CampaignFactory(organisation=organisation)

    for campaign_id in (club_campaign.pk, ours.pk):
        url = reverse("compose:attachment_delete", args=[campaign_id, attachment.pk])
        assert staff_client.post(url).status_code == 404

    assert CampaignAttachment.objects.filter(pk=attachment.pk).exists()


def test_the_campaign_form_offers_only_the_organisations_lists_segments_and_layouts(staff_client, organisation, club):
    ContactListFactory(organisation=organisation, name="Our members")
    ContactListFactory(organisation=club, name="Club rowers")
    SegmentFactory(organisation=club, name="Club juniors")
    LayoutFactory(organisation=club, name="Club colours")

    page = staff_client.get(reverse("campaigns:create")).content.decode()

    assert "Our members" in page
    assert "Club rowers" not in page
    assert "Club juniors" not in page
    assert "Club colours" not in page


@pytest.mark.parametrize("field", ["include_lists", "exclude_lists", "include_segments", "exclude_segments", "layout"])
def test_a_posted_id_of_another_organisation_is_a_field_error_and_nothing_is_saved(
    staff_client, organisation, club, field
):
    foreign = {
        "include_lists": lambda: ContactListFactory(organisation=club),
        "exclude_lists": lambda: ContactListFactory(organisation=club),
        "include_segments": lambda: SegmentFactory(organisation=club),
        "exclude_segments": lambda: SegmentFactory(organisation=club),
        "layout": lambda: LayoutFactory(organisation=club),
    }[field]()

    response = staff_client.post(reverse("campaigns:create"), campaign_post(organisation, **{field: str(foreign.pk)}))

    assert response.status_code == 200
    assert field in response.context["form"].errors
    assert "your organisation" in " ".join(response.context["form"].errors[field])
    assert not Campaign.objects.exists()


def test_editing_with_another_organisations_list_keeps_the_campaign_as_it_was(staff_client, organisation, club):
    ours = ContactListFactory(organisation=organisation)
    campaign = campaign_to(ours, organisation=organisation, name="Before")
    theirs = ContactListFactory(organisation=club)

    response = staff_client.post(
        reverse("campaigns:edit", args=[campaign.pk]),
        campaign_post(organisation, name="After", include_lists=[str(ours.pk), str(theirs.pk)]),
    )

    assert response.status_code == 200
    assert "include_lists" in response.context["form"].errors
    campaign.refresh_from_db()
    assert campaign.name == "Before"
    assert list(campaign.include_lists.all()) == [ours]


def test_a_new_campaign_belongs_to_the_organisation_it_was_made_in(club_client, club):
    rowers = ContactListFactory(organisation=club)

    response = club_client.post(reverse("campaigns:create"), campaign_post(club, include_lists=[str(rowers.pk)]))

    campaign = Campaign.objects.get()
    assert response.status_code == 302
    assert campaign.organisation == club
    assert campaign.layout.organisation == club


def test_duplicate_save_as_template_and_use_stay_inside_the_organisation(club_client, club, club_campaign):
    club_client.post(reverse("campaigns:duplicate", args=[club_campaign.pk]))
    club_client.post(reverse("compose:save_template", args=[club_campaign.pk]), {"name": "Regatta template"})
    template = CampaignTemplate.objects.get()
    club_client.post(reverse("compose:template_use", args=[template.pk]))

    assert template.organisation == club
    assert set(Campaign.objects.values_list("organisation_id", flat=True)) == {club.pk}
    assert Campaign.objects.count() == 3


def test_templates_and_layouts_pages_list_only_the_organisations_own(staff_client, organisation, club):
    CampaignTemplate.objects.create(organisation=club, name="Club template", subject="Hi", html_body="<p>x</p>")
    LayoutFactory(organisation=club, name="Club colours")
    LayoutFactory(organisation=organisation, name="Our colours")

    templates = staff_client.get(reverse("compose:templates")).content.decode()
    layouts = staff_client.get(reverse("compose:layouts")).content.decode()

    assert "Club template" not in templates
    assert "Our colours" in layouts
    assert "Club colours" not in layouts


def test_each_organisation_has_its_own_default_layout(club_client, organisation, club):
    ours = default_layout(organisation)
    club_layout = LayoutFactory(organisation=club, name="Club colours")

    response = club_client.post(reverse("compose:layout_default", args=[club_layout.pk]))

    assert response.status_code == 302
    assert default_layout(club) == club_layout
    assert default_layout(organisation) == ours
    assert Layout.objects.get(pk=ours.pk).is_default


def test_a_layout_made_in_an_organisation_belongs_to_it(club_client, club):
    base = default_layout(club)
    data = {
        "name": "Club colours",
        "primary_colour": "#1f4e8c",
        "background_colour": "#f4f4f4",
        "text_colour": "#1a1a1a",
        "logo_url": "",
        "html": base.html,
        "css": base.css,
    }

    response = club_client.post(reverse("compose:layout_create"), data)

    assert response.status_code == 302
    assert Layout.objects.get(name="Club colours").organisation == club


def test_the_snapshot_freezes_only_the_campaigns_organisations_contacts(organisation, club):
    ours = list_with_contacts(2, organisation=organisation)
    # The same address is a contact of the club too (with its own consent): the club's row stays out.
    shared = Contact.objects.filter(organisation=organisation).first().email
    ContactFactory(organisation=club, email=shared)
    matching_everyone = SegmentFactory(organisation=organisation, rules=[])
    campaign = campaign_to(ours, organisation=organisation)
    campaign.include_segments.add(matching_everyone)

    count = audience_snapshot(campaign_id=campaign.pk)

    assert count == 2
    assert set(Recipient.objects.values_list("contact__organisation_id", flat=True)) == {organisation.pk}


def test_a_tampered_foreign_list_stops_the_campaign_and_says_why(organisation, club):
    campaign = campaign_to(list_with_contacts(1, organisation=organisation), organisation=organisation)
    club_list = list_with_contacts(3, organisation=club, name="Club rowers")
    campaign.include_lists.add(club_list)  # behind the form's back (the form refuses it)

    with pytest.raises(services.CampaignError, match="Club rowers"):
        services.campaign_send_now(campaign_id=campaign.pk)

    # Started anyway (a row changed after the send was accepted): the worker re-checks before freezing.
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.SENDING, started_at=timezone.now())
    frozen = tasks.campaign_start(campaign.pk)

    campaign.refresh_from_db()
    assert frozen == 0
    assert not Recipient.objects.exists()
    assert campaign.status == Campaign.Status.CANCELLED
    assert "another organisation" in campaign.status_reason
    assert "Club rowers" in campaign.status_reason


def test_a_dispatcher_stops_a_campaign_whose_layout_became_another_organisations(organisation, club):
    campaign = campaign_to(list_with_contacts(1, organisation=organisation), organisation=organisation)
    audience_snapshot(campaign_id=campaign.pk)
    club_layout = LayoutFactory(organisation=club)
    Campaign.objects.filter(pk=campaign.pk).update(
        status=Campaign.Status.SENDING, started_at=timezone.now(), layout=club_layout
    )

    stopped = engine.campaign_dispatch(campaign_id=campaign.pk)

    campaign.refresh_from_db()
    assert stopped == "stopped"
    assert campaign.status == Campaign.Status.PAUSED
    assert "its layout belongs to another organisation" in campaign.status_reason
    assert set(Recipient.objects.values_list("status", flat=True)) == {Recipient.Status.QUEUED}


def test_a_foreign_list_counts_nobody_in_the_audience(organisation, club):
    campaign = CampaignFactory(organisation=organisation)
    campaign.include_lists.add(list_with_contacts(3, organisation=club))

    assert audience_count(campaign) == 0


def sent_recipient(organisation: Organisation, email: str) -> Recipient:
    contact_list = ContactListFactory(organisation=organisation)
    contact = ContactFactory(organisation=organisation, email=email)
    Subscription.objects.create(contact=contact, contact_list=contact_list)
    campaign = campaign_to(contact_list, organisation=organisation)
    audience_snapshot(campaign_id=campaign.pk)
    return Recipient.objects.get(campaign=campaign)


def test_unsubscribing_from_one_organisation_leaves_the_other_organisations_contact_subscribed(
    client, organisation, club
):
    ours = sent_recipient(organisation, "ada@example.org")
    theirs = sent_recipient(club, "ada@example.org")

    response = client.post(f"/u/{link_token(recipient_id=ours.pk, purpose=LinkPurpose.UNSUBSCRIBE)}/")

    assert response.status_code == 200
    assert Contact.objects.get(pk=ours.contact_id).status == Contact.Status.UNSUBSCRIBED
    assert Contact.objects.get(pk=theirs.contact_id).status == Contact.Status.ACTIVE
    assert Subscription.objects.get(contact_id=theirs.contact_id).status == Subscription.Status.SUBSCRIBED


def test_an_unsubscribe_link_whose_contact_was_deleted_never_touches_another_organisations_contact(
    client, organisation, club
):
    ours = sent_recipient(organisation, "ada@example.org")
    theirs = sent_recipient(club, "ada@example.org")
    Contact.objects.filter(pk=ours.contact_id).delete()

    client.post(f"/u/{link_token(recipient_id=ours.pk, purpose=LinkPurpose.UNSUBSCRIBE)}/")

    assert Contact.objects.get(pk=theirs.contact_id).status == Contact.Status.ACTIVE
    assert Subscription.objects.get(contact_id=theirs.contact_id).status == Subscription.Status.SUBSCRIBED


def test_the_preference_page_shows_and_changes_only_that_organisations_lists(client, organisation, club):
    ours = sent_recipient(organisation, "ada@example.org")
    theirs = sent_recipient(club, "ada@example.org")
    club_list = Subscription.objects.get(contact_id=theirs.contact_id).contact_list
    url = f"/u/{link_token(recipient_id=ours.pk, purpose=LinkPurpose.PREFERENCES)}/preferences/"

    page = client.get(url).content.decode()
    client.post(url, {"lists": [str(club_list.pk)]})

    assert club_list.name not in page
    assert Subscription.objects.get(contact_id=theirs.contact_id).status == Subscription.Status.SUBSCRIBED
    assert Subscription.objects.get(contact_id=ours.contact_id).status == Subscription.Status.UNSUBSCRIBED


def audit_actions(organisation: Organisation) -> list[str]:
    return list(AuditEntry.objects.filter(organisation=organisation).order_by("id").values_list("action", flat=True))


def test_sending_scheduling_pausing_and_cancelling_are_audited(staff_client, organisation):
    campaign = campaign_to(list_with_contacts(1, organisation=organisation), organisation=organisation)
    later = (timezone.now() + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    detail = reverse("campaigns:detail", args=[campaign.pk])

    staff_client.post(reverse("campaigns:schedule", args=[campaign.pk]), {"send_at": later, "time_zone": "UTC"})
    staff_client.post(reverse("campaigns:unschedule", args=[campaign.pk]))
    staff_client.post(reverse("campaigns:send", args=[campaign.pk]))
    staff_client.post(reverse("campaigns:pause", args=[campaign.pk]))
    staff_client.post(reverse("campaigns:resume", args=[campaign.pk]))
    staff_client.post(reverse("campaigns:cancel", args=[campaign.pk]))

    Action = AuditEntry.Action
    assert staff_client.get(detail).status_code == 200
    assert [a for a in audit_actions(organisation) if a != Action.LOGIN] == [
        Action.SCHEDULE,
        Action.SCHEDULE,
        Action.SEND,
        Action.PAUSE,
        Action.RESUME,
        Action.CANCEL,
    ]
    entry = AuditEntry.objects.get(action=Action.SEND)
    assert (entry.object_type, entry.object_id, entry.username) == ("campaign", str(campaign.pk), "stella.staff")
    assert campaign.name in entry.summary


def test_a_refused_action_leaves_no_audit_entry(staff_client, organisation):
    campaign = CampaignFactory(organisation=organisation)  # no audience: sending is refused

    staff_client.post(reverse("campaigns:send", args=[campaign.pk]))

    assert not AuditEntry.objects.filter(action=AuditEntry.Action.SEND).exists()


def test_deleting_a_layout_or_an_attachment_is_audited(staff_client, organisation):
    layout = LayoutFactory(organisation=organisation, name="Old colours")
    campaign = CampaignFactory(organisation=organisation)
    attachment = attachment_add(
        campaign=campaign, upload=SimpleUploadedFile("minutes.pdf", b"%PDF-1.4 minutes", "application/pdf")
    )

    staff_client.post(reverse("compose:layout_delete", args=[layout.pk]))
    staff_client.post(reverse("compose:attachment_delete", args=[campaign.pk, attachment.pk]))

    deleted = AuditEntry.objects.filter(action=AuditEntry.Action.DELETE, organisation=organisation)
    assert sorted(deleted.values_list("object_type", flat=True)) == ["attachment", "layout"]
    assert not Layout.objects.filter(pk=layout.pk).exists()
