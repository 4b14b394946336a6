from __future__ import annotations

import re
from zoneinfo import ZoneInfo, available_timezones

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils import timezone
from django.utils.html import format_html

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
from organisations.senders import sender_allowed, sender_refusal, shared_addresses, verified_senders


def sender_choices(organisation: Organisation | None = None) -> list[tuple[str, str]]:
    """The addresses a campaign may be sent from: the organisation's verified addresses, an address
    at each of its verified domains ("@domain": staff type the part before the @), and the
    installation's shared addresses, which every organisation may always use."""
    shared = [(address, address) for address in shared_addresses()]
    if organisation is None:
        return shared
    domains, addresses = verified_senders(organisation)
    own = [(address, address) for address in addresses]
    own += [(f"@{domain}", f"…@{domain} (type the part before @)") for domain in domains]
    return own + ([(address, f"{address} (shared)") for address, _ in shared] if own else shared)


class SenderAddressWidget(forms.MultiWidget):
    """The part before the @ (used with a verified domain) beside the list of senders.

    A plain ``from_address=<address>`` in the data is read as the whole address (scripts and older
    forms post one field)."""

    def __init__(self, choices=(), domains: bool = False) -> None:
        local = (
            forms.TextInput(attrs={"class": "input", "placeholder": "news", "aria-label": "Part before @"})
            if domains
            else forms.HiddenInput()
        )
        super().__init__([local, forms.Select(choices=choices)])

    def decompress(self, value):
        if not value:
            return ["", None]
        offered = {choice for choice, _ in self.widgets[1].choices}
        local, _, domain = value.rpartition("@")
        if value not in offered and f"@{domain}" in offered:
            return [local, f"@{domain}"]
        return ["", value]

    def id_for_label(self, id_):
        # The label names the list when the part before @ is hidden (no verified domain).
        if id_ and isinstance(self.widgets[0], forms.HiddenInput):
            return f"{id_}_1"
        return super().id_for_label(id_)

    def value_from_datadict(self, data, files, name):
        if name in data:
            return ["", data.get(name)]
        return super().value_from_datadict(data, files, name)

    def render(self, name, value, attrs=None, renderer=None):
        context = self.get_context(name, value, attrs)["widget"]["subwidgets"]
        local = self.widgets[0].render(context[0]["name"], context[0]["value"], context[0]["attrs"])
        chosen = self.widgets[1].render(context[1]["name"], context[1]["value"], context[1]["attrs"])
        if isinstance(self.widgets[0], forms.HiddenInput):
            return format_html('{}<div class="select is-fullwidth">{}</div>', local, chosen)
        return format_html(
            '<div class="field has-addons mb-0"><div class="control is-expanded">{}</div>'
            '<div class="control"><div class="select">{}</div></div></div>',
            local,
            chosen,
        )


class SenderAddressField(forms.MultiValueField):
    def __init__(self, *, choices, domains: bool, **kwargs) -> None:
        fields = (forms.CharField(required=False, max_length=64), forms.CharField(max_length=254))
        super().__init__(fields, require_all_fields=False, widget=SenderAddressWidget(choices, domains), **kwargs)

    def compress(self, data_list) -> str:
        local, chosen = [*data_list, "", ""][:2]
        local, chosen = (local or "").strip(), (chosen or "").strip()
        if chosen.startswith("@"):
            if not local:
                raise ValidationError(f"Type the part of the address before @{chosen[1:]}, e.g. news.")
            chosen = f"{local.rstrip('@')}{chosen}"
        try:
            validate_email(chosen)
        except ValidationError:
            raise ValidationError(f"“{chosen}” is not an email address.") from None
        return chosen


class CampaignForm(forms.ModelForm):
    from_name = forms.CharField(label="Sender name", max_length=100, required=False)
    from_address = forms.CharField(label="Sender address")  # replaced per organisation in __init__
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
        self._sender_fields(organisation)

    def _sender_fields(self, organisation: Organisation) -> None:
        """The sender address offered per organisation; a new campaign starts with the organisation's
        default sender name and reply-to (its page) and its first own verified address, else a shared one."""
        choices = sender_choices(organisation)
        current = ""
        if self.instance.pk and self.instance.from_email:
            name, _, address = self.instance.from_email.rpartition("<")
            current = address.rstrip(">").strip() if address else self.instance.from_email.strip()
            self.initial.setdefault("from_name", name.strip().strip('"'))
            if not sender_allowed(organisation, current):
                choices.append((current, f"{current} (not a verified sender: choose another)"))
        else:
            self.initial.setdefault("from_name", organisation.sender_name)
            self.initial.setdefault("reply_to", organisation.reply_to)
        first = next((value for value, _ in choices if not value.startswith("@")), "")
        self.initial.setdefault("from_address", current or first)
        domains = any(value.startswith("@") for value, _ in choices)
        self.fields["from_address"] = SenderAddressField(
            label="Sender address",
            choices=choices,
            domains=domains,
            help_text=(
                "Your verified senders (Organisation → Senders) and the shared addresses."
                if len(choices) > len(shared_addresses())
                else "A shared address of this installation; add your own domain under Organisation → Senders."
            ),
        )

    def clean_from_address(self) -> str:
        address = self.cleaned_data.get("from_address", "")
        refusal = sender_refusal(self.organisation, address)
        if refusal:
            raise forms.ValidationError(refusal)
        return address

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
