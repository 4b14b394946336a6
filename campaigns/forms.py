from __future__ import annotations

import re
from zoneinfo import ZoneInfo, available_timezones

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils import timezone

from audiences.models import normalise_email
from campaigns.composer.images import IMAGE_MAX_WIDTH
from campaigns.composer.layouts import default_layout
from campaigns.composer.rendering import (
    TemplateProblem,
    check_campaign_source,
    check_encoded_delimiters,
    check_layout,
    compile_template,
    markdown_to_html,
    unescape_template_tokens,
)
from campaigns.models import BODY_MODES, Campaign, Layout
from campaigns.selectors import layouts_of, lists_of, segments_of
from organisations.models import Organisation


def sender_choices() -> list[tuple[str, str]]:
    return [(address, address) for address in settings.SENDER_ADDRESSES]


class CampaignForm(forms.ModelForm):
    from_name = forms.CharField(label="Sender name", max_length=100, required=False)
    from_address = forms.ChoiceField(label="Sender address", choices=sender_choices)
    # The image button's limits, shown in the editor's image dialog. Images are inserted at most as
    # wide as the default layout's content column (600 px card, 24 px padding either side).
    image_max_width = IMAGE_MAX_WIDTH
    image_display_width = 552

    class Meta:
        model = Campaign
        fields = [
            "name",
            "subject",
            "preheader",
            "reply_to",
            "layout",
            "body_mode",
            "body_source",
            "html_body",
            "text_body",
            "include_lists",
            "exclude_lists",
            "include_segments",
            "exclude_segments",
        ]
        widgets = {
            "body_mode": forms.RadioSelect,
            "body_source": forms.Textarea(attrs={"rows": 14, "class": "textarea is-family-monospace"}),
            "html_body": forms.Textarea(attrs={"rows": 14, "class": "textarea is-family-monospace"}),
            "text_body": forms.Textarea(attrs={"rows": 6, "class": "textarea is-family-monospace"}),
            "include_lists": forms.CheckboxSelectMultiple,
            "exclude_lists": forms.CheckboxSelectMultiple,
            "include_segments": forms.CheckboxSelectMultiple,
            "exclude_segments": forms.CheckboxSelectMultiple,
        }
        help_texts = {
            "html_body": "Merge fields: {{ first_name }}, {{ last_name }}, {{ email }}, {{ attributes.club }}, "
            "{{ unsubscribe_url }}, {{ preferences_url }}, {{ view_online_url }}; "
            'defaults with {{ first_name|default:"member" }}.',
            "text_body": "Leave empty to generate it from the HTML (links become “text (address)”).",
            "body_source": "Markdown. Merge fields work as in HTML, e.g. [Unsubscribe]({{ unsubscribe_url }}).",
            "preheader": "The preview line inboxes show after the subject. Merge fields allowed.",
            "layout": "Header, footer (unsubscribe link, postal address), colours and logo around the body.",
            "include_lists": "Send to subscribed contacts of these lists.",
            "exclude_lists": "Leave out anyone subscribed to these lists.",
            "include_segments": "Also send to contacts matching these segments (Audiences → Segments).",
            "exclude_segments": "Leave out contacts matching these segments.",
        }

    def __init__(self, *args, organisation: Organisation, **kwargs):
        super().__init__(*args, **kwargs)
        # Only the organisation's own layouts, lists and segments are offered: another
        # organisation's id posted anyway is "not one of the available choices" (a field error).
        self.organisation = organisation
        self.fields["layout"].queryset = layouts_of(organisation)
        self.fields["layout"].empty_label = "No layout (the body is the whole message)"
        if not self.instance.pk:
            self.initial.setdefault("layout", default_layout(organisation).pk)
            self.initial.setdefault("body_mode", "rich")
        self.fields["body_mode"].label = "Write the body as"
        self.fields["body_mode"].choices = BODY_MODES
        # Markdown campaigns store generated HTML; the form fills it in clean().
        self.fields["html_body"].required = False
        self.fields["body_source"].label = "Body (Markdown)"
        for name in ("include_lists", "exclude_lists"):
            self.fields[name].queryset = lists_of(organisation)
            self.fields[name].error_messages["invalid_choice"] = (
                "Choose lists of your organisation: %(value)s is not one."
            )
        for name in ("include_segments", "exclude_segments"):
            self.fields[name].queryset = segments_of(organisation)
            self.fields[name].error_messages["invalid_choice"] = (
                "Choose segments of your organisation: %(value)s is not one."
            )
        self.fields["layout"].error_messages["invalid_choice"] = "Choose one of your organisation's layouts."
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

    def clean_preheader(self) -> str:
        return self._clean_template("preheader", "Preheader")

    def clean_html_body(self) -> str:
        mode = self.cleaned_data.get("body_mode")
        if mode == "markdown":
            return self.cleaned_data.get("html_body", "")  # replaced by the Markdown's HTML in clean()
        if mode == "rich":
            self.cleaned_data["html_body"] = unescape_template_tokens(self.cleaned_data.get("html_body", ""))
        return self._clean_template("html_body", "HTML body")

    def clean_body_source(self) -> str:
        if self.cleaned_data.get("body_mode") != "markdown":
            return self.cleaned_data.get("body_source", "")
        return self._clean_template("body_source", "Markdown body")

    def clean_layout(self) -> Layout | None:
        layout = self.cleaned_data.get("layout")
        if layout is not None:
            try:
                check_layout(layout.html, css=layout.css)
            except TemplateProblem as problem:
                raise forms.ValidationError(f"This layout cannot be used until it is fixed: {problem}") from None
        return layout

    def clean(self):
        data = super().clean()
        mode = data.get("body_mode")
        if mode == "markdown" and "body_source" in data:
            if not data["body_source"].strip():
                self.add_error("body_source", "Write the body.")
            else:
                data["html_body"] = markdown_to_html(data["body_source"])
        elif mode in {"rich", "html"} and "html_body" in data and not data["html_body"].strip():
            self.add_error("html_body", "Write the body.")
        self._check_rendered_source(data)
        return data

    @property
    def image_max_mb(self) -> int:
        return settings.IMAGE_UPLOAD_MAX_MB

    def _check_rendered_source(self, data: dict) -> None:
        """What will be compiled at send (body in its layout, after the CSS inliner), checked now."""
        body_field = "body_source" if data.get("body_mode") == "markdown" else "html_body"
        if self.has_error(body_field) or any(self.has_error(name) for name in ("preheader", "layout")):
            return
        try:
            if body_field == "body_source":
                check_encoded_delimiters(data.get("body_source", ""), part="Markdown body")
            check_campaign_source(
                html_body=data.get("html_body", ""),
                preheader=data.get("preheader", ""),
                layout=data.get("layout"),
                part="Markdown body" if body_field == "body_source" else "HTML body",
            )
        except TemplateProblem as problem:
            self.add_error(body_field, str(problem))

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


# --- composer: test sends, layouts, attachments, reusable templates ---------------------------------

TEST_SEND_LIMIT = 10


class TestSendForm(forms.Form):
    addresses = forms.CharField(
        label="Send a test to",
        widget=forms.Textarea(attrs={"rows": 2, "class": "textarea", "placeholder": "you@example.com, colleague@…"}),
        help_text=f"Up to {TEST_SEND_LIMIT} addresses, separated by commas or new lines. Subject starts with [TEST].",
    )

    def clean_addresses(self) -> list[str]:
        typed = [part for part in re.split(r"[\s,;]+", self.cleaned_data["addresses"]) if part]
        addresses = list(dict.fromkeys(normalise_email(address) for address in typed))
        if not addresses:
            raise forms.ValidationError("Type at least one address.")
        if len(addresses) > TEST_SEND_LIMIT:
            raise forms.ValidationError(f"At most {TEST_SEND_LIMIT} addresses per test send ({len(addresses)} typed).")
        invalid = []
        for address in addresses:
            try:
                validate_email(address)
            except ValidationError:
                invalid.append(address)
        if invalid:
            raise forms.ValidationError(f"Not valid email addresses: {', '.join(invalid)}")
        return addresses


HEX_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")


class LayoutForm(forms.ModelForm):
    class Meta:
        model = Layout
        fields = ["name", "primary_colour", "background_colour", "text_colour", "logo_url", "html", "css"]
        widgets = {
            "primary_colour": forms.TextInput(attrs={"type": "color", "class": "input colour-input"}),
            "background_colour": forms.TextInput(attrs={"type": "color", "class": "input colour-input"}),
            "text_colour": forms.TextInput(attrs={"type": "color", "class": "input colour-input"}),
            "html": forms.Textarea(attrs={"rows": 18, "class": "textarea is-family-monospace"}),
            "css": forms.Textarea(attrs={"rows": 10, "class": "textarea is-family-monospace"}),
        }
        help_texts = {
            "html": "Put {{ content }} where the campaign body goes and keep an unsubscribe link "
            '(<a href="{{ unsubscribe_url }}">). Also available: {{ preheader }}, {{ logo }}, {{ postal_address }}, '
            "the colours and every merge field.",
            "css": "Inlined into the elements when a campaign is compiled. Colours: {{ primary_colour }}, "
            "{{ background_colour }}, {{ text_colour }}.",
            "logo_url": "An image address (https://…) shown in the header; empty shows the sender's name.",
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            if isinstance(field.widget, (forms.TextInput, forms.URLInput)):
                field.widget.attrs.setdefault("class", "input")

    def _clean_colour(self, name: str) -> str:
        value = self.cleaned_data.get(name, "")
        if not HEX_COLOUR.fullmatch(value):
            raise forms.ValidationError("Use a colour like #1f4e8c.")
        return value.lower()

    def clean_primary_colour(self) -> str:
        return self._clean_colour("primary_colour")

    def clean_background_colour(self) -> str:
        return self._clean_colour("background_colour")

    def clean_text_colour(self) -> str:
        return self._clean_colour("text_colour")

    def clean(self):
        data = super().clean()
        if "html" in data:
            try:
                check_layout(data["html"], css=data.get("css", ""))
            except TemplateProblem as problem:
                field = "css" if str(problem).startswith("Layout CSS") else "html"
                self.add_error(field, str(problem))
        return data


class AttachmentForm(forms.Form):
    file = forms.FileField(label="Attach a file")


class SaveTemplateForm(forms.Form):
    name = forms.CharField(label="Template name", max_length=200, widget=forms.TextInput(attrs={"class": "input"}))
