"""Which addresses a campaign (and an API message) may be sent from: the installation's shared
addresses always, and the organisation's own verified senders (an address, or any address at a
domain) once SES has verified them. Checked when the campaign is saved and again when it is sent."""

from __future__ import annotations

import html

import pytest
from django.urls import reverse

from api.keys import api_key_create
from campaigns.composer.layouts import default_layout
from campaigns.composer.rendering import campaign_html_source
from campaigns.delivery.engine import campaign_dispatch
from campaigns.forms import CampaignForm
from campaigns.models import Campaign, CampaignTemplate
from campaigns.services import CampaignError, campaign_send_now
from organisations.models import Organisation, Role, SenderIdentity
from tests.api.conftest import KeyClient
from tests.factories import CampaignFactory, campaign_to, list_with_contacts

pytestmark = pytest.mark.django_db

SHARED = "news@cobalt.example"


@pytest.fixture(autouse=True)
def shared_addresses(settings):
    settings.SENDER_ADDRESSES = [SHARED]


@pytest.fixture
def club(organisation) -> Organisation:
    organisation.name, organisation.sender_name, organisation.reply_to = (
        "Riverside Rowing",
        "Riverside Rowing Club",
        "secretary@riverside.example",
    )
    organisation.save()
    return organisation


def sender(organisation, value: str, status: str = "verified") -> SenderIdentity:
    kind = "address" if "@" in value else "domain"
    return SenderIdentity.objects.create(organisation=organisation, kind=kind, value=value, status=status)


def campaign_post(**overrides) -> dict:
    return {
        "name": "Spring news",
        "subject": "Hello {{ first_name }}",
        "preheader": "",
        "from_name": "Riverside Rowing Club",
        "reply_to": "",
        "layout": str(default_layout().pk),
        "body_mode": "html",
        "body_source": "",
        "html_body": "<p>Hi {{ first_name }}</p>",
        "text_body": "",
        **overrides,
    }


def offered(organisation) -> list[str]:
    return [
        value for value, _ in CampaignForm(organisation=organisation).fields["from_address"].widget.widgets[1].choices
    ]


def test_until_a_sender_is_verified_only_the_shared_addresses_are_offered_with_the_organisations_name(club):
    sender(club, "riverside.example", status="pending")

    form = CampaignForm(organisation=club)

    assert offered(club) == [SHARED]
    assert form.initial["from_name"] == "Riverside Rowing Club"
    assert form.initial["reply_to"] == "secretary@riverside.example"
    assert form.initial["from_address"] == SHARED


def test_verified_senders_come_first_and_the_shared_addresses_stay(club):
    sender(club, "riverside.example")
    sender(club, "captain@hilltop.example")

    assert offered(club) == ["captain@hilltop.example", "@riverside.example", SHARED]
    assert CampaignForm(organisation=club).initial["from_address"] == "captain@hilltop.example"


def test_staff_type_the_part_before_the_at_of_a_verified_domain(club, staff_client):
    sender(club, "riverside.example")

    response = staff_client.post(
        reverse("campaigns:create"), campaign_post(from_address_0="news", from_address_1="@riverside.example")
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    assert Campaign.objects.get().from_email == '"Riverside Rowing Club" <news@riverside.example>'
    edit = str(CampaignForm(organisation=club, instance=Campaign.objects.get())["from_address"])  # edit page
    assert 'name="from_address_0" value="news"' in edit
    assert '<option value="@riverside.example" selected>' in edit


def test_a_domain_without_the_part_before_the_at_is_refused(club, staff_client):
    sender(club, "riverside.example")

    response = staff_client.post(
        reverse("campaigns:create"), campaign_post(from_address_0="", from_address_1="@riverside.example")
    )

    assert "Type the part of the address before @riverside.example" in html.unescape(response.content.decode())
    assert not Campaign.objects.exists()


@pytest.mark.parametrize(
    "address",
    ["news@riverside.example", "news@hilltop.example", "news@elsewhere.example"],
    ids=["pending own domain", "another organisation's domain", "unknown domain"],
)
def test_an_address_that_is_not_a_verified_sender_is_refused_on_save(club, staff_client, address):
    data = campaign_post(from_address=address)  # the layout first: with two organisations it must be named
    sender(club, "riverside.example", status="pending")
    sender(Organisation.objects.create(name="Hilltop Chess", slug="hilltop"), "hilltop.example")

    response = staff_client.post(reverse("campaigns:create"), data)

    assert f"{address} is not a verified sender of this organisation" in html.unescape(response.content.decode())
    assert not Campaign.objects.exists()


def test_a_campaign_whose_sender_was_removed_cannot_be_sent(club):
    identity = sender(club, "riverside.example")
    campaign = campaign_to(list_with_contacts(2), from_email='"Riverside" <news@riverside.example>')
    identity.delete()  # an administrator removed it after the campaign was saved

    with pytest.raises(CampaignError, match=r"news@riverside\.example is not a verified sender"):
        campaign_send_now(campaign_id=campaign.pk)
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.DRAFT


def test_a_campaign_from_a_verified_domain_or_a_shared_address_can_be_sent(club):
    sender(club, "riverside.example")
    own = campaign_to(list_with_contacts(2), from_email='"Riverside" <news@riverside.example>')
    shared = campaign_to(list_with_contacts(2, name="Others"), from_email=SHARED)

    assert campaign_send_now(campaign_id=own.pk).status == Campaign.Status.SENDING
    assert campaign_send_now(campaign_id=shared.pk).status == Campaign.Status.SENDING


def test_the_api_sends_from_the_keys_organisations_verified_senders_only(club, ses):
    sender(club, "riverside.example")
    ses.reset({"cobalt.example", "riverside.example"})  # SES verified it too
    template = CampaignTemplate.objects.create(organisation=club, name="Entry", subject="Entry", html_body="<p>x</p>")
    _, raw = api_key_create(organisation=club, role=Role.SENDER, name="membership site")
    client = KeyClient(raw)
    body = {"template": template.pk, "to": "ann@example.org", "context": {}}

    refused = client.post("/api/v1/messages", {**body, "from_email": "news@hilltop.example"}, HTTP_IDEMPOTENCY_KEY="a")
    accepted = client.post(
        "/api/v1/messages", {**body, "from_email": "entries@riverside.example"}, HTTP_IDEMPOTENCY_KEY="b"
    )

    assert refused.status_code == 422
    assert [error["field"] for error in refused.json()["errors"]] == ["from_email"]
    assert accepted.status_code == 202, accepted.content
    assert campaign_dispatch(campaign_id=accepted.json()["id"], seconds=30) == "finished"
    (message,) = ses.sent()
    assert message["source"] == "entries@riverside.example"


def test_the_footer_carries_the_sending_organisations_postal_address(club, settings):
    settings.POSTAL_ADDRESS = "Cobalt Mail, 1 Example Street"
    club.postal_address = "Riverside Rowing Club\n1 River Road {{ x }}\nRiverton"
    club.save()
    other = Organisation.objects.create(name="Hilltop Chess", slug="hilltop")
    own = CampaignFactory(organisation=club, layout=default_layout(club))
    theirs = CampaignFactory(organisation=other, layout=default_layout(other))

    assert "Riverside Rowing Club, 1 River Road  x , Riverton" in campaign_html_source(own)
    assert "Cobalt Mail, 1 Example Street" in campaign_html_source(theirs)  # none of its own: the installation's
