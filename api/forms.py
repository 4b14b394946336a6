from __future__ import annotations

from django import forms

from api.models import KEY_ROLES


class KeyForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="Which program uses it, e.g. “Membership site nightly sync”.")
    role = forms.ChoiceField(
        choices=KEY_ROLES,
        help_text="Viewer reads; Editor also changes contacts and lists; Sender also sends.",
    )
    expires_on = forms.DateField(
        required=False,
        label="Expires on",
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Leave empty for a key that does not expire.",
    )
