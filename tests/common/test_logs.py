"""LOG_FORMAT=json: one JSON object per line, and the context lines operators read."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from django.utils import timezone

from audiences.imports.jobs import import_job_run
from campaigns.delivery.engine import campaign_dispatch
from campaigns.models import Campaign
from campaigns.services import campaign_pause
from campaigns.snapshot import audience_snapshot
from common.logs import JsonFormatter
from tests.factories import CampaignFactory, ImportJobFactory, campaign_to, list_with_contacts
from tests.tracking.records import event

ROOT = Path(__file__).resolve().parents[2]


def formatted(message: str, *args, exc_info=None, **extra) -> dict:
    record = logging.getLogger("cobalt.test").makeRecord(
        "cobalt.test", logging.WARNING, __file__, 1, message, args, exc_info, extra=extra
    )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    return json.loads(line)


def lines_with(caplog, key: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records if hasattr(record, key)]


def test_a_line_is_one_json_object_with_time_level_logger_message_and_the_extras():
    entry = formatted("campaign %s paused", 7, campaign=7, seconds=0.25, reason="Sprünge")

    assert list(entry)[:4] == ["time", "level", "logger", "message"]
    assert (entry["level"], entry["logger"], entry["message"]) == ("WARNING", "cobalt.test", "campaign 7 paused")
    assert (entry["campaign"], entry["seconds"], entry["reason"]) == (7, 0.25, "Sprünge")
    stamp = datetime.fromisoformat(entry["time"])
    assert stamp.utcoffset().total_seconds() == 0
    assert abs((stamp - timezone.now()).total_seconds()) < 60
    assert "args" not in entry and "exc_info" not in entry and "exception" not in entry


def test_an_exception_is_one_string_field_and_odd_values_become_text():
    try:
        raise ValueError("boom")
    except ValueError:
        entry = formatted("it failed", exc_info=sys.exc_info(), when=timezone.now(), path=Path("/x"))

    assert entry["exception"].startswith("Traceback (most recent call last)")
    assert "ValueError: boom" in entry["exception"]
    assert entry["path"] == "/x"
    assert isinstance(entry["when"], str)


@pytest.mark.django_db
def test_a_campaign_state_change_logs_its_campaign_and_both_states(caplog, django_capture_on_commit_callbacks):
    campaign = CampaignFactory(status=Campaign.Status.SENDING)
    caplog.set_level(logging.INFO, logger="campaigns.services")

    with django_capture_on_commit_callbacks(execute=True):
        campaign_pause(campaign_id=campaign.pk, reason="Paused by staff.")

    (line,) = lines_with(caplog, "to_status")
    assert (line.campaign, line.from_status, line.to_status, line.reason) == (
        campaign.pk,
        "sending",
        "paused",
        "Paused by staff.",
    )


@pytest.mark.django_db
def test_a_refused_webhook_request_logs_the_reason_and_the_remote_address(notify, caplog):
    caplog.set_level(logging.INFO, logger="tracking.views")

    response = notify(event("Delivery"), topic_arn="arn:aws:sns:us-east-1:000000000000:someone-else")

    assert response.status_code == 403
    (line,) = lines_with(caplog, "remote_address")
    assert (line.status, line.remote_address) == (403, "127.0.0.1")
    assert line.reason == response.content.decode()


@pytest.mark.django_db
def test_a_refused_webhook_request_behind_the_proxy_logs_the_address_the_proxy_appended(client, settings, caplog):
    settings.BEHIND_TLS_PROXY = True
    caplog.set_level(logging.INFO, logger="tracking.views")

    response = client.post(
        "/tracking/ses/", b"not json", content_type="text/plain", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.9"
    )

    assert response.status_code == 400
    (line,) = lines_with(caplog, "remote_address")
    assert line.remote_address == "203.0.113.9"


@pytest.mark.django_db
def test_a_finished_import_logs_its_rows_rejected_rows_and_duration(settings, tmp_path, caplog):
    settings.MEDIA_ROOT = tmp_path
    job = ImportJobFactory(file__data=b"email\nada@example.org\nnot-an-address\ngrace@example.org\n")
    caplog.set_level(logging.INFO, logger="audiences.imports.jobs")

    assert import_job_run(job.pk) == "done"

    (line,) = lines_with(caplog, "import_job")
    assert (line.import_job, line.rows, line.rejected) == (job.pk, 3, 1)
    assert line.seconds >= 0


@pytest.mark.django_db
def test_every_written_group_of_results_logs_its_campaign_messages_and_seconds(stub_ses, caplog):
    campaign = campaign_to(list_with_contacts(5))
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.SENDING, started_at=timezone.now())
    audience_snapshot(campaign_id=campaign.pk)
    caplog.set_level(logging.INFO, logger="campaigns.delivery.engine")

    assert campaign_dispatch(campaign_id=campaign.pk, seconds=30) == "finished"

    lines = lines_with(caplog, "messages")
    assert lines and {line.campaign for line in lines} == {campaign.pk}
    assert sum(line.messages for line in lines) == 5
    assert all(line.seconds >= 0 for line in lines)


def manage(*arguments: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "DEBUG": "1", "COBALT_TESTING": "1", **env}
    return subprocess.run(
        [sys.executable, "manage.py", *arguments],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_log_format_json_makes_the_configured_handler_print_json_lines():
    result = manage(
        "shell",
        "-c",
        "import logging; logging.getLogger('cobalt.check').warning('hello %s', 'there', extra={'campaign': 3})",
        LOG_FORMAT="json",
    )

    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if "cobalt.check" in line]
    entry = json.loads(line)
    assert (entry["logger"], entry["message"], entry["campaign"]) == ("cobalt.check", "hello there", 3)


def test_the_default_log_format_stays_readable_text():
    result = manage("shell", "-c", "import logging; logging.getLogger('cobalt.check').warning('hello')")

    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if "cobalt.check" in line]
    assert line.endswith("WARNING cobalt.check: hello")


def test_an_unknown_log_format_stops_start_up_with_a_clear_message():
    result = manage("check", LOG_FORMAT="xml")

    assert result.returncode != 0
    assert "LOG_FORMAT='xml' is not a log format: use text or json." in result.stderr
