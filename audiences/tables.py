"""django-tables2 tables of the audience pages (rendered by templates/tables/bulma.html)."""

from __future__ import annotations

import django_tables2 as tables
from django.db.models.functions import Lower
from django.urls import reverse
from django.utils.html import format_html

from audiences.models import Contact, ContactList, ImportJob, Segment, Suppression
from audiences.selectors import OTHER_MAIL, suppression_cause

TABLE_ATTRS = {"class": "table is-fullwidth is-hoverable is-narrow is-striped"}
STATUS_TAGS = {
    "active": "is-success",
    "unsubscribed": "is-warning",
    "bounced": "is-danger",
    "complained": "is-danger",
}


def _status_tag(value: str, label: str) -> str:
    return format_html('<span class="tag {} is-light">{}</span>', STATUS_TAGS.get(value, "is-light"), label)


class ContactTable(tables.Table):
    selected = tables.CheckBoxColumn(
        accessor="pk",
        attrs={
            "th__input": {"data-select-all": "selected", "aria-label": "Select all on this page"},
            "td__input": {"aria-label": lambda record: f"Select {record.email}"},
        },
    )
    email = tables.Column(linkify=("audiences:contact_edit", {"pk": tables.A("pk")}))
    first_name = tables.Column("First name")
    last_name = tables.Column("Last name")
    status = tables.Column()
    created_at = tables.DateTimeColumn(verbose_name="Added", format="j M Y")

    class Meta:
        model = Contact
        fields = ("selected", "email", "first_name", "last_name", "status", "created_at")
        attrs = TABLE_ATTRS
        empty_text = "No contact matches."
        order_by = ("email",)

    def render_status(self, value: str, record: Contact) -> str:
        return _status_tag(value, record.get_status_display())

    def order_last_name(self, queryset, is_descending: bool):
        """Case-insensitive, through the ``lower(last_name)`` index (a full sort at 1M contacts)."""
        key = Lower("last_name")
        return queryset.order_by(key.desc() if is_descending else key.asc(), "-pk" if is_descending else "pk"), True


class ContactListTable(tables.Table):
    name = tables.Column(linkify=("audiences:list_detail", {"pk": tables.A("pk")}))
    subscribed_count = tables.Column("Subscribed")
    unsubscribed_count = tables.Column("Unsubscribed")
    description = tables.Column(orderable=False)
    created_at = tables.DateTimeColumn(verbose_name="Created", format="j M Y")

    class Meta:
        model = ContactList
        fields = ("name", "subscribed_count", "unsubscribed_count", "description", "created_at")
        attrs = TABLE_ATTRS
        empty_text = "No lists yet: create one above, or import a CSV file."


class SegmentTable(tables.Table):
    name = tables.Column(linkify=("audiences:segment_edit", {"pk": tables.A("pk")}))
    match = tables.Column("Combine")
    rule_count = tables.Column("Rules", accessor="rules", orderable=False)
    updated_at = tables.DateTimeColumn(verbose_name="Changed", format="j M Y H:i")

    class Meta:
        model = Segment
        fields = ("name", "match", "rule_count", "updated_at")
        attrs = TABLE_ATTRS
        empty_text = "No segments yet."

    def render_rule_count(self, value: list) -> int:
        return len(value or [])


class SuppressionTable(tables.Table):
    """Whose mail caused each entry: the organisation's own, a child's (named), or "another
    organisation's mail": other clubs are not revealed, nor their notes and staff."""

    email = tables.Column()
    reason = tables.Column()
    caused_by = tables.Column("Caused by", accessor="organisation_id", empty_values=(), orderable=False)
    note = tables.Column(orderable=False)
    created_by = tables.Column("Added by", default="SES / system")
    created_at = tables.DateTimeColumn(verbose_name="Added", format="j M Y H:i")
    remove = tables.Column(empty_values=(), orderable=False, verbose_name="")

    class Meta:
        model = Suppression
        fields = ("email", "reason", "caused_by", "note", "created_by", "created_at")
        attrs = TABLE_ATTRS
        empty_text = "No suppressed address matches."

    def __init__(self, *args, causes: dict[int | None, str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.causes = causes

    def _foreign(self, record: Suppression) -> bool:
        return suppression_cause(self.causes, record.organisation_id) == OTHER_MAIL

    def render_caused_by(self, record: Suppression) -> str:
        return suppression_cause(self.causes, record.organisation_id)

    def render_note(self, value: str, record: Suppression) -> str:
        return "" if self._foreign(record) else value

    def render_created_by(self, value, record: Suppression) -> str:
        return "another organisation" if self._foreign(record) else str(value)

    def render_remove(self, record: Suppression) -> str:
        url = reverse("audiences:suppression_remove", args=[record.pk])
        return format_html('<a class="button is-small is-light is-danger" href="{}">Remove…</a>', url)


class ImportJobTable(tables.Table):
    original_name = tables.Column("File", linkify=("audiences:import_detail", {"pk": tables.A("pk")}))
    contact_list = tables.Column("List")
    status = tables.Column()
    created = tables.Column("New")
    updated = tables.Column("Updated")
    rejected = tables.Column("Rejected")
    created_at = tables.DateTimeColumn(verbose_name="Uploaded", format="j M Y H:i")

    class Meta:
        model = ImportJob
        fields = ("original_name", "contact_list", "status", "created", "updated", "rejected", "created_at")
        attrs = TABLE_ATTRS
        empty_text = "No imports yet."
