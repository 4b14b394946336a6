"""Segment rules → a Q object over Contact. Rules come from a form, never from raw SQL.

A rule is ``{"field": ..., "operator": ..., "value": ...}``:
- ``attribute:<name>`` with ``equals`` / ``contains`` / ``empty`` / ``gt``
- ``email``, ``first_name``, ``last_name`` with ``equals`` / ``contains`` / ``empty``
- ``list`` with ``member`` / ``not_member`` (value: list id)
- ``status`` with ``equals`` (value: a Contact.Status)
- ``created`` with ``before`` / ``after`` (value: ISO date)
- ``engagement`` with ``opened`` / ``clicked`` / ``not_opened`` / ``bounced``
  (value: ``{"campaign": id}`` or ``{"days": N}``)

Rules are evaluated over one organisation's contacts only, and engagement rules over its own
campaigns only: the filter of a segment includes its organisation.
"""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Case, Exists, FloatField, OuterRef, Q, QuerySet, When
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast
from django.db.models.lookups import GreaterThan
from django.utils import timezone
from django.utils.dateparse import parse_date

from audiences.models import Contact, Segment, Subscription, normalise_email
from campaigns.models import Campaign, Recipient
from organisations.models import Organisation
from tracking.models import Event


class RuleError(ValueError):
    """A rule that cannot be applied; the message names the rule."""


TEXT_FIELDS = {"email", "first_name", "last_name"}
NUMBER_PATTERN = r"^\s*-?[0-9]+(\.[0-9]+)?\s*$"
ENGAGEMENT_TYPES = {"opened": "open", "clicked": "click", "not_opened": "open", "bounced": "bounce"}


def _organisation_id(organisation: Organisation | int) -> int:
    return organisation.pk if isinstance(organisation, Organisation) else int(organisation)


def engagement_campaigns(organisation: Organisation | int) -> QuerySet[Campaign]:
    """The campaigns an engagement rule may name (the rule form's choices): the organisation's.

    Here, with the engagement rules, so that only this module of ``audiences`` reads campaigns
    (the layer exception the import-linter contract names).
    """
    return Campaign.objects.filter(organisation_id=_organisation_id(organisation))


def segment_filter(segment: Segment) -> Q:
    return rules_filter(segment.rules, match=segment.match, organisation=segment.organisation_id)


def rules_filter(rules: list[dict], *, match: str = "all", organisation: Organisation | int) -> Q:
    """The contacts of the organisation that the rules select (none when there are no rules)."""
    parts = [rule_filter(rule, organisation=organisation) for rule in rules]
    if not parts:
        return Q(pk__in=[])
    combined = parts[0]
    for part in parts[1:]:
        combined = (combined | part) if match == "any" else (combined & part)
    return Q(organisation_id=_organisation_id(organisation)) & combined


def rule_filter(rule: dict, *, organisation: Organisation | int) -> Q:
    """One rule over the organisation's contacts (``rules_filter`` adds the organisation itself)."""
    field = str(rule.get("field", ""))
    operator = str(rule.get("operator", ""))
    value = rule.get("value")
    if field.startswith("attribute:"):
        return _attribute(field.removeprefix("attribute:"), operator, value)
    if field in TEXT_FIELDS:
        return _text(field, operator, value)
    if field == "list":
        list_id = _integer(value)
        subscribed = Subscription.objects.filter(
            contact=OuterRef("pk"),
            contact_list_id=list_id,
            contact_list__organisation_id=_organisation_id(organisation),
            status="subscribed",
        )
        member = Q(Exists(subscribed))
        if operator == "member":
            return member
        if operator == "not_member":
            return ~member
    if field == "status" and operator == "equals" and value in Contact.Status.values:
        return Q(status=value)
    if field == "created" and operator in {"before", "after"}:
        day = parse_date(str(value or ""))
        if day is None:
            raise RuleError(f"'{value}' is not a date (use YYYY-MM-DD).")
        return Q(created_at__date__lt=day) if operator == "before" else Q(created_at__date__gt=day)
    if field == "engagement" and operator in ENGAGEMENT_TYPES:
        return _engagement(operator, value or {}, _organisation_id(organisation))
    raise RuleError(f"The rule '{field} {operator}' is not one Cobalt Mail knows.")


def _text(field: str, operator: str, value) -> Q:
    text = str(value or "").strip()
    if field == "email" and operator == "equals":
        return Q(email=normalise_email(text))
    if operator == "equals":
        return Q(**{f"{field}__iexact": text})
    if operator == "contains":
        return Q(**{f"{field}__icontains": text})
    if operator == "empty":
        return Q(**{field: ""})
    raise RuleError(f"'{operator}' does not apply to {field}.")


def _attribute(name: str, operator: str, value) -> Q:
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise RuleError(f"'{name}' is not a valid attribute name.")
    key = f"attributes__{name}"
    if operator == "equals":
        # Compared as text, case-insensitively: imports store every value as a string, and a
        # value typed as 42 must still match a stored 42 or "42".
        return Q(**{f"{key}__iexact": str(value if value is not None else "")})
    if operator == "contains":
        return Q(**{f"{key}__icontains": str(value)})
    if operator == "empty":
        return ~Q(**{"attributes__has_key": name}) | Q(**{key: ""}) | Q(**{f"{key}__isnull": True})
    if operator == "gt":
        try:
            threshold = float(value)
        except (TypeError, ValueError):
            raise RuleError(f"'{value}' is not a number.") from None
        # Cast only values that look like numbers: PostgreSQL would abort the whole query on
        # the first "n/a" otherwise. The text form makes "45" and 45 compare alike.
        as_number = Case(
            When(Q(**{f"{key}__regex": NUMBER_PATTERN}), then=Cast(KeyTextTransform(name, "attributes"), FloatField())),
            default=None,
            output_field=FloatField(),
        )
        return Q(GreaterThan(as_number, threshold))
    raise RuleError(f"'{operator}' does not apply to attributes.")


def _engagement(operator: str, value: dict, organisation_id: int) -> Q:
    """Contacts with (or, for not_opened, without) an event of the type, in a campaign or lately,
    counting the organisation's own campaigns only.

    "Did not open campaign X" means: was a recipient of X and has no open of X. "Did not open
    in the last N days" means: no open at all in that window.
    """
    if not isinstance(value, dict):
        raise RuleError("An engagement rule needs a campaign or a number of days.")
    events = Event.objects.filter(
        recipient__contact=OuterRef("pk"),
        event_type=ENGAGEMENT_TYPES[operator],
        campaign__organisation_id=organisation_id,
    )
    campaign_id = _integer(value.get("campaign"))
    days = _integer(value.get("days"))
    if operator == "clicked" and value.get("link"):
        events = events.filter(link=str(value["link"])[:2000])  # "clicked link X" (from a report)
    if campaign_id:
        events = events.filter(campaign_id=campaign_id)
    elif days and days > 0:
        events = events.filter(occurred_at__gte=timezone.now() - timedelta(days=days))
    else:
        raise RuleError("An engagement rule needs a campaign or a number of days.")
    condition = Q(Exists(events))
    if operator != "not_opened":
        return condition
    if campaign_id:
        received = Recipient.objects.filter(
            contact=OuterRef("pk"), campaign_id=campaign_id, campaign__organisation_id=organisation_id
        )
        return Q(Exists(received)) & ~condition
    return ~condition


def _integer(value) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        raise RuleError(f"'{value}' is not a whole number.") from None
