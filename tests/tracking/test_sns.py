"""The SNS verifier's own rules: certificate URLs and the certificate cache."""

from __future__ import annotations

import pytest

from tracking import sns


@pytest.mark.parametrize(
    ("url", "trusted"),
    [
        ("https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem", True),
        ("https://sns.eu-central-1.amazonaws.com/SimpleNotificationService-abc.pem", True),
        ("https://sns.us-gov-west-1.amazonaws.com/x.pem", True),
        ("https://sns.cn-north-1.amazonaws.com.cn/x.pem", True),
        ("https://sns.us-east-1.amazonaws.com:8443/x.pem", False),
        ("https://user@sns.us-east-1.amazonaws.com/x.pem", False),
        ("https://sns.us-east-1.amazonaws.com.evil.example/x.pem", False),
        ("https://s3.amazonaws.com/x.pem", False),
        ("http://sns.us-east-1.amazonaws.com/x.pem", False),
        ("https://sns.us-east-1.amazonaws.com:x/x.pem", False),
        ("https://[sns.us-east-1.amazonaws.com/x.pem", False),
    ],
)
def test_only_sns_certificate_urls_are_trusted(url, trusted, settings):
    settings.SNS_CERT_TRUSTED_URLS = []

    assert sns.url_trusted(url) is trusted


def test_a_trusted_prefix_does_not_trust_lookalike_hosts(settings):
    settings.SNS_CERT_TRUSTED_URLS = ["http://127.0.0.1:5006"]

    assert sns.url_trusted("http://127.0.0.1:5006/cert.pem")
    assert not sns.url_trusted("http://127.0.0.1:50060/cert.pem")
    assert not sns.url_trusted("http://127.0.0.1:5006/../cert.pem")


def test_a_failed_certificate_fetch_is_not_cached(cert_server):
    cache = sns.CertificateCache()
    missing = cert_server.url + "missing.pem"

    with pytest.raises(sns.SNSRefused):
        cache.get(missing)

    assert missing not in cache._keys
    assert cache.get(cert_server.cert_url) is cache.get(cert_server.cert_url)


def test_cached_certificates_expire(cert_server):
    cache = sns.CertificateCache(ttl=0)

    first = cache.get(cert_server.cert_url)

    assert cache.get(cert_server.cert_url) is not first
