from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model
from django.core.validators import MaxValueValidator, MinValueValidator

from organisations.models import ROLE_HELP, AuditEntry, Organisation, Role

INPUT = {"class": "input"}
ROLE_CHOICES = [(role.value, f"{role.label}: {ROLE_HELP[role]}") for role in Role]


class OrganisationForm(forms.ModelForm):
    class Meta:
        model = Organisation
        fields = ["name", "postal_address", "sender_name", "reply_to", "is_active", "send_weight"]
        widgets = {
            "name": forms.TextInput(attrs=INPUT),
            "postal_address": forms.Textarea(attrs={"class": "textarea", "rows": 3}),
            "sender_name": forms.TextInput(attrs=INPUT),
            "reply_to": forms.EmailInput(attrs=INPUT),
        }
        help_texts = {
            "postal_address": "Shown in the footer of your campaigns (the law asks for it in bulk mail).",
            "sender_name": "The name new campaigns are sent from, e.g. “Riverside Rowing Club”.",
            "reply_to": "Where replies to new campaigns go.",
            "is_active": "Switched off, nobody can open the organisation any more; nothing is deleted.",
            "send_weight": "When several organisations send at the same time, the send rate is split in "
            "proportion to these numbers (1 each by default: equal shares). Only site operators change it.",
        }

    def __init__(self, *args, operator: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        weight = self.fields["send_weight"]
        weight.min_value, weight.max_value = 1, 100
        weight.widget = forms.NumberInput(attrs={**INPUT, "min": 1, "max": 100})
        weight.validators += [MinValueValidator(1), MaxValueValidator(100)]
        weight.disabled = not operator  # administrators see it; site operators set it


class NewOrganisationForm(forms.Form):
    name = forms.CharField(max_length=200, widget=forms.TextInput(attrs=INPUT))
    slug = forms.SlugField(
        max_length=60,
        required=False,
        widget=forms.TextInput(attrs=INPUT),
        help_text="A short name for addresses and commands; made from the name if empty.",
    )


class GrantForm(forms.Form):
    username = forms.CharField(max_length=150, label="Username", widget=forms.TextInput(attrs=INPUT))
    role = forms.ChoiceField(choices=ROLE_CHOICES, initial=Role.VIEWER)

    def clean_username(self):
        username = self.cleaned_data["username"].strip()
        user = get_user_model().objects.filter(username=username, is_active=True).first()
        if user is None:
            raise forms.ValidationError(
                f"There is no active user “{username}”. A site operator creates accounts; then give them a role here."
            )
        return user


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class AuditFilterForm(forms.Form):
    action = forms.ChoiceField(choices=[("", "Any action"), *AuditEntry.Action.choices], required=False)
    user = forms.CharField(max_length=150, required=False, label="User", widget=forms.TextInput(attrs=INPUT))
    date_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={**INPUT, "type": "date"}))
    date_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={**INPUT, "type": "date"}))

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("date_from") and cleaned.get("date_to") and cleaned["date_from"] > cleaned["date_to"]:
            self.add_error("date_to", "The end date is before the start date.")
        return cleaned

    def filters(self) -> dict:
        """The selector's keyword arguments from the fields that are valid (the others are shown with
        their error and filter by nothing)."""
        if self.is_bound:
            self.is_valid()
        data = getattr(self, "cleaned_data", {})
        return {
            "action": data.get("action", ""),
            "username": data.get("user", "").strip(),
            "date_from": data.get("date_from"),
            "date_to": data.get("date_to"),
        }


class QuotaForm(forms.ModelForm):
    """An organisation's quotas, set by site operators or its parent organisation's administrators."""

    class Meta:
        model = Organisation
        fields = ["daily_quota", "monthly_quota"]
        widgets = {
            "daily_quota": forms.NumberInput(attrs={**INPUT, "min": 0}),
            "monthly_quota": forms.NumberInput(attrs={**INPUT, "min": 0}),
        }
        help_texts = {
            "daily_quota": "Messages it may send a day (campaigns, single messages and tests). Empty: no limit.",
            "monthly_quota": "Messages it may send in a calendar month. Empty: no limit.",
        }
