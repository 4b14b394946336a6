"""Forms of the audience pages: contacts, lists, imports, suppression and segment rules.

Forms that offer lists, segments or campaigns take the organisation and offer only its own: a
posted id of another organisation's list is "not one of the available choices", a field error.
"""

from __future__ import annotations

import re

from django import forms
from django.core.exceptions import ValidationError
from django.forms import formset_factory

from audiences.addresses import email_clean
from audiences.imports import ImportRefused, header_key, mapping_check
from audiences.models import Contact, ContactList, Segment, Suppression
from audiences.segments import RuleError, engagement_campaigns, rule_filter
from audiences.selectors import lists_of
from common.params import id_params
from organisations.models import Organisation

ATTRIBUTE_NAME = re.compile(r"^[\w-]{1,100}$")
INPUT = {"class": "input"}


class OrganisationListsForm(forms.Form):
    """A form whose list fields (``LIST_FIELDS``) offer the organisation's lists only."""

    LIST_FIELDS: tuple[str, ...] = ()

    def __init__(self, *args, organisation: Organisation, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.organisation = organisation
        for name in self.LIST_FIELDS:
            self.fields[name].queryset = lists_of(organisation)


class ContactFilterForm(OrganisationListsForm):
    LIST_FIELDS = ("list",)

    q = forms.CharField(
        required=False,
        max_length=254,
        widget=forms.SearchInput(attrs={**INPUT, "placeholder": "Email or name starts with…", "aria-label": "Search"}),
    )
    list = forms.ModelChoiceField(
        ContactList.objects.none(),
        required=False,
        empty_label="All lists",
        widget=forms.Select(attrs={"aria-label": "List"}),
    )
    status = forms.ChoiceField(
        choices=[("", "Any status"), *Contact.Status.choices],
        required=False,
        widget=forms.Select(attrs={"aria-label": "Status"}),
    )

    def filters(self) -> dict:
        if not self.is_valid():
            return {"query": "", "list_id": None, "status": ""}
        chosen = self.cleaned_data["list"]
        return {
            "query": self.cleaned_data["q"],
            "list_id": chosen.pk if chosen else None,
            "status": self.cleaned_data["status"],
        }


class ContactForm(OrganisationListsForm):
    LIST_FIELDS = ("lists",)

    email = forms.CharField(max_length=320, widget=forms.TextInput(attrs={**INPUT, "autocomplete": "off"}))
    first_name = forms.CharField(max_length=100, required=False, widget=forms.TextInput(attrs=INPUT))
    last_name = forms.CharField(max_length=100, required=False, widget=forms.TextInput(attrs=INPUT))
    attributes = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"class": "textarea", "rows": 4}),
        help_text="One per line, as name = value (for example: club = Rowing).",
    )
    lists = forms.ModelMultipleChoiceField(
        ContactList.objects.none(), required=False, widget=forms.CheckboxSelectMultiple, label="Add to lists"
    )

    def clean_email(self) -> str:
        return email_clean(self.cleaned_data["email"])

    def clean_attributes(self) -> dict:
        attributes: dict[str, str] = {}
        for number, line in enumerate(self.cleaned_data["attributes"].splitlines(), start=1):
            if not line.strip():
                continue
            name, separator, value = line.partition("=")
            name = name.strip()
            if not separator or not ATTRIBUTE_NAME.match(name):
                raise ValidationError(f"Line {number}: write name = value; names use letters, digits, _ and -.")
            if len(value.strip()) > 1000:
                raise ValidationError(f"Line {number}: the value is longer than 1000 characters.")
            attributes[name] = value.strip()
        return attributes

    @staticmethod
    def initial_for(contact: Contact) -> dict:
        lines = "\n".join(f"{name} = {value}" for name, value in (contact.attributes or {}).items())
        return {
            "email": contact.email,
            "first_name": contact.first_name,
            "last_name": contact.last_name,
            "attributes": lines,
        }


class BulkActionForm(OrganisationListsForm):
    LIST_FIELDS = ("contact_list",)
    ACTIONS = [("add_to_list", "Add to list"), ("unsubscribe", "Unsubscribe"), ("remove", "Delete contacts")]
    action = forms.ChoiceField(choices=ACTIONS)
    contact_list = forms.ModelChoiceField(ContactList.objects.none(), required=False)
    selected = forms.TypedMultipleChoiceField(coerce=int, choices=(), required=True)

    def __init__(self, data=None, *, organisation: Organisation, **kwargs) -> None:
        super().__init__(data, organisation=organisation, **kwargs)
        values = data.getlist("selected") if data is not None else []
        self.fields["selected"].choices = [(value, value) for value in map(str, id_params(values))]
        self.fields["selected"].error_messages["required"] = "Select at least one contact."
        self.fields["selected"].error_messages["invalid_choice"] = "The selection is not valid."

    def clean(self) -> dict:
        data = super().clean()
        if data.get("action") == "add_to_list" and not data.get("contact_list"):
            raise ValidationError("Choose the list to add the contacts to.")
        return data


class ContactListForm(forms.Form):
    name = forms.CharField(max_length=200, widget=forms.TextInput(attrs=INPUT))
    description = forms.CharField(required=False, widget=forms.TextInput(attrs=INPUT))


class ImportForm(OrganisationListsForm):
    LIST_FIELDS = ("contact_list",)
    file = forms.FileField(
        label="CSV file",
        help_text="UTF-8 (or Windows-1252), separated by , or ; with a first row naming the columns.",
    )
    contact_list = forms.ModelChoiceField(
        ContactList.objects.none(), required=False, label="Into list", empty_label="— new list —"
    )
    new_list = forms.CharField(
        max_length=200, required=False, label="New list name", widget=forms.TextInput(attrs=INPUT)
    )
    update = forms.BooleanField(required=False, label="Update names and attributes of contacts that already exist")

    def clean(self) -> dict:
        data = super().clean()
        if not data.get("contact_list") and not (data.get("new_list") or "").strip():
            raise ValidationError("Choose a list, or name a new one.")
        return data


class ImportMappingForm(forms.Form):
    """One select per CSV column: what to import it as. The header names are the labels."""

    def __init__(self, data=None, *, columns: list[dict], **kwargs) -> None:
        super().__init__(data, **kwargs)
        self.header = [column["name"] for column in columns]
        for position, column in enumerate(columns):
            name = column["name"]
            attribute = header_key(name)
            choices = [
                ("email", "Email address"),
                ("first_name", "First name"),
                ("last_name", "Last name"),
                *([("attribute", f"Attribute “{attribute}”")] if attribute else []),
                ("ignore", "Ignore (not imported)"),
            ]
            self.fields[f"column_{position}"] = forms.ChoiceField(
                choices=choices, initial=column["field"], label=name or f"Column {position + 1} (no name)"
            )

    def clean(self) -> dict:
        data = super().clean()
        if self.errors:
            return data
        fields = [data[f"column_{position}"] for position in range(len(self.header))]
        try:
            mapping_check(self.header, fields)
        except ImportRefused as refusal:
            raise ValidationError(str(refusal)) from None
        data["fields"] = fields
        return data

    def rows(self, samples: list[list[str]]) -> list[tuple]:
        """(bound field, sample values of that column) per column, for the mapping table."""
        return [
            (self[f"column_{position}"], [row[position] for row in samples if position < len(row)])
            for position in range(len(self.header))
        ]


class SuppressionForm(forms.Form):
    email = forms.CharField(max_length=320, widget=forms.TextInput(attrs=INPUT))
    reason = forms.ChoiceField(choices=Suppression.Reason.choices, initial=Suppression.Reason.MANUAL)
    note = forms.CharField(max_length=500, required=False, widget=forms.TextInput(attrs=INPUT))

    def clean_email(self) -> str:
        return email_clean(self.cleaned_data["email"])


class SuppressionFilterForm(forms.Form):
    q = forms.CharField(
        required=False,
        max_length=254,
        widget=forms.SearchInput(attrs={**INPUT, "placeholder": "Address starts with…", "aria-label": "Search"}),
    )
    reason = forms.ChoiceField(choices=[("", "Any reason"), *Suppression.Reason.choices], required=False)


# --- segments -----------------------------------------------------------------------------------

RULE_CHOICES = [
    ("attribute:equals", "Attribute equals"),
    ("attribute:contains", "Attribute contains"),
    ("attribute:empty", "Attribute is empty"),
    ("attribute:gt", "Attribute is greater than"),
    ("email:equals", "Email is"),
    ("email:contains", "Email contains"),
    ("first_name:contains", "First name contains"),
    ("last_name:contains", "Last name contains"),
    ("list:member", "Is on list"),
    ("list:not_member", "Is not on list"),
    ("status:equals", "Status is"),
    ("created:before", "Added before"),
    ("created:after", "Added after"),
    ("engagement:opened", "Opened"),
    ("engagement:clicked", "Clicked"),
    ("engagement:not_opened", "Did not open"),
    ("engagement:bounced", "Bounced"),
]
# Which inputs each kind of rule uses (static/js/audiences.js hides the others).
RULE_INPUTS = {
    "attribute": ["attribute", "value"],
    "email": ["value"],
    "first_name": ["value"],
    "last_name": ["value"],
    "list": ["contact_list"],
    "status": ["status"],
    "created": ["date"],
    "engagement": ["campaign", "days"],
}


class RuleIncomplete(RuleError):
    """An input the rule needs is still empty."""


class RuleForm(OrganisationListsForm):
    LIST_FIELDS = ("contact_list",)

    # The rule row shows no labels (a sentence of controls): each control names itself for screen readers.
    rule = forms.ChoiceField(choices=RULE_CHOICES, widget=forms.Select(attrs={"aria-label": "Rule"}))
    attribute = forms.CharField(
        required=False, max_length=100, widget=forms.TextInput(attrs={**INPUT, "placeholder": "attribute, e.g. club"})
    )
    value = forms.CharField(
        required=False, max_length=500, widget=forms.TextInput(attrs={**INPUT, "placeholder": "value"})
    )
    contact_list = forms.ModelChoiceField(
        ContactList.objects.none(),
        required=False,
        empty_label="— list —",
        widget=forms.Select(attrs={"aria-label": "List"}),
    )
    status = forms.ChoiceField(
        choices=Contact.Status.choices, required=False, widget=forms.Select(attrs={"aria-label": "Status"})
    )
    date = forms.DateField(required=False, widget=forms.DateInput(attrs={**INPUT, "type": "date"}))
    campaign = forms.ModelChoiceField(
        None,  # the organisation's campaigns, set in __init__
        required=False,
        empty_label="— in the last N days —",
        widget=forms.Select(attrs={"aria-label": "Campaign"}),
    )
    days = forms.IntegerField(
        required=False, min_value=1, max_value=3650, widget=forms.NumberInput(attrs={**INPUT, "placeholder": "days"})
    )

    def __init__(self, *args, organisation: Organisation, **kwargs) -> None:
        super().__init__(*args, organisation=organisation, **kwargs)
        self.fields["campaign"].queryset = engagement_campaigns(organisation)

    def clean(self) -> dict:
        data = super().clean()
        if self.errors or not data.get("rule"):
            return data
        try:
            rule = self._rule(data)
            rule_filter(rule, organisation=self.organisation)
        except RuleIncomplete as error:
            raise ValidationError(str(error), code="incomplete") from None
        except RuleError as error:
            raise ValidationError(str(error)) from None
        data["as_rule"] = rule
        return data

    @property
    def is_incomplete(self) -> bool:
        """Bound, and its only errors are inputs not filled in yet (not worth a red message
        while the user is still typing; see audience_views.segment_preview)."""
        errors = [error for errors in self.errors.as_data().values() for error in errors]
        return bool(errors) and all(error.code == "incomplete" for error in errors)

    @staticmethod
    def _rule(data: dict) -> dict:
        field, _, operator = data["rule"].partition(":")
        if field == "attribute":
            if not data.get("attribute"):
                raise RuleIncomplete("Name the attribute (letters, digits, _ and -).")
            if not ATTRIBUTE_NAME.match(data["attribute"]):
                raise RuleError("Attribute names use only letters, digits, _ and -.")
            field = f"attribute:{data['attribute']}"
            value = data.get("value") or ""
            if operator != "empty" and not value:
                raise RuleIncomplete("Enter the value to compare with.")
        elif field in ("email", "first_name", "last_name"):
            value = data.get("value") or ""
            if not value:
                raise RuleIncomplete("Enter the text to look for.")
        elif field == "list":
            if not data.get("contact_list"):
                raise RuleIncomplete("Choose a list.")
            value = data["contact_list"].pk
        elif field == "status":
            value = data.get("status") or ""
        elif field == "created":
            if not data.get("date"):
                raise RuleIncomplete("Choose a date.")
            value = data["date"].isoformat()
        else:
            if data.get("campaign"):
                value = {"campaign": data["campaign"].pk}
            elif data.get("days"):
                value = {"days": data["days"]}
            else:
                raise RuleIncomplete("Choose a campaign, or a number of days.")
        return {"field": field, "operator": operator, "value": value}

    @staticmethod
    def initial_for(rule: dict) -> dict:
        field, operator, value = str(rule.get("field", "")), rule.get("operator", ""), rule.get("value")
        initial: dict = {}
        if field.startswith("attribute:"):
            initial = {"rule": f"attribute:{operator}", "attribute": field[10:], "value": value}
        elif field == "list":
            initial = {"rule": f"list:{operator}", "contact_list": value}
        elif field == "status":
            initial = {"rule": "status:equals", "status": value}
        elif field == "created":
            initial = {"rule": f"created:{operator}", "date": value}
        elif field == "engagement":
            value = value if isinstance(value, dict) else {}
            initial = {"rule": f"engagement:{operator}", "campaign": value.get("campaign"), "days": value.get("days")}
        else:
            initial = {"rule": f"{field}:{operator}", "value": value}
        return initial


RuleFormSet = formset_factory(RuleForm, extra=0, can_delete=True, max_num=50, validate_max=True)


class SegmentForm(forms.ModelForm):
    class Meta:
        model = Segment
        fields = ["name", "match"]
        widgets = {"name": forms.TextInput(attrs=INPUT), "match": forms.RadioSelect}


def rules_from_formset(formset) -> list[dict]:
    """The rules of the valid, not deleted forms of a bound RuleFormSet."""
    return [
        form.cleaned_data["as_rule"]
        for form in formset.forms
        if form.cleaned_data.get("as_rule") and not form.cleaned_data.get("DELETE")
    ]
