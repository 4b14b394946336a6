# Signed-SNS fixtures of the tracking tests, for browser tests that feed the webhook.
from tests.tracking.conftest import cert_server, signing, sns_settings  # noqa: F401
