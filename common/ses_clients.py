"""boto3 clients for SES account calls (quota, identities, tenants), v1 or v2 API.

One place for the region, endpoint, credentials and the short timeouts every page and task that
asks SES something needs: an unreachable SES costs a page seconds, not botocore's default minutes.
The sending backend (campaigns/delivery/ses.py) has its own client, tuned for sending.
"""

from __future__ import annotations

import boto3
from botocore.config import Config
from django.conf import settings


def ses_account_client(service: str = "ses"):
    """A boto3 client for ``service`` ("ses" or "sesv2") with the sending backend's credentials."""
    return boto3.client(
        service,
        region_name=settings.AWS_SES_REGION_NAME,
        endpoint_url=settings.AWS_SES_REGION_ENDPOINT_URL,
        aws_access_key_id=settings.AWS_SES_ACCESS_KEY_ID,
        aws_secret_access_key=settings.AWS_SES_SECRET_ACCESS_KEY,
        config=Config(connect_timeout=3, read_timeout=10, retries={"total_max_attempts": 2, "mode": "standard"}),
    )
