"""`manage.py ses_setup` against the local SES/SNS server (moto): creates, then changes nothing."""

from __future__ import annotations

from io import StringIO

import boto3
import pytest
from django.core.management import call_command

from tracking.management.commands.ses_setup import DESTINATION_NAME, EVENT_TYPES

pytestmark = pytest.mark.django_db
WEBHOOK_URL = "https://mail.cobalt.example/tracking/ses/"


def run(**options) -> str:
    out = StringIO()
    call_command("ses_setup", webhook_url=WEBHOOK_URL, stdout=out, **options)
    return out.getvalue()


def test_it_wires_the_configuration_set_topic_destination_and_subscription(ses):
    output = run()

    client = boto3.client("ses", region_name="us-east-1", endpoint_url=ses.url)
    sns = boto3.client("sns", region_name="us-east-1", endpoint_url=ses.url)
    (topic,) = [t["TopicArn"] for t in sns.list_topics()["Topics"] if t["TopicArn"].endswith(":cobalt-mail-ses-events")]
    described = client.describe_configuration_set(
        ConfigurationSetName="cobalt-mail", ConfigurationSetAttributeNames=["eventDestinations"]
    )
    (destination,) = described["EventDestinations"]
    assert destination["Name"] == DESTINATION_NAME
    assert set(destination["MatchingEventTypes"]) == set(EVENT_TYPES)
    assert {"open", "click"} <= set(destination["MatchingEventTypes"])
    assert destination["SNSDestination"]["TopicARN"] == topic
    (subscription,) = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    assert (subscription["Protocol"], subscription["Endpoint"]) == ("https", WEBHOOK_URL)
    assert f"SNS_TOPIC_ARNS={topic}" in output


def test_running_it_twice_changes_nothing(ses):
    run()

    output = run()

    sns = boto3.client("sns", region_name="us-east-1", endpoint_url=ses.url)
    topics = [t["TopicArn"] for t in sns.list_topics()["Topics"]]
    assert len(topics) == 1
    assert len(sns.list_subscriptions_by_topic(TopicArn=topics[0])["Subscriptions"]) == 1
    assert "Configuration set cobalt-mail exists." in output
    assert "up to date" in output
    assert "already subscribed" in output
