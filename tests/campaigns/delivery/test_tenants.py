"""SES tenants (SES_TENANTS=1) against the tests' SES stub, which implements them as SES does (moto lacks
them): ``ses_setup`` makes one per organisation, every send names it, a send naming a resource the tenant
lacks is refused, and a tenant SES paused pauses that organisation's campaigns only. Off: nothing changes."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from campaigns.delivery.engine import campaign_dispatch
from campaigns.delivery.tenants import tenant_name_for, tenant_setup, tenant_setup_task, tenants_check
from campaigns.delivery.testsend import campaign_test_send
from campaigns.models import Campaign, Recipient, SesTenant
from campaigns.snapshot import audience_snapshot
from organisations.models import Organisation, SenderIdentity
from organisations.services import organisation_create
from tests.factories import campaign_to, list_with_contacts
from tests.ses_stub import ARN_BASE

pytestmark = pytest.mark.django_db


@pytest.fixture
def tenants_on(settings, stub_ses):
    settings.SES_TENANTS = True
    settings.AWS_SES_CONFIGURATION_SET = "cobalt-mail"
    settings.SENDER_ADDRESSES = ["news@cobalt.example"]
    return stub_ses


def club(slug: str = "rowing-club") -> Organisation:
    return Organisation.objects.create(name=slug.replace("-", " ").title(), slug=slug)


def sending_campaign(organisation: Organisation, size: int = 2, **fields) -> Campaign:
    contact_list = list_with_contacts(size, organisation=organisation)
    campaign = campaign_to(contact_list, organisation=organisation, **fields)
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.SENDING, started_at=timezone.now())
    audience_snapshot(campaign_id=campaign.pk)
    return Campaign.objects.get(pk=campaign.pk)


def run_ses_setup() -> str:
    out = StringIO()
    call_command("ses_setup", tenants_only=True, stdout=out)
    return out.getvalue()


def test_the_tenant_name_keeps_to_ses_rules_and_is_unique_by_the_organisation_id():
    organisation = Organisation(pk=42, slug="a" * 60)

    name = tenant_name_for(organisation)

    assert name.startswith("cobalt-aaa") and name.endswith("-42")
    assert len(name) == 64


def test_ses_setup_creates_a_tenant_per_organisation_with_its_resources_and_again_changes_nothing(tenants_on):
    rowing = club()
    SenderIdentity.objects.create(
        organisation=rowing, kind="domain", value="rowing.example", status=SenderIdentity.Status.VERIFIED
    )
    SenderIdentity.objects.create(organisation=rowing, kind="domain", value="pending.example")

    first = run_ses_setup()

    tenant = SesTenant.objects.get(organisation=rowing)
    assert tenant.tenant_name == f"cobalt-rowing-club-{rowing.pk}"
    assert sorted(tenants_on.tenants) == sorted(SesTenant.objects.values_list("tenant_name", flat=True))
    assert len(tenants_on.tenants) == Organisation.objects.count()
    assert sorted(tenants_on.tenant_resources(tenant.tenant_name)) == [
        f"{ARN_BASE}:configuration-set/cobalt-mail",
        f"{ARN_BASE}:identity/cobalt.example",  # the shared addresses' domain
        f"{ARN_BASE}:identity/rowing.example",  # not pending.example: not verified yet
    ]
    assert f"Created SES tenant {tenant.tenant_name} for Rowing Club." in first

    again = run_ses_setup()

    assert f"Found SES tenant {tenant.tenant_name} for Rowing Club." in again
    assert "its resources are associated already." in again
    assert len(tenants_on.tenant_resources(tenant.tenant_name)) == 3


def test_a_tenant_made_before_but_lost_here_is_adopted_not_refused(tenants_on):
    rowing = club()
    tenant_setup(organisation_id=rowing.pk)
    SesTenant.objects.all().delete()  # e.g. a restored database: SES still has the tenant

    setup = tenant_setup(organisation_id=rowing.pk)

    assert not setup.created
    assert setup.tenant.tenant_arn.startswith(f"{ARN_BASE}:tenant/cobalt-rowing-club-")


def test_an_identity_verified_later_is_associated_by_the_periodic_check(tenants_on):
    rowing = club()
    tenant_setup(organisation_id=rowing.pk)
    SenderIdentity.objects.create(
        organisation=rowing, kind="address", value="coach@rowing.example", status=SenderIdentity.Status.VERIFIED
    )

    tenants_check()

    name = SesTenant.objects.get(organisation=rowing).tenant_name
    assert f"{ARN_BASE}:identity/coach@rowing.example" in tenants_on.tenant_resources(name)


def test_every_send_of_an_organisations_campaign_names_its_tenant_and_no_header_carries_it(tenants_on):
    rowing = club()
    name = tenant_setup(organisation_id=rowing.pk).tenant.tenant_name
    campaign = sending_campaign(rowing, 3)

    assert campaign_dispatch(campaign_id=campaign.pk, seconds=30) == "finished"

    received = tenants_on.received
    assert len(received) == 3
    assert {message.tenant for message in received} == {name}
    assert all(name.encode() not in message.raw for message in received)


def test_a_test_send_names_the_tenant_too(tenants_on):
    rowing = club()
    name = tenant_setup(organisation_id=rowing.pk).tenant.tenant_name
    campaign = campaign_to(list_with_contacts(1, organisation=rowing), organisation=rowing)

    (result,) = campaign_test_send(campaign=campaign, addresses=["check@example.org"], contact=None)

    assert result.ok
    assert [message.tenant for message in tenants_on.received] == [name]


def test_a_send_before_the_sender_is_associated_is_refused_and_pauses_the_campaign_without_failing_anyone(
    tenants_on,
):
    rowing = club()
    tenant_setup(organisation_id=rowing.pk)
    # A sender SES verified after the last association: SES refuses every message from it alike.
    SenderIdentity.objects.create(
        organisation=rowing, kind="domain", value="rowing.example", status=SenderIdentity.Status.VERIFIED
    )
    campaign = sending_campaign(rowing, 3, from_email="Rowing <news@rowing.example>")

    assert campaign_dispatch(campaign_id=campaign.pk, seconds=30) == "stopped"

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.PAUSED
    assert "BadRequestException" in campaign.status_reason
    assert "is not associated with tenant" in campaign.status_reason
    assert "ses_setup --tenants-only" in campaign.status_reason
    assert not Recipient.objects.filter(campaign=campaign, status=Recipient.Status.FAILED).exists()
    assert tenants_on.received == []

    run_ses_setup()
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.SENDING)
    assert campaign_dispatch(campaign_id=campaign.pk, seconds=30) == "finished"
    assert len(tenants_on.received) == 3


def test_a_tenant_ses_paused_pauses_only_that_organisations_campaigns(tenants_on, staff_client, organisation):
    rowing, chess = club(), club("chess-club")
    for each in (rowing, chess, organisation):
        tenant_setup(organisation_id=each.pk)
    rowing_campaign, chess_campaign = sending_campaign(rowing), sending_campaign(chess)
    own_campaign = sending_campaign(organisation)
    paused_name = SesTenant.objects.get(organisation=organisation).tenant_name
    tenants_on.tenant_status(paused_name, "DISABLED", cause="The bounce rate is above 10%", impact="HIGH")

    assert tenants_check() == 3

    tenant = SesTenant.objects.get(organisation=organisation)
    assert (tenant.sending_status, tenant.reputation_impact) == ("DISABLED", "HIGH")
    own_campaign.refresh_from_db()
    assert own_campaign.status == Campaign.Status.PAUSED
    assert own_campaign.status_reason == ("SES has paused sending for this organisation: The bounce rate is above 10%")
    assert set(
        Campaign.objects.filter(pk__in=[rowing_campaign.pk, chess_campaign.pk]).values_list("status", flat=True)
    ) == {Campaign.Status.SENDING}
    assert SesTenant.objects.get(organisation=rowing).sending_status == "ENABLED"
    # The account health panel and the organisation's page say so in plain words.
    panel = staff_client.get(reverse("reports:index")).content.decode()
    assert "SES has paused sending for this organisation: The bounce rate is above 10%" in panel
    assert "Paused by SES" in panel
    page = staff_client.get(reverse("organisations:detail")).content.decode()
    assert 'data-testid="ses-tenant-notice"' in page


def test_a_send_for_a_tenant_ses_paused_is_refused_and_pauses_the_campaign(tenants_on):
    rowing = club()
    name = tenant_setup(organisation_id=rowing.pk).tenant.tenant_name
    tenants_on.tenant_status(name, "DISABLED", cause="Complaints")
    campaign = sending_campaign(rowing, 2)

    assert campaign_dispatch(campaign_id=campaign.pk, seconds=30) == "stopped"

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.PAUSED
    assert campaign.status_reason.startswith("SES refused to send: SendingPausedException")


def test_a_new_organisation_gets_its_tenant_from_a_task_enqueued_on_commit(
    tenants_on, settings, django_capture_on_commit_callbacks
):
    settings.SES_TENANTS = False
    with django_capture_on_commit_callbacks(execute=False) as without:
        organisation_create(name="Chess Club")
    settings.SES_TENANTS = True
    with django_capture_on_commit_callbacks(execute=False) as with_tenants:
        rowing = organisation_create(name="Rowing Club")

    assert len(with_tenants) == len(without) + 1

    assert tenant_setup_task(rowing.pk) == f"cobalt-rowing-club-{rowing.pk}"
    assert tenants_on.tenants == [f"cobalt-rowing-club-{rowing.pk}"]


def test_with_tenants_off_no_send_names_a_tenant_and_nothing_asks_ses_about_tenants(stub_ses, settings):
    settings.SES_TENANTS = False
    rowing = club()
    campaign = sending_campaign(rowing, 2)

    assert campaign_dispatch(campaign_id=campaign.pk, seconds=30) == "finished"
    assert tenants_check() == 0
    assert tenant_setup_task(rowing.pk) == "SES tenants are off"

    assert [message.tenant for message in stub_ses.received] == ["", ""]
    assert stub_ses.tenants == []
    assert not SesTenant.objects.exists()


def test_ses_setup_for_tenants_alone_says_when_they_are_off(stub_ses, settings):
    settings.SES_TENANTS = False

    with pytest.raises(CommandError, match="SES tenants are off: set SES_TENANTS=1 first"):
        run_ses_setup()
