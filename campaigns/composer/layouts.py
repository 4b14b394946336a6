"""Mail layouts (the default one ships) and campaigns saved as reusable templates."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import transaction

from campaigns.models import Campaign, CampaignTemplate, Layout, content_of
from organisations.models import Organisation, sole_organisation_id

_EMAILS = Path(settings.BASE_DIR) / "templates" / "emails"
DEFAULT_LAYOUT_NAME = "Default"
DEFAULT_LAYOUT_HTML = (_EMAILS / "default_layout.html").read_text(encoding="utf-8")
DEFAULT_LAYOUT_CSS = (_EMAILS / "default_layout.css").read_text(encoding="utf-8")


def default_layout(organisation: Organisation | int | None = None) -> Layout:
    """The organisation's layout new campaigns start with; recreated if someone deleted every default.

    Each organisation has its own default (``is_default`` within the organisation). Without an
    organisation: the installation's only one (scripts and tests of a single-organisation site).
    """
    organisation_id = getattr(organisation, "pk", organisation) or sole_organisation_id()
    if organisation_id is None:
        raise ValueError("Name the organisation whose default layout is wanted: there are several.")
    layout = default_layout_of(organisation_id)
    if layout is None:
        layout, _ = Layout.objects.get_or_create(
            organisation_id=organisation_id,
            name=DEFAULT_LAYOUT_NAME,
            defaults={"html": DEFAULT_LAYOUT_HTML, "css": DEFAULT_LAYOUT_CSS, "is_default": True},
        )
    return layout


def default_layout_of(organisation_id: int) -> Layout | None:
    """The organisation's default layout if it has one (a read: nothing is created)."""
    return Layout.objects.filter(organisation_id=organisation_id, is_default=True).first()


def layout_make_default(*, layout: Layout) -> Layout:
    """Make the layout its organisation's default (other organisations' defaults stay)."""
    with transaction.atomic():
        others = Layout.objects.filter(organisation_id=layout.organisation_id, is_default=True)
        others.exclude(pk=layout.pk).update(is_default=False)
        layout.is_default = True
        layout.save(update_fields=["is_default", "updated_at"])
    return layout


class LayoutInUse(Exception):
    """A layout that is the default, or that campaigns or templates use, is kept."""


def layout_delete(*, layout: Layout) -> None:
    """Delete a layout nothing uses. Sent campaigns count: their "view online" page renders with it."""
    with transaction.atomic():
        layout = Layout.objects.select_for_update().get(pk=layout.pk)
        if layout.is_default:
            raise LayoutInUse(
                f"“{layout.name}” is the default layout for new campaigns. Make another layout the default first."
            )
        campaigns = list(Campaign.objects.filter(layout=layout).order_by("name").values_list("name", flat=True))
        templates = CampaignTemplate.objects.filter(layout=layout).count()
        if campaigns or templates:
            users = []
            if campaigns:
                shown = ", ".join(f"“{name}”" for name in campaigns[:3]) + (" …" if len(campaigns) > 3 else "")
                users.append(f"{len(campaigns)} campaign{'s' if len(campaigns) != 1 else ''} ({shown})")
            if templates:
                users.append(f"{templates} template{'s' if templates != 1 else ''}")
            raise LayoutInUse(
                f"“{layout.name}” is used by {' and '.join(users)}, so it is kept: sent campaigns show their "
                "layout on their “view online” page. Choose another layout for drafts and templates instead."
            )
        layout.delete()


def template_save_from_campaign(*, campaign: Campaign, name: str) -> tuple[CampaignTemplate, bool]:
    """Keep the campaign's content (not its audience or schedule) for new campaigns.

    A template of the same name is replaced; returns (template, created) so staff are told which.
    """
    return CampaignTemplate.objects.update_or_create(
        organisation_id=campaign.organisation_id, name=name, defaults=content_of(campaign)
    )


def campaign_from_template(*, template: CampaignTemplate, from_email: str, user=None) -> Campaign:
    """A new draft in the template's organisation (a layout of another organisation is left out)."""
    content = content_of(template)
    layout = content.get("layout")
    if layout is not None and layout.organisation_id != template.organisation_id:
        content["layout"] = None
    return Campaign.objects.create(
        organisation_id=template.organisation_id,
        name=template.name,
        from_email=from_email,
        created_by=user,
        **content,
    )
