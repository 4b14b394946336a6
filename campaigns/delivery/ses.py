"""Connections to SES: the sending backend every dispatcher thread shares, and account clients."""

from __future__ import annotations

import functools
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from botocore.config import Config
from django.conf import settings
from django.core.mail import mailers
from django.utils.module_loading import import_string
from django_ses import SESBackend

from common.ses_clients import ses_account_client

try:  # django-ses tries "import dkim" for every message; when it is absent make the miss cheap.
    import dkim  # noqa: F401
except ImportError:
    sys.modules["dkim"] = None

_connection: tuple | None = None
_connection_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _botocore_config() -> Config:
    """One attempt per call: the engine retries itself, after the shared limiter, with backoff.

    botocore's own retries (legacy mode: up to 4 more attempts with sleeps) would re-send behind
    the global limiter's back and hide throttling from the engine. The timeouts fit SES, which
    answers a send in well under a second: a call past them is abandoned and retried (SES may
    still have accepted it). The pool holds a connection for every call a dispatcher may have in
    flight, stragglers included.
    """
    return Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=settings.SES_CONNECT_TIMEOUT,
        read_timeout=settings.SES_READ_TIMEOUT,
        max_pool_connections=max_calls_in_flight(),
        parameter_validation=False,
    )


def ses_connection():
    """This process's django-ses backend, shared by every sending thread.

    It keeps one boto3 client open for the process's life (boto3 clients are thread-safe once
    made, and making one costs 110-130 ms of CPU: one per thread would cost that for every
    straggler thread the engine starts).
    """
    alias = settings.POST_OFFICE["DEFAULT_MAILER"]
    key = (
        alias,
        repr(settings.MAILERS.get(alias)),
        settings.AWS_SES_REGION_ENDPOINT_URL,
        _use_ses_v2(),
        settings.SES_TENANTS,
        settings.SES_CONNECT_TIMEOUT,
        settings.SES_READ_TIMEOUT,
    )
    global _connection
    cached = _connection
    if cached is None or cached[0] != key:
        with _connection_lock:
            cached = _connection
            if cached is None or cached[0] != key:
                backend = _new_backend(alias)
                if hasattr(backend, "open"):
                    backend.open()
                _connection = cached = (key, backend)
    return cached[1]


def _new_backend(alias: str):
    config = settings.MAILERS.get(alias) or {}
    backend_class = import_string(config.get("BACKEND", "django.core.mail.backends.locmem.EmailBackend"))
    if issubclass(backend_class, SESBackend) and not getattr(settings, "AWS_SES_CONFIG", None):
        options = {"aws_config": _botocore_config(), "use_ses_v2": _use_ses_v2(), **config.get("OPTIONS", {})}
        if settings.SES_TENANTS:
            backend_class = _naming_tenants(backend_class)
        return backend_class(**options)
    return mailers[alias]


class TenantNameBackend:
    """Adds ``TenantName`` to the SESv2 SendEmail call of a message that carries ``ses_tenant``.

    The tenant rides on the message object (set by ``mime.CampaignMessage.assemble``), never in a
    header: a header would go out in the email itself. Only with ``SES_TENANTS=1``, which requires
    API v2 (v1 SendRawEmail has no tenant parameter).
    """

    def _get_v2_parameters(self, message, source, email_feedback):
        parameters = super()._get_v2_parameters(message, source, email_feedback)
        tenant = getattr(message, "ses_tenant", "")
        if tenant:
            parameters["TenantName"] = tenant
        return parameters


@functools.cache
def _naming_tenants(backend_class: type) -> type:
    """``backend_class`` (django-ses's backend or a subclass of it) naming tenants on its sends."""
    return type(f"Tenant{backend_class.__name__}", (TenantNameBackend, backend_class), {})


def _use_ses_v2() -> bool:
    """The engine talks to SES API v2 by default: its JSON body costs far less CPU to build than
    v1's form encoding of the base64 message (``urllib.parse.quote`` over every byte)."""
    return getattr(settings, "SEND_SES_API", "v2") == "v2"


def ses_client():
    """A boto3 SES (v1) client with the same credentials and endpoint as the sending backend, for
    account calls made from pages and the limiter (short timeouts: ``common.ses_clients``)."""
    return ses_account_client("ses")


def max_calls_in_flight() -> int:
    """SES calls one dispatcher may have open at once, counting calls that are slow or hang.

    ``SEND_THREADS`` calls run at full speed; a call slower than the engine's ``STRAGGLER_SECONDS``
    stops counting against them so that the next message goes out on another thread, up to this
    cap (Little's law: 2% of calls hanging for a 15 s read timeout at 150 msg/s keep 45 calls open).
    """
    return settings.SEND_THREADS * 16


def thread_pool() -> ThreadPoolExecutor:
    """The threads SES calls run on, shared by the process's dispatchers."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool._max_workers != max_calls_in_flight():
            if _pool is not None:  # the setting changed (tests): let the old threads end
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=max_calls_in_flight(), thread_name_prefix="ses-send")
        return _pool
