"""Production settings, as a real start-up sees them: a fresh ``manage.py`` with only the environment."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
PRODUCTION = {
    "SECRET_KEY": "k7Qf2Zr9Lw4Xp1Vn8Bt6Hy3Jc5Md0Gs2Ue7Ra9Wq4Eo1Ti6Yp3Ak8Sl5Dz0Fx2Cv",
    "ALLOWED_HOSTS": "mail.example.org",
    "SITE_URL": "https://mail.example.org",
    "CSRF_TRUSTED_ORIGINS": "https://mail.example.org",
    "BEHIND_TLS_PROXY": "1",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_SSL_REDIRECT": "1",
}


def manage(*args: str, **environment: str) -> subprocess.CompletedProcess:
    """``manage.py`` in a fresh process with the production environment: no DEBUG, no test settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SECURE_", "SNS_", "DJANGO_")) and key not in {"DEBUG", "COBALT_TESTING", *PRODUCTION}
    }
    env.update(environment)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def warnings_of(result: subprocess.CompletedProcess) -> set[str]:
    return set(re.findall(r"\((\w+\.W\d+)\)", result.stdout + result.stderr))


def test_check_deploy_warns_only_about_the_preview_frame_with_the_production_environment():
    result = manage("check", "--deploy", **PRODUCTION)

    assert result.returncode == 0, result.stderr
    # W019: X_FRAME_OPTIONS is SAMEORIGIN because the composer shows its preview in an iframe.
    assert warnings_of(result) == {"security.W019"}, result.stderr


def test_https_only_is_off_unless_the_environment_turns_it_on():
    without = {
        key: value for key, value in PRODUCTION.items() if key not in {"SECURE_HSTS_SECONDS", "SECURE_SSL_REDIRECT"}
    }

    result = manage("check", "--deploy", **without)

    assert {"security.W004", "security.W008"} <= warnings_of(result)


def test_it_refuses_to_start_with_a_plain_http_certificate_url_unless_debug_is_on():
    refused = manage("check", **PRODUCTION, SNS_CERT_TRUSTED_URLS="https://certs.example.org/, HTTP://127.0.0.1:5006/")
    debugging = manage(
        "check", **PRODUCTION, SNS_CERT_TRUSTED_URLS="https://certs.example.org/,http://127.0.0.1:5006/", DEBUG="1"
    )

    assert refused.returncode != 0
    assert "SNS_CERT_TRUSTED_URLS accepts only https:// prefixes" in refused.stderr
    assert debugging.returncode == 0, debugging.stderr
