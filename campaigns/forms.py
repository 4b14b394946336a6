from __future__ import annotations

from zoneinfo import ZoneInfo, available_timezones

from django import forms
from django.conf import settings
from django.utils import timezone

from campaigns.models import Campaign, ContactList
from campaigns.rendering import TemplateProblem, compile_template


def sender_choices() -> list[tuple[str, str]]:
    return [(address, address) for address in settings.SENDER_ADDRESSES]


class CampaignForm(forms.ModelForm):
    from_name = forms.CharField(label="Sender name", max_length=100, required=False)
    from_address = forms.ChoiceField(label="Sender address", choices=sender_choices)

    class Meta:
        model = Campaign
        fields = [
            "name",
            "subject",
            "preheader",
            "reply_to",
            "html_body",
            "text_body",
            "include_lists",
            "exclude_lists",
        ]
        widgets = {
            "html_body": forms.Textarea(attrs={"rows": 14, "class": "textarea is-family-monospace"}),
            "text_body": forms.Textarea(attrs={"rows": 6, "class": "textarea is-family-monospace"}),
            "include_lists": forms.CheckboxSelectMultiple,
            "exclude_lists": forms.CheckboxSelectMultiple,
        }
        help_texts = {
            "html_body": "Merge fields: {{ first_name }}, {{ last_name }}, {{ email }}, {{ attributes.club }}, "
            '{{ unsubscribe_url }}, {{ preferences_url }}; defaults with {{ first_name|default:"member" }}.',
            "text_body": "Leave empty to generate it from the HTML.",
            "include_lists": "Send to subscribed contacts of these lists.",
            "exclude_lists": "Leave out anyone subscribed to these lists.",
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["include_lists"].queryset = ContactList.objects.all()
        self.fields["exclude_lists"].queryset = ContactList.objects.all()
        self.fields["reply_to"].widget = forms.EmailInput()
        for field in self.fields.values():
            if isinstance(field.widget, (forms.TextInput, forms.EmailInput)):
                field.widget.attrs.setdefault("class", "input")
        if self.instance.pk and self.instance.from_email:
            name, _, address = self.instance.from_email.rpartition("<")
            self.initial.setdefault("from_name", name.strip().strip('"'))
            self.initial.setdefault("from_address", address.rstrip(">") if address else self.instance.from_email)
        elif settings.SENDER_ADDRESSES:
            self.initial.setdefault("from_address", settings.SENDER_ADDRESSES[0])

    def _clean_template(self, field: str, label: str) -> str:
        value = self.cleaned_data.get(field, "")
        try:
            compile_template(value, part=label)
        except TemplateProblem as problem:
            raise forms.ValidationError(str(problem)) from None
        return value

    def clean_subject(self) -> str:
        return self._clean_template("subject", "Subject")

    def clean_html_body(self) -> str:
        return self._clean_template("html_body", "HTML body")

    def clean_text_body(self) -> str:
        return self._clean_template("text_body", "Plain-text body")

    def save(self, commit: bool = True) -> Campaign:
        name = self.cleaned_data.get("from_name", "").replace('"', "").strip()
        address = self.cleaned_data["from_address"]
        self.instance.from_email = f'"{name}" <{address}>' if name else address
        return super().save(commit=commit)


class ScheduleForm(forms.Form):
    send_at = forms.DateTimeField(
        label="Send at",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local", "class": "input"}, format="%Y-%m-%dT%H:%M"),
    )
    time_zone = forms.ChoiceField(label="Time zone", choices=[])

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        zones = sorted(available_timezones())
        self.fields["time_zone"].choices = [(zone, zone) for zone in zones]

    def clean(self):
        data = super().clean()
        when, zone = data.get("send_at"), data.get("time_zone")
        if when and zone:
            naive = timezone.make_naive(when) if timezone.is_aware(when) else when
            data["send_at"] = timezone.make_aware(naive, ZoneInfo(zone))
        return data
