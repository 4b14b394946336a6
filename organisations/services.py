"""The one door for writes to organisations and memberships; each writes its audit entry in the
same transaction, so that a change and its record are kept or lost together.

Views, management commands and the demo data call these; ``request`` (optional) names who did it
and from where (None: a management command).
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.db.models import ProtectedError
from django.http import HttpRequest
from django.utils.text import slugify
from django_q.tasks import async_task

from organisations import audit
from organisations.models import ROLE_RANK, Membership, Organisation, Role

Action = audit.Action
ORGANISATION_FIELDS = (
    "name",
    "postal_address",
    "sender_name",
    "reply_to",
    "is_active",
    "send_weight",
    "daily_quota",
    "monthly_quota",
)


class OrganisationRefused(ValueError):
    """A change the rules refuse; the message says why in words a volunteer understands."""


def _role(role: str) -> Role:
    if role not in Role.values:
        names = ", ".join(Role.values)
        raise OrganisationRefused(f"“{role}” is not a role. The roles are: {names}.")
    return Role(role)


# --- organisations ------------------------------------------------------------------------------


@transaction.atomic
def organisation_create(
    *, name: str, slug: str = "", parent: Organisation | None = None, request: HttpRequest | None = None
) -> Organisation:
    """A new organisation (under ``parent``, or at the top); the slug defaults to the name's."""
    name = name.strip()
    if not name:
        raise OrganisationRefused("An organisation needs a name.")
    slug = slugify(slug or name)[:60]
    if not slug:
        raise OrganisationRefused("Give the organisation a short name in letters or digits (its slug).")
    if Organisation.objects.filter(slug=slug).exists():
        raise OrganisationRefused(f"The slug “{slug}” is taken by another organisation: choose another.")
    organisation = Organisation.objects.create(name=name, slug=slug, parent=parent)
    where = f" under {parent.name}" if parent is not None else ""
    audit.record(
        request,
        Action.ORGANISATION,
        f"Created the organisation {name} ({slug}){where}",
        organisation=parent or organisation,
        object_type="organisation",
        object_id=organisation.pk,
    )
    if settings.SES_TENANTS:  # its SES tenant (README "SES tenants"); by name: campaigns sits above
        transaction.on_commit(lambda: async_task("campaigns.delivery.tenants.tenant_setup_task", organisation.pk))
    return organisation


@transaction.atomic
def organisation_update(*, organisation: Organisation, changes: dict, request: HttpRequest | None = None) -> list[str]:
    """Save the changed fields (name, address, default sender, reply-to, active, share of the send rate,
    quotas); returns their names."""
    changed = [
        field for field in ORGANISATION_FIELDS if field in changes and getattr(organisation, field) != changes[field]
    ]
    if not changed:
        return []
    for field in changed:
        setattr(organisation, field, changes[field])
    organisation.save(update_fields=changed)
    labels = ", ".join(str(Organisation._meta.get_field(field).verbose_name) for field in changed)
    audit.record(
        request,
        Action.ORGANISATION,
        f"Changed {organisation.name}: {labels}",
        organisation=organisation,
        object_type="organisation",
        object_id=organisation.pk,
    )
    return changed


def organisation_deactivate(
    *, organisation: Organisation, active: bool = False, request: HttpRequest | None = None
) -> None:
    """Switch an organisation off (its members can no longer open it) or on again; nothing is deleted."""
    organisation_update(organisation=organisation, changes={"is_active": active}, request=request)


def organisation_delete(*, organisation: Organisation, request: HttpRequest | None = None) -> None:
    """Delete an organisation that owns nothing; one with campaigns, contacts or child organisations
    is refused (their foreign keys are PROTECT), to be deactivated instead."""
    name, pk = organisation.name, organisation.pk
    try:
        with transaction.atomic():
            # Recorded first, in the parent's log; a top-level organisation's entry is written in its
            # own log and kept (organisation emptied by SET_NULL) when the row goes.
            audit.record(
                request,
                Action.DELETE,
                f"Deleted the organisation {name}",
                organisation=organisation.parent or organisation,
                object_type="organisation",
                object_id=pk,
            )
            organisation.delete()
    except ProtectedError:
        raise OrganisationRefused(
            f"{name} has campaigns, contacts or child organisations, so it cannot be deleted: deactivate it instead."
        ) from None


# --- memberships --------------------------------------------------------------------------------


def _refuse_losing_last_administrator(membership: Membership, new_role: str | None) -> None:
    """Every organisation keeps at least one administrator (else nobody could manage its members).

    The organisation's administrator rows are locked first, so that two administrators removing
    each other at the same moment cannot both succeed.
    """
    if membership.role != Role.ADMINISTRATOR or new_role == Role.ADMINISTRATOR:
        return
    administrators = list(
        Membership.objects.select_for_update()
        .filter(organisation_id=membership.organisation_id, role=Role.ADMINISTRATOR)
        .values_list("pk", flat=True)
    )
    if administrators == [membership.pk]:
        raise OrganisationRefused(
            f"{membership.user.get_username()} is the last administrator of {membership.organisation.name}. "
            "Make someone else an administrator first."
        )


@transaction.atomic
def membership_grant(*, organisation: Organisation, user, role: str, request: HttpRequest | None = None) -> Membership:
    """Give ``user`` the role in the organisation (changing the role they have, if any)."""
    role = _role(role)
    existing = Membership.objects.select_for_update().filter(organisation=organisation, user=user).first()
    if existing is not None:
        return membership_change(membership=existing, role=role, request=request)
    membership = Membership.objects.create(organisation=organisation, user=user, role=role)
    audit.record(
        request,
        Action.ROLE_GRANTED,
        f"Made {user.get_username()} {role.label} of {organisation.name}",
        organisation=organisation,
        object_type="membership",
        object_id=membership.pk,
    )
    return membership


@transaction.atomic
def membership_change(*, membership: Membership, role: str, request: HttpRequest | None = None) -> Membership:
    role = _role(role)
    if membership.role == role:
        return membership
    _refuse_losing_last_administrator(membership, role)
    old = Role(membership.role)
    membership.role = role
    membership.save(update_fields=["role"])
    verb = "Raised" if ROLE_RANK[role] > ROLE_RANK[old] else "Lowered"
    audit.record(
        request,
        Action.ROLE_GRANTED,
        f"{verb} {membership.user.get_username()} from {old.label} to {role.label} in {membership.organisation.name}",
        organisation=membership.organisation,
        object_type="membership",
        object_id=membership.pk,
    )
    return membership


@transaction.atomic
def membership_revoke(*, membership: Membership, request: HttpRequest | None = None) -> None:
    """Remove the user from the organisation; with no membership left they are logged out at their
    next request (cobalt_mail.permissions)."""
    _refuse_losing_last_administrator(membership, None)
    username, organisation, pk = membership.user.get_username(), membership.organisation, membership.pk
    role = Role(membership.role)
    membership.delete()
    audit.record(
        request,
        Action.ROLE_REMOVED,
        f"Removed {username} ({role.label}) from {organisation.name}",
        organisation=organisation,
        object_type="membership",
        object_id=pk,
    )
