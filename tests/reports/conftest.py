# The signed-SNS fixtures of the tracking tests: reports are fed through the same webhook.
from tests.tracking.conftest import cert_server, notify, post, signed, signing, sns_settings  # noqa: F401
