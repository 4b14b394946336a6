"""deploy/: the example environment matches the README's settings table, and the systemd units and
the nginx configuration pass their own tools' checks (`.ci/run` installs them where missing)."""

from __future__ import annotations

import configparser
import os
import re
import secrets
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNITS = ["cobalt-mail-web.service", "cobalt-mail-worker.service"]


def readme_variables() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    table = readme.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    names = set()
    for line in table.splitlines():
        if line.startswith("| `"):
            names |= set(re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1]))
    return names


def example_variables() -> list[str]:
    text = (DEPLOY / "cobalt-mail.env.example").read_text()
    return re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE)


def test_the_example_environment_lists_every_setting_of_the_readme_once_and_nothing_else():
    listed = example_variables()
    assert len(readme_variables()) > 50  # the table was found

    assert sorted(set(listed)) == sorted(readme_variables())
    assert len(listed) == len(set(listed))


def test_the_example_environment_holds_placeholders_not_secrets():
    values = dict(
        line.split("=", 1)
        for line in (DEPLOY / "cobalt-mail.env.example").read_text().splitlines()
        if re.match(r"^[A-Z]", line)
    )
    for name in ("SECRET_KEY", "AWS_SECRET_ACCESS_KEY", "METRICS_TOKEN"):
        assert values[name].startswith("<") and values[name].endswith(">"), name
    assert "<database password>" in values["DATABASE_URL"]
    assert values["DEBUG"] == "0"


def test_django_starts_with_the_example_environment_and_check_deploy_warns_only_w019(tmp_path):
    """Every value in the example parses (a bad one would stop start-up), and the production
    settings it makes pass `check --deploy` but for the one warning the README explains."""
    environment = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    for line in (DEPLOY / "cobalt-mail.env.example").read_text().splitlines():
        if re.match(r"^[A-Z]", line):
            name, value = line.split("=", 1)
            environment[name] = value
    environment |= {
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'deploy.sqlite3'}",
        "MEDIA_ROOT": str(tmp_path / "media"),
    }

    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert re.findall(r"\((\w+\.[WE]\d+)\)", result.stderr) == ["security.W019"], result.stderr


def units_for_this_machine(tmp_path: Path) -> list[Path]:
    """The units with /srv/cobalt pointed at this checkout, as `systemd-analyze verify` checks that
    the programs they start exist."""
    copies = []
    for name in UNITS:
        text = (DEPLOY / name).read_text().replace("/srv/cobalt", str(ROOT))
        copy = tmp_path / name
        copy.write_text(text)
        copies.append(copy)
    return copies


def test_the_systemd_units_pass_systemd_analyze_verify(tmp_path):
    units = units_for_this_machine(tmp_path)

    result = subprocess.run(
        [shutil.which("systemd-analyze") or "systemd-analyze", "verify", *map(str, units)],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr  # unknown keys are only warnings: none allowed


def test_the_worker_unit_stops_the_whole_cluster_gracefully_and_restarts_on_failure():
    unit = configparser.ConfigParser(interpolation=None, strict=True)
    unit.read(DEPLOY / "cobalt-mail-worker.service")
    service = unit["Service"]

    assert service["ExecStart"].endswith("manage.py qcluster")
    assert service["KillMode"] == "control-group"
    assert service["KillSignal"] == "SIGTERM"
    assert int(service["TimeoutStopSec"]) > settings.SEND_TASK_SECONDS
    assert service["Restart"] == "on-failure"


def test_the_web_unit_runs_gunicorn_behind_the_proxy_and_restarts_on_failure():
    unit = configparser.ConfigParser(interpolation=None, strict=True)
    unit.read(DEPLOY / "cobalt-mail-web.service")
    service = unit["Service"]

    assert "gunicorn cobalt_mail.wsgi" in service["ExecStart"]
    assert "--bind 127.0.0.1:8000" in service["ExecStart"]
    assert service["Restart"] == "on-failure"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mail.example.org")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    chain, private = folder / "fullchain.pem", folder / "privkey.pem"
    chain.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return chain, private


def test_the_nginx_configuration_passes_nginx_t(tmp_path):
    chain, private = self_signed_certificate(tmp_path)
    text = (DEPLOY / "nginx.conf").read_text()
    assert "/etc/ssl/cobalt-mail/fullchain.pem" in text and "/etc/ssl/cobalt-mail/privkey.pem" in text
    config = tmp_path / "nginx.conf"
    config.write_text(
        text.replace("/etc/ssl/cobalt-mail/fullchain.pem", str(chain))
        .replace("/etc/ssl/cobalt-mail/privkey.pem", str(private))
        .replace("/var/log/nginx/cobalt-mail.access.log", str(tmp_path / "access.log"))
    )

    result = subprocess.run(
        [shutil.which("nginx") or "/usr/sbin/nginx", "-t", "-c", str(config), "-e", str(tmp_path / "error.log")],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_the_nginx_webhook_location_accepts_what_sns_sends_and_imports_get_a_large_limit():
    text = (DEPLOY / "nginx.conf").read_text()
    webhook = text.split("location /tracking/ses/ {", 1)[1].split("}", 1)[0]
    server = text.split("listen 443", 1)[1].split("location", 1)[0]

    assert megabytes(re.search(r"client_max_body_size (\S+);", webhook)[1]) * 1024 * 1024 > settings.SNS_MAX_BODY_BYTES
    assert megabytes(re.search(r"client_max_body_size (\S+);", server)[1]) >= 100
    assert "proxy_pass http://cobalt_mail;" in webhook
    assert "X-Forwarded-For $proxy_add_x_forwarded_for" in text  # the app reads the last entry


def megabytes(size: str) -> float:
    units = {"k": 1 / 1024, "m": 1, "g": 1024}
    return float(size[:-1]) * units[size[-1].lower()] if size[-1].isalpha() else float(size) / 1024 / 1024
