"""JSON log lines for ``LOG_FORMAT=json``: one object per line, for a log shipper to parse.

The standard library's ``logging.Formatter``, not structlog: Django's ``LOGGING`` is already
stdlib ``dictConfig``, and the context goes in as ``logger.info("…", extra={...})``, so one
formatter class does the job without a new dependency or a second logging API to learn.

Each line holds ``time`` (ISO 8601, UTC), ``level``, ``logger`` and ``message``, then every field
the call passed in ``extra`` under its own name (``campaign``, ``messages``, ``seconds``, …), and
``exception`` (the formatted traceback, as one string) when there is one.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

# The attributes every LogRecord has: anything else on a record came from ``extra``.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_FIXED_KEYS = ("time", "level", "logger", "message")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and key not in _FIXED_KEYS:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # default=str: a context value JSON cannot hold (a Decimal, a datetime) is written as its
        # text rather than losing the whole line.
        return json.dumps(entry, ensure_ascii=False, default=str)
