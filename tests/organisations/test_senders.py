"""Sender identities (/organisations/senders/): administrators add a domain or an address, Cobalt Mail
creates it in SES (SESv2), shows the DNS records to publish, asks SES until it is verified, and
removes it again.

The local SES (moto, the ``ses`` fixture) creates, reads and deletes identities but never verifies
one by itself (its ``VerifiedForSendingStatus`` stays false) and gives no DKIM tokens; the tests
play SES seeing the DNS records by setting that identity's state in moto's backend (the server runs
in this process). moto has no ``PutEmailIdentityMailFromAttributes``: the custom MAIL FROM path
runs against the tests' SES stub (tests/ses_stub.py), which implements the identity calls as SES
answers them (three DKIM tokens, pending until ``identity_verified``).
"""

from __future__ import annotations

import datetime
import html

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone
from django_q.models import Schedule
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ses.models import ses_backends

from organisations import senders
from organisations.models import AuditEntry, Role, SenderIdentity

pytestmark = pytest.mark.django_db

URL = "/organisations/senders/"
TOKENS = ["tok1" * 8, "tok2" * 8, "tok3" * 8]


def text(response) -> str:
    return html.unescape(response.content.decode())


def moto_identity(name: str):
    return ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].email_identities[name]


def ses_sees_dns(name: str, *, tokens: list[str] | None = None, verified: bool = True) -> None:
    """What SES does when it finds the DKIM records (or, for an address, when its link is clicked)."""
    identity = moto_identity(name)
    identity.verified_for_sending_status = verified
    identity.dkim_attributes["Status"] = "SUCCESS" if verified else "PENDING"
    if tokens is not None:
        identity.dkim_attributes["Tokens"] = tokens


def add(client, value: str, kind: str = "domain", mail_from: str = ""):
    return client.post(URL, {"kind": kind, "value": value, "mail_from": mail_from})


def test_adding_a_domain_creates_it_in_ses_and_audits_it(ses, admin_client, club, club_admin):
    response = add(admin_client, " Riverside.Example. ")

    assert response.status_code == 302
    identity = SenderIdentity.objects.get()
    assert (identity.organisation, identity.kind, identity.value) == (club, "domain", "riverside.example")
    assert identity.status == "pending" and identity.created_by == club_admin
    assert identity.last_checked_at is not None  # asked SES at once
    assert moto_identity("riverside.example").identity_type == "DOMAIN"
    entry = AuditEntry.objects.get(object_type="sender_identity")
    assert entry.summary == "Added the sender domain riverside.example" and entry.organisation == club


def test_the_page_shows_the_three_dkim_records_and_what_is_missing(ses, admin_client):
    add(admin_client, "riverside.example")
    ses_sees_dns("riverside.example", tokens=TOKENS, verified=False)  # SES gives the tokens
    admin_client.post(reverse("organisations:sender_check", args=[SenderIdentity.objects.get().pk]))

    page = text(admin_client.get(URL))

    assert "SES has not seen the DKIM records yet: publish the three CNAME records below" in page
    for token in TOKENS:
        assert f'value="{token}._domainkey.riverside.example"' in page
        assert f'value="{token}.dkim.amazonses.com"' in page
    assert page.count('data-record-type="CNAME"') == 3
    assert "Waiting for verification" in page


def test_check_now_marks_the_domain_verified_once_ses_saw_the_records(ses, admin_client):
    add(admin_client, "riverside.example")
    identity = SenderIdentity.objects.get()
    ses_sees_dns("riverside.example", tokens=TOKENS)

    admin_client.post(reverse("organisations:sender_check", args=[identity.pk]))

    identity.refresh_from_db()
    assert (identity.status, identity.dkim_status, identity.dkim_tokens) == ("verified", "SUCCESS", TOKENS)
    page = text(admin_client.get(URL))
    assert "Verified: campaigns may be sent from any address at riverside.example." in page
    assert "SES has not seen" not in page


def test_an_address_waits_for_its_verification_link(ses, admin_client):
    add(admin_client, "Secretary@Riverside.Example", kind="address")

    identity = SenderIdentity.objects.get()
    assert (identity.kind, identity.value, identity.status) == ("address", "secretary@riverside.example", "pending")
    page = text(admin_client.get(URL))
    assert "SES sent a verification email to secretary@riverside.example: click its link." in page
    assert 'data-testid="sender-records"' not in page  # no DNS records for an address


def test_another_organisation_cannot_add_a_domain_that_is_taken(ses, admin_client, other_club, make_member, client):
    add(admin_client, "riverside.example")
    client.force_login(make_member("hilda", other_club, Role.ADMINISTRATOR))

    response = add(client, "RIVERSIDE.example")

    assert response.status_code == 400
    assert "riverside.example is already a sender of another organisation" in text(response)
    assert SenderIdentity.objects.count() == 1
    other = add(client, "news@riverside.example", kind="address")  # nor an address at it
    assert "riverside.example is a sender domain of another organisation" in text(other)


def test_the_shared_domain_and_bad_names_are_refused(ses, admin_client, settings):
    settings.SENDER_ADDRESSES = ["news@cobalt.example"]

    shared = text(add(admin_client, "cobalt.example"))
    not_a_domain = text(add(admin_client, "river side"))
    an_address_as_domain = text(add(admin_client, "news@riverside.example"))

    assert "cobalt.example is the installation's shared sender domain" in shared
    assert "is not a domain name" in not_a_domain
    assert "Type the domain only" in an_address_as_domain
    assert not SenderIdentity.objects.exists()


def test_removing_deletes_it_in_ses_after_a_confirmation(ses, admin_client, club):
    add(admin_client, "riverside.example")
    identity = SenderIdentity.objects.get()
    remove = reverse("organisations:sender_remove", args=[identity.pk])

    assert "Remove riverside.example?" in text(admin_client.get(remove))
    assert SenderIdentity.objects.exists()  # GET only asks
    admin_client.post(remove)

    assert not SenderIdentity.objects.exists()
    assert "riverside.example" not in ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].email_identities
    assert AuditEntry.objects.filter(summary="Removed the sender domain riverside.example", organisation=club).exists()


def test_another_organisations_sender_answers_404(ses, admin_client, other_club):
    theirs = SenderIdentity.objects.create(organisation=other_club, kind="domain", value="hilltop.example")

    assert admin_client.post(reverse("organisations:sender_check", args=[theirs.pk])).status_code == 404
    assert admin_client.post(reverse("organisations:sender_remove", args=[theirs.pk])).status_code == 404
    assert SenderIdentity.objects.filter(pk=theirs.pk).exists()


def test_viewers_see_the_senders_but_cannot_add_one(ses, client, club, make_member):
    SenderIdentity.objects.create(organisation=club, kind="domain", value="riverside.example")
    client.force_login(make_member("vera", club, Role.VIEWER))

    page = client.get(URL)

    assert page.status_code == 200 and "riverside.example" in text(page)
    assert "Add in SES" not in text(page)
    assert add(client, "other.example").status_code == 403
    assert SenderIdentity.objects.count() == 1


def test_a_custom_mail_from_domain_lists_its_mx_and_spf_records(stub_ses, admin_client, settings):
    settings.AWS_SES_REGION_NAME = "eu-west-1"
    add(admin_client, "riverside.example", mail_from="mail")

    identity = SenderIdentity.objects.get()
    assert (identity.mail_from_domain, identity.mail_from_status) == ("mail.riverside.example", "pending")
    assert stub_ses.state.identities["riverside.example"]["MailFromAttributes"]["MailFromDomain"] == (
        "mail.riverside.example"
    )
    assert len(identity.dkim_tokens) == 3  # as SES gives them at creation
    page = text(admin_client.get(URL))
    assert 'value="10 feedback-smtp.eu-west-1.amazonses.com"' in page
    assert 'value="v=spf1 include:amazonses.com ~all"' in page
    assert "Publish the MX and TXT records of mail.riverside.example below" in page

    stub_ses.identity_verified("riverside.example")
    admin_client.post(reverse("organisations:sender_check", args=[identity.pk]))
    identity.refresh_from_db()
    assert (identity.status, identity.mail_from_status) == ("verified", "success")
    assert senders.missing(identity) == []


def test_a_mail_from_domain_ses_refuses_leaves_the_domain_added_and_says_why(ses, admin_client):
    # moto has no PutEmailIdentityMailFromAttributes: a real refusal over HTTP.
    response = add(admin_client, "riverside.example", mail_from="mail")

    assert response.status_code == 302
    identity = SenderIdentity.objects.get()
    assert identity.mail_from_domain == ""
    assert identity.last_error.startswith("SES did not set the MAIL FROM domain mail.riverside.example")
    assert "SES did not set the MAIL FROM domain" in text(admin_client.get(URL))


def test_the_schedule_asks_ses_about_pending_identities_and_hourly_about_verified_ones(ses, admin_client):
    add(admin_client, "riverside.example")
    add(admin_client, "secretary@hilltop.example", kind="address")
    pending = SenderIdentity.objects.get(value="riverside.example")
    ses_sees_dns("riverside.example", tokens=TOKENS)
    schedule = Schedule.objects.get(name="sender-identities-check")  # created by the migration
    assert (schedule.func, schedule.schedule_type, schedule.repeats) == (
        "organisations.senders.identities_check_due",
        Schedule.MINUTES,
        -1,
    )

    assert senders.identities_check_due() == 0  # both were just asked
    with time_machine.travel(timezone.now() + datetime.timedelta(minutes=5)):
        assert senders.identities_check_due() == 2
    pending.refresh_from_db()
    assert pending.status == "verified"
    with time_machine.travel(timezone.now() + datetime.timedelta(minutes=10)):
        assert senders.identities_check_due() == 1  # the address only: the verified domain waits an hour
    with time_machine.travel(timezone.now() + datetime.timedelta(minutes=61)):
        assert senders.identities_check_due() == 2


def test_a_sender_ses_no_longer_has_is_marked_failed(ses, admin_client):
    add(admin_client, "riverside.example")
    identity = SenderIdentity.objects.get()
    ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].email_identities.pop("riverside.example")

    senders.sender_check(identity=identity)

    identity.refresh_from_db()
    assert identity.status == "failed"
    assert "SES no longer has this identity" in identity.last_error
