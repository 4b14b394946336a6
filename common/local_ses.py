"""The local SES of `make run`: moto's server, quiet, plus a cursor over the messages it accepted.

``python -m common.local_ses --port 5005`` serves moto's SES (and every other moto service)
exactly as ``python -m moto.server`` does, with two differences:

- no line per request (moto's server logs every call, and the event simulator polls every
  second): only errors are printed;
- ``GET /cobalt-api/ses/messages?after=N&limit=M`` returns the raw messages accepted after the
  first ``N``, at most ``M`` of them, so the event simulator reads each message once instead of
  fetching every message on every pass (``/moto-api/data.json`` serialises all of moto's state:
  700-900 MiB in the reader at 50,000 messages). The answer names this server's ``instance``
  (new at every start) and ``next``, the cursor to ask with next time.

Development only: it listens on loopback and answers anyone who asks.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import uuid
from urllib.parse import parse_qs

from werkzeug.serving import make_server

CURSOR_PATH = "/cobalt-api/ses/messages"
MAX_PAGE = 1000
INSTANCE = uuid.uuid4().hex


def accepted_messages(after: int, limit: int, *, region: str, account: str | None = None) -> dict:
    """Raw messages moto's SES backend accepted, from position ``after`` on (at most ``limit``)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import RawMessage, ses_backends

    # Looked up on every call: /moto-api/reset gives the backend a new, empty list.
    sent = ses_backends[account or DEFAULT_ACCOUNT_ID][region].sent_messages
    window = sent[after : after + limit]
    messages = [
        {"id": m.id, "source": m.source, "destinations": m.destinations, "raw_data": m.raw_data}
        for m in window
        if isinstance(m, RawMessage)
    ]
    # The list's identity joins the process's: a reset (a new list) is a new instance to readers.
    instance = f"{INSTANCE}-{id(sent):x}"
    return {"instance": instance, "total": len(sent), "next": after + len(window), "messages": messages}


class LocalSESApplication:
    """moto's WSGI application with the cursor endpoint in front of it."""

    def __init__(self) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        self.moto = DomainDispatcherApplication(create_backend_app)

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") != CURSOR_PATH:
            return self.moto(environ, start_response)
        query = parse_qs(environ.get("QUERY_STRING", ""))
        try:
            after = max(0, int(query.get("after", ["0"])[0]))
            limit = min(MAX_PAGE, max(1, int(query.get("limit", ["500"])[0])))
        except ValueError:
            start_response("400 Bad Request", [("Content-Type", "text/plain")])
            return [b"after and limit must be whole numbers"]
        region = query.get("region", ["us-east-1"])[0]
        body = json.dumps(accepted_messages(after, limit, region=region)).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]


class LocalSESServer:
    """The local SES in a thread of this process (tests); ``main`` runs it as a process."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        from moto.moto_server.werkzeug_app import MotoRequestHandler

        quiet_werkzeug()
        self.httpd = make_server(host, port, LocalSESApplication(), threaded=True, request_handler=MotoRequestHandler)
        self.url = f"http://{host}:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> LocalSESServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def quiet_werkzeug() -> None:
    # werkzeug logs each request and its start-up banner at INFO; errors are logged at ERROR.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5005)
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="local SES: %(levelname)s %(message)s")
    server = LocalSESServer(host=options.host, port=options.port)
    try:
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
