from __future__ import annotations

import factory
from django.utils import timezone

from audiences.models import Contact, ContactList, ImportJob, Segment, Subscription
from campaigns.models import Campaign, Layout, Recipient
from tracking.models import Event


class ContactFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Contact

    email = factory.Sequence(lambda n: f"person{n}@example.org")
    first_name = factory.Sequence(lambda n: f"First{n}")
    last_name = "Example"
    attributes = factory.LazyFunction(lambda: {"club": "Rowing"})


class ContactListFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ContactList

    name = factory.Sequence(lambda n: f"List {n}")


class CampaignFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Campaign

    name = factory.Sequence(lambda n: f"Campaign {n}")
    subject = "Hello {{ first_name }}"
    from_email = '"Cobalt Club" <news@cobalt.example>'
    html_body = '<p>Hi {{ first_name|default:"member" }}, <a href="https://example.com/x">read</a></p>'


class RecipientFactory(factory.django.DjangoModelFactory):
    """A recipient as the snapshot makes it (queued, the contact's address); ``sent=True`` for one
    handed to SES, with its message id."""

    class Meta:
        model = Recipient

    campaign = factory.SubFactory(CampaignFactory)
    contact = factory.SubFactory(ContactFactory)
    email = factory.LazyAttribute(lambda recipient: recipient.contact.email)

    class Params:
        sent = factory.Trait(
            status=Recipient.Status.SENT,
            attempts=1,
            sent_at=factory.LazyFunction(timezone.now),
            ses_message_id=factory.Sequence(lambda n: f"ses-message-{n}"),
        )


class EventFactory(factory.django.DjangoModelFactory):
    """A stored SES event (a delivery unless told) for a recipient, with its campaign and address."""

    class Meta:
        model = Event

    sns_message_id = factory.Sequence(lambda n: f"sns-message-{n}")
    event_type = Event.Type.DELIVERY
    recipient = factory.SubFactory(RecipientFactory, sent=True)
    campaign = factory.LazyAttribute(lambda event: event.recipient.campaign if event.recipient else None)
    email = factory.LazyAttribute(lambda event: event.recipient.email if event.recipient else "")
    ses_message_id = factory.LazyAttribute(
        lambda event: (event.recipient.ses_message_id or "") if event.recipient else ""
    )
    occurred_at = factory.LazyFunction(timezone.now)


class SegmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Segment

    name = factory.Sequence(lambda n: f"Segment {n}")
    rules = factory.LazyFunction(lambda: [{"field": "attribute:club", "operator": "equals", "value": "Rowing"}])


class LayoutFactory(factory.django.DjangoModelFactory):
    """A minimal valid layout: the body and the unsubscribe link the footer must carry."""

    class Meta:
        model = Layout

    name = factory.Sequence(lambda n: f"Layout {n}")
    html = (
        "<html><head><title></title></head><body>{{ logo }}{{ content }}"
        '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>'
    )


class ImportJobFactory(factory.django.DjangoModelFactory):
    """An uploaded CSV whose columns were confirmed: queued for ``audiences.imports.import_job_run``
    (which guesses the columns from the header when ``column_mapping`` is empty). The file goes to
    MEDIA_ROOT: point it at a temporary folder."""

    class Meta:
        model = ImportJob

    file = factory.django.FileField(filename="contacts.csv", data=b"email,first_name\nada@example.org,Ada\n")
    original_name = "contacts.csv"
    contact_list = factory.SubFactory(ContactListFactory)
    # An import belongs to its list's organisation (pass contact_list__organisation=… for another).
    organisation = factory.LazyAttribute(lambda job: job.contact_list.organisation)
    status = ImportJob.Status.QUEUED
    size_bytes = factory.LazyAttribute(lambda job: job.file.size)


def list_with_contacts(count: int, *, name: str | None = None, **contact_fields) -> ContactList:
    """``organisation=`` (with several organisations) puts the list and its contacts in it."""
    list_fields = {key: contact_fields[key] for key in ("organisation",) if key in contact_fields}
    contact_list = ContactListFactory(**({"name": name} if name else {}), **list_fields)
    contacts = ContactFactory.create_batch(count, **contact_fields)
    Subscription.objects.bulk_create(Subscription(contact=c, contact_list=contact_list) for c in contacts)
    return contact_list


def campaign_to(contact_list: ContactList, **fields) -> Campaign:
    campaign = CampaignFactory(**fields)
    campaign.include_lists.add(contact_list)
    return campaign
