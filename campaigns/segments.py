"""Segment rules → a Q object over Contact. Rules come from a form, never from raw SQL.

A rule is ``{"field": ..., "operator": ..., "value": ...}``:
- ``attribute:<name>`` with ``equals`` / ``contains`` / ``empty`` / ``gt``
- ``email``, ``first_name``, ``last_name`` with ``equals`` / ``contains`` / ``empty``
- ``list`` with ``member`` / ``not_member`` (value: list id)
- ``status`` with ``equals`` (value: a Contact.Status)
- ``created`` with ``before`` / ``after`` (value: ISO date)
- ``engagement`` with ``opened`` / ``clicked`` / ``not_opened`` / ``bounced``
  (value: ``{"campaign": id}`` or ``{"days": N}``)
"""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from django.utils.dateparse import parse_date

from campaigns.models import Contact, Segment, Subscription


class RuleError(ValueError):
    """A rule that cannot be applied; the message names the rule."""


TEXT_FIELDS = {"email", "first_name", "last_name"}
ENGAGEMENT_TYPES = {"opened": "open", "clicked": "click", "not_opened": "open", "bounced": "bounce"}


def segment_filter(segment: Segment) -> Q:
    return rules_filter(segment.rules, match=segment.match)


def rules_filter(rules: list[dict], *, match: str = "all") -> Q:
    parts = [rule_filter(rule) for rule in rules]
    if not parts:
        return Q(pk__in=[])
    combined = parts[0]
    for part in parts[1:]:
        combined = (combined | part) if match == "any" else (combined & part)
    return combined


def rule_filter(rule: dict) -> Q:
    field = str(rule.get("field", ""))
    operator = str(rule.get("operator", ""))
    value = rule.get("value")
    if field.startswith("attribute:"):
        return _attribute(field.removeprefix("attribute:"), operator, value)
    if field in TEXT_FIELDS:
        return _text(field, operator, value)
    if field == "list":
        member = Q(
            Exists(Subscription.objects.filter(contact=OuterRef("pk"), contact_list_id=value, status="subscribed"))
        )
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
        return _engagement(operator, value or {})
    raise RuleError(f"The rule '{field} {operator}' is not one Cobalt Mail knows.")


def _text(field: str, operator: str, value) -> Q:
    text = str(value or "")
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
        return Q(**{key: value})
    if operator == "contains":
        return Q(**{f"{key}__icontains": str(value)})
    if operator == "empty":
        return ~Q(**{"attributes__has_key": name}) | Q(**{key: ""}) | Q(**{f"{key}__isnull": True})
    if operator == "gt":
        try:
            return Q(**{f"{key}__gt": float(value)})
        except (TypeError, ValueError):
            raise RuleError(f"'{value}' is not a number.") from None
    raise RuleError(f"'{operator}' does not apply to attributes.")


def _engagement(operator: str, value: dict) -> Q:
    from tracking.models import Event

    events = Event.objects.filter(recipient__contact=OuterRef("pk"), event_type=ENGAGEMENT_TYPES[operator])
    if value.get("campaign"):
        events = events.filter(campaign_id=value["campaign"])
    elif value.get("days"):
        events = events.filter(occurred_at__gte=timezone.now() - timedelta(days=int(value["days"])))
    else:
        raise RuleError("An engagement rule needs a campaign or a number of days.")
    condition = Q(Exists(events))
    return ~condition if operator == "not_opened" else condition
