"""The send path through a real `manage.py qcluster` process (not sync mode)."""

from __future__ import annotations

import pytest

from campaigns.models import Campaign, Recipient
from campaigns.services import campaign_send_now
from tests.conftest import wait_until
from tests.factories import campaign_to, list_with_contacts

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_a_real_worker_sends_every_message_and_records_the_ses_ids(workers, ses):
    campaign = campaign_to(list_with_contacts(12))
    workers.start(1)

    campaign_send_now(campaign_id=campaign.pk)

    wait_until(
        lambda: Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.SENT,
        timeout=90,
        message="the campaign to be sent by the worker",
    )
    # moto lists an address once from the API call and once from the To header: compare as sets.
    received = {message["id"]: set(message["destinations"]) for message in ses.sent()}
    recipients = Recipient.objects.filter(campaign=campaign)
    assert recipients.count() == 12
    assert {r.status for r in recipients} == {Recipient.Status.SENT}
    assert {r.ses_message_id: {r.email} for r in recipients} == received
