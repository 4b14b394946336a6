"""The project's production settings, plus the benchmark's local certificate server.

``SNS_CERT_TRUSTED_URLS`` refuses ``http://`` without ``DEBUG`` (a certificate fetched over plain
HTTP can be swapped on the way). The webhook benchmark must measure the production path, not
DEBUG, so it trusts its own loopback certificate server here instead of through the environment.
"""

import os

from cobalt_mail.settings import *  # noqa: F403

SNS_CERT_TRUSTED_URLS = [os.environ["BENCH_CERT_URL"]]
