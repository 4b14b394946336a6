"""SES tenants: one per organisation, so that SES can pause one organisation instead of the account.

With ``SES_TENANTS=1`` (README "SES tenants"; off by default, and then nothing here calls SES):

- ``tenant_setup`` creates the organisation's tenant (SESv2 ``CreateTenant``; one that exists is
  adopted) and associates with it what its messages name (``CreateTenantResourceAssociation``): the
  installation's configuration set, the organisation's verified sender identities and the domains
  of the shared sender addresses. SES refuses a send naming a tenant unless every resource it names
  is associated. ``ses_setup`` runs it for every organisation; ``organisation_create`` enqueues
  ``tenant_setup_task`` for a new one.
- ``tenants_check`` (the ``ses-tenants-check`` schedule, every five minutes) associates identities
  verified since, asks SES about each tenant (``GetReputationEntity``) and stores its sending status
  and reputation impact; a tenant SES paused pauses the organisation's sending campaigns with SES's
  reason.
- The engine names the tenant on every send (``mime.prepare_campaign`` reads it once per campaign,
  ``ses.TenantNameBackend`` adds ``TenantName`` to the SendEmail call).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.utils import timezone

from campaigns.models import Campaign, SesTenant
from campaigns.services import CampaignError, campaign_pause
from organisations.models import Organisation
from organisations.senders import sesv2_client, shared_addresses, verified_senders

logger = logging.getLogger(__name__)

TENANT_PREFIX = "cobalt"
NAME_LENGTH = 64  # SES: up to 64 letters, digits, hyphens and underscores
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass
class TenantSetup:
    """What ``tenant_setup`` did, for ``ses_setup`` to report."""

    tenant: SesTenant
    created: bool
    associated: list[str] = field(default_factory=list)  # ARNs associated by this run
    missing: list[str] = field(default_factory=list)  # ARNs SES does not know (not associated)


def tenant_name_for(organisation: Organisation) -> str:
    """``cobalt-<slug>-<id>``: readable in the SES console, unique by the id, within SES's rules."""
    suffix = f"-{organisation.pk}"
    slug = _NOT_IN_NAME.sub("-", organisation.slug).strip("-") or "organisation"
    return f"{TENANT_PREFIX}-{slug[: NAME_LENGTH - len(TENANT_PREFIX) - 1 - len(suffix)]}{suffix}"


def tenant_setup(*, organisation_id: int, client=None) -> TenantSetup:
    """Create (or adopt) the organisation's tenant and associate what its messages name. Idempotent."""
    organisation = Organisation.objects.get(pk=organisation_id)
    client = client or sesv2_client()
    tenant, created = _tenant_made(client, organisation)
    associated, missing = _resources_associate(client, tenant, organisation)
    return TenantSetup(tenant, created, associated, missing)


def tenant_setup_task(organisation_id: int) -> str:
    """django-q2 task (enqueued on commit by ``organisation_create``)."""
    if not settings.SES_TENANTS:
        return "SES tenants are off"
    return tenant_setup(organisation_id=organisation_id).tenant.tenant_name


def _tenant_made(client, organisation: Organisation) -> tuple[SesTenant, bool]:
    existing = SesTenant.objects.filter(organisation=organisation).first()
    if existing is not None and existing.tenant_arn:
        return existing, False
    name = existing.tenant_name if existing else tenant_name_for(organisation)
    try:
        answer = client.create_tenant(
            TenantName=name, Tags=[{"Key": "cobalt-organisation", "Value": str(organisation.pk)}]
        )
        arn, created = answer["TenantArn"], True
    except ClientError as error:
        if _code(error) != "AlreadyExistsException":
            raise
        arn, created = client.get_tenant(TenantName=name)["Tenant"]["TenantArn"], False
    tenant, _ = SesTenant.objects.update_or_create(
        organisation=organisation, defaults={"tenant_name": name, "tenant_arn": arn}
    )
    return tenant, created


def tenant_resources(organisation: Organisation, tenant_arn: str) -> list[str]:
    """The ARNs the organisation's messages name: the configuration set and the From identities.

    ARNs take the partition, region and account from the tenant's own ARN
    (``arn:aws:ses:<region>:<account>:tenant/<name>/<id>``), so no other call is needed.
    """
    partition, region, account = _arn_parts(tenant_arn)
    base = f"arn:{partition}:ses:{region}:{account}"
    arns = []
    if settings.AWS_SES_CONFIGURATION_SET:
        arns.append(f"{base}:configuration-set/{settings.AWS_SES_CONFIGURATION_SET}")
    domains, addresses = verified_senders(organisation)
    # The shared addresses are verified as domains (ses_verify_senders): that is the identity SES uses.
    shared_domains = [address.rpartition("@")[2].strip().lower() for address in shared_addresses()]
    for identity in [*domains, *addresses, *shared_domains]:
        arns.append(f"{base}:identity/{identity}")
    return list(dict.fromkeys(arns))


def _resources_associate(client, tenant: SesTenant, organisation: Organisation) -> tuple[list[str], list[str]]:
    """Associate the resources not associated yet; forget those no longer wanted (an identity removed
    and added again is associated again)."""
    wanted = tenant_resources(organisation, tenant.tenant_arn)
    done = [arn for arn in tenant.resources if arn in wanted]
    added, missing = [], []
    for arn in wanted:
        if arn in done:
            continue
        try:
            client.create_tenant_resource_association(TenantName=tenant.tenant_name, ResourceArn=arn)
        except ClientError as error:
            code = _code(error)
            if code == "NotFoundException":
                missing.append(arn)
                continue
            if code != "AlreadyExistsException":
                raise
        added.append(arn)
    if added or done != tenant.resources:
        tenant.resources = done + added
        tenant.save(update_fields=["resources"])
    if missing:
        logger.warning("SES tenant %s: SES does not know %s; not associated", tenant.tenant_name, ", ".join(missing))
    return added, missing


# --- the periodic check ---------------------------------------------------------------------------


def tenants_check() -> int:
    """Every few minutes (schedule ``ses-tenants-check``): set up tenants missing or incomplete, then
    store each tenant's status as SES reports it. Returns how many tenants were checked."""
    if not settings.SES_TENANTS:
        return 0
    client = sesv2_client()
    checked = 0
    for organisation_id in Organisation.objects.order_by("pk").values_list("pk", flat=True):
        try:
            setup = tenant_setup(organisation_id=organisation_id, client=client)
            tenant_status_check(tenant=setup.tenant, client=client)
        except (ClientError, BotoCoreError):  # one organisation's trouble must not stop the others
            logger.exception("SES tenant of organisation %s: the check failed", organisation_id)
            continue
        checked += 1
    return checked


def tenant_status_check(*, tenant: SesTenant, client=None) -> SesTenant:
    """Store SES's sending status and reputation impact for the tenant; if SES paused it, pause the
    organisation's sending campaigns with SES's reason."""
    client = client or sesv2_client()
    entity = client.get_reputation_entity(ReputationEntityType="RESOURCE", ReputationEntityReference=tenant.tenant_arn)[
        "ReputationEntity"
    ]
    tenant.sending_status = entity.get("SendingStatusAggregate", "")
    tenant.reputation_impact = entity.get("ReputationImpact") or SesTenant.Impact.NONE
    tenant.status_reason = _cause(entity)
    tenant.checked_at = timezone.now()
    tenant.save(update_fields=["sending_status", "reputation_impact", "status_reason", "checked_at"])
    if tenant.paused:
        _campaigns_pause(tenant)
    return tenant


def _cause(entity: dict) -> str:
    """SES's reason: the record that disables sending first (SES's own, then the customer's)."""
    records = [entity.get("AwsSesManagedStatus") or {}, entity.get("CustomerManagedStatus") or {}]
    for record in records:
        if record.get("Status") == SesTenant.SendingStatus.DISABLED:
            return record.get("Cause", "")
    return next((record.get("Cause", "") for record in records if record.get("Cause")), "")


def _campaigns_pause(tenant: SesTenant) -> None:
    reason = f"SES has paused sending for this organisation: {tenant.status_reason or 'SES gave no reason'}"
    sending = Campaign.objects.filter(organisation_id=tenant.organisation_id, status=Campaign.Status.SENDING)
    for campaign_id in sending.values_list("pk", flat=True):
        try:
            campaign_pause(campaign_id=campaign_id, reason=reason[:500])
        except CampaignError:
            pass  # paused, finished or cancelled meanwhile
        else:
            logger.warning("campaign %s paused: SES tenant %s is paused", campaign_id, tenant.tenant_name)


def _code(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Code", "")


def _arn_parts(arn: str) -> tuple[str, str, str]:
    """(partition, region, account) of an ARN such as ``arn:aws:ses:eu-west-1:123456789012:tenant/…``."""
    parts = arn.split(":", 5)
    if len(parts) < 6 or parts[0] != "arn":
        raise ValueError(f"Not an ARN: {arn!r}")
    return parts[1], parts[3], parts[4]
