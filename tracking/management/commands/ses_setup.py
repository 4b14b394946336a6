"""`manage.py ses_setup --webhook-url URL`: wire SES events to the webhook, idempotently.

Creates or updates the SES configuration set (``AWS_SES_CONFIGURATION_SET``), the SNS topic, the
configuration set's SNS event destination for every event type (including open and click, which
turns on SES's open and click tracking for mail sent through the set) and the topic's HTTP(S)
subscription to the webhook. Running it again changes only what differs.

With ``SES_TENANTS=1`` it then creates an SES tenant for every organisation and associates the
configuration set and the organisation's sender identities with it (campaigns.delivery.tenants);
``--tenants-only`` does only that (e.g. after turning SES_TENANTS on, or after adding senders).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from campaigns.delivery.tenants import tenant_setup
from organisations.models import Organisation

EVENT_TYPES = [
    "send",
    "reject",
    "bounce",
    "complaint",
    "delivery",
    "open",
    "click",
    "renderingFailure",
    "deliveryDelay",
    "subscription",
]
DESTINATION_NAME = "cobalt-mail-sns"


class Command(BaseCommand):
    help = "Create or update the SES configuration set, SNS topic, event destination and webhook subscription."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--webhook-url", help="Public URL of /tracking/ses/ (https in production).")
        parser.add_argument("--configuration-set", default=settings.AWS_SES_CONFIGURATION_SET or "cobalt-mail")
        parser.add_argument("--topic-name", default="cobalt-mail-ses-events")
        parser.add_argument("--tracking-domain", default="", help="Custom redirect domain for open/click tracking.")
        parser.add_argument(
            "--tenants-only", action="store_true", help="Only the SES tenants of the organisations (SES_TENANTS=1)."
        )

    def handle(self, *args, **options) -> None:
        if options["tenants_only"]:
            if not settings.SES_TENANTS:
                raise CommandError("SES tenants are off: set SES_TENANTS=1 first.")
            self._tenants()
            return
        url = options["webhook_url"]
        if not url:
            raise CommandError("Give --webhook-url: the public URL of /tracking/ses/.")
        scheme = urlsplit(url).scheme
        if scheme not in {"http", "https"}:
            raise CommandError("--webhook-url must be an http(s) URL.")
        if scheme == "http" and not settings.AWS_SES_REGION_ENDPOINT_URL:
            raise CommandError("Against real AWS the webhook URL must be https.")
        client_options = {"region_name": settings.AWS_SES_REGION_NAME}
        if settings.AWS_SES_REGION_ENDPOINT_URL:
            client_options["endpoint_url"] = settings.AWS_SES_REGION_ENDPOINT_URL
        ses = boto3.client("ses", **client_options)
        sns = boto3.client("sns", **client_options)
        try:
            topic_arn = self._setup(ses, sns, options, scheme)
        except (ClientError, BotoCoreError) as error:
            raise CommandError(f"AWS refused a step: {error}") from error
        if settings.SES_TENANTS:
            self._tenants()
        self.stdout.write(self.style.SUCCESS(f"Done. Add the topic to the allowlist: SNS_TOPIC_ARNS={topic_arn}"))

    def _tenants(self) -> None:
        """One SES tenant per organisation, with what its messages name associated (idempotent)."""
        for organisation in Organisation.objects.order_by("pk"):
            try:
                setup = tenant_setup(organisation_id=organisation.pk)
            except (ClientError, BotoCoreError) as error:
                raise CommandError(f"SES refused the tenant of {organisation.name}: {error}") from error
            made = "Created" if setup.created else "Found"
            self.stdout.write(f"{made} SES tenant {setup.tenant.tenant_name} for {organisation.name}.")
            for arn in setup.associated:
                self.stdout.write(f"  associated {arn}")
            for arn in setup.missing:
                self.stdout.write(self.style.WARNING(f"  SES does not know {arn}: not associated"))
            if not (setup.associated or setup.missing):
                self.stdout.write("  its resources are associated already.")

    def _setup(self, ses, sns, options: dict, scheme: str) -> str:
        name = options["configuration_set"]
        try:
            ses.create_configuration_set(ConfigurationSet={"Name": name})
            self.stdout.write(f"Created configuration set {name}.")
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConfigurationSetAlreadyExists":
                raise
            self.stdout.write(f"Configuration set {name} exists.")
        topic_arn = sns.create_topic(Name=options["topic_name"])["TopicArn"]  # idempotent in SNS
        self.stdout.write(f"SNS topic {topic_arn}.")
        self._destination(ses, name, topic_arn)
        if options["tracking_domain"]:
            self._tracking_domain(ses, name, options["tracking_domain"])
        self._subscription(sns, topic_arn, options["webhook_url"], scheme)
        return topic_arn

    def _destination(self, ses, name: str, topic_arn: str) -> None:
        wanted = {
            "Name": DESTINATION_NAME,
            "Enabled": True,
            "MatchingEventTypes": EVENT_TYPES,
            "SNSDestination": {"TopicARN": topic_arn},
        }
        described = ses.describe_configuration_set(
            ConfigurationSetName=name, ConfigurationSetAttributeNames=["eventDestinations"]
        )
        current = next((d for d in described.get("EventDestinations", []) if d["Name"] == DESTINATION_NAME), None)
        if current is None:
            ses.create_configuration_set_event_destination(ConfigurationSetName=name, EventDestination=wanted)
            self.stdout.write("Created the SNS event destination for every event type.")
        elif (
            current.get("Enabled")
            and set(current.get("MatchingEventTypes", [])) == set(EVENT_TYPES)
            and current.get("SNSDestination", {}).get("TopicARN") == topic_arn
        ):
            self.stdout.write("The SNS event destination is up to date.")
        else:
            ses.update_configuration_set_event_destination(ConfigurationSetName=name, EventDestination=wanted)
            self.stdout.write("Updated the SNS event destination.")

    def _tracking_domain(self, ses, name: str, domain: str) -> None:
        try:
            ses.update_configuration_set_tracking_options(
                ConfigurationSetName=name, TrackingOptions={"CustomRedirectDomain": domain}
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "TrackingOptionsDoesNotExistException":
                raise
            ses.create_configuration_set_tracking_options(
                ConfigurationSetName=name, TrackingOptions={"CustomRedirectDomain": domain}
            )
        self.stdout.write(f"Open and click tracking links use {domain}.")

    def _subscription(self, sns, topic_arn: str, url: str, scheme: str) -> None:
        paginator = sns.get_paginator("list_subscriptions_by_topic")
        for page in paginator.paginate(TopicArn=topic_arn):
            if any(s["Endpoint"] == url and s["Protocol"] == scheme for s in page["Subscriptions"]):
                self.stdout.write(f"{url} is already subscribed.")
                return
        sns.subscribe(TopicArn=topic_arn, Protocol=scheme, Endpoint=url, ReturnSubscriptionArn=True)
        self.stdout.write(f"Subscribed {url}; SNS sends a SubscriptionConfirmation the webhook confirms itself.")
