from __future__ import annotations

import factory

from campaigns.models import Campaign, Contact, ContactList, Subscription


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


def list_with_contacts(count: int, *, name: str | None = None, **contact_fields) -> ContactList:
    contact_list = ContactListFactory(**({"name": name} if name else {}))
    contacts = ContactFactory.create_batch(count, **contact_fields)
    Subscription.objects.bulk_create(Subscription(contact=c, contact_list=contact_list) for c in contacts)
    return contact_list


def campaign_to(contact_list: ContactList, **fields) -> Campaign:
    campaign = CampaignFactory(**fields)
    campaign.include_lists.add(contact_list)
    return campaign
