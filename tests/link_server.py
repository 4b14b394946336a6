"""A real HTTP server on loopback for the link check's tests: pages that work, are missing, refuse
HEAD, redirect, loop or answer slowly. It records every request it gets."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_HEAD(self) -> None:
        self._answer("HEAD")

    def do_GET(self) -> None:
        self._answer("GET")

    def _answer(self, method: str) -> None:
        self.server.requests.append((method, self.path, self.headers.get("Host", "")))
        path = self.path
        if path == "/ok":
            self._send(200)
        elif path == "/missing":
            self._send(404)
        elif path == "/no-head":
            self._send(405 if method == "HEAD" else 200)
        elif path.startswith("/hop/"):
            left = int(path.rsplit("/", 1)[1])
            self._send(302 if left else 200, location=f"/hop/{left - 1}" if left else None)
        elif path == "/loop":
            self._send(301, location="/loop")
        elif path == "/to-other-host":
            self._send(302, location=self.server.redirect_target)
        elif path == "/slow":
            time.sleep(self.server.slow_seconds)
            self._send(200)
        else:
            self._send(404)

    def _send(self, status: int, *, location: str | None = None) -> None:
        try:
            self.send_response(status)
            if location:
                self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()
        except OSError:  # the checker gave up (a timeout test): nothing to answer
            pass

    def log_message(self, *args) -> None:  # keep test output quiet
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    requests: list[tuple[str, str, str]]
    slow_seconds: float = 2.0
    redirect_target: str = ""


class LinkServer:
    """``with LinkServer() as server:`` → ``server.url("/ok")``; ``server.requests`` lists (method,
    path, Host header) in the order they came."""

    def __init__(self) -> None:
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.requests = []
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def requests(self) -> list[tuple[str, str, str]]:
        return self.server.requests

    def __enter__(self) -> LinkServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def self_signed_certificate(directory, host: str) -> tuple[str, str]:
    """A certificate for ``host`` and its key, as PEM files in ``directory``: (cert path, key path)."""
    import datetime as dt
    from pathlib import Path

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = Path(directory) / "cert.pem", Path(directory) / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


class TlsLinkServer(LinkServer):
    """The same pages over HTTPS, with a certificate for ``host`` only."""

    def __init__(self, cert_path: str, key_path: str) -> None:
        import ssl

        super().__init__()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_path, key_path)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
