"""Cobalt Mail settings: one module, every value from the environment (see README, "Settings")."""

from __future__ import annotations

import ipaddress
import sys
from datetime import timedelta
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

from cobalt_mail.env import (
    database_from_url,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent

# Test overrides live here and only here: on under pytest, and in the workers tests start.
TESTING = env_bool("COBALT_TESTING", default="pytest" in sys.modules)
DEBUG = env_bool("DEBUG", default=False)

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not (DEBUG or TESTING):
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set it (or SECRET_KEY_FILE) to a long random string; only DEBUG=1 runs without one."
        )
    SECRET_KEY = "insecure-development-key-never-use-in-production"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
SITE_URL = (env_str("SITE_URL", "http://127.0.0.1:8000") or "").rstrip("/")
# Unsubscribe and preference links work this long after sending (RFC 8058 expects 60 days or
# more); view-online links never expire and open nothing else (campaigns/tokens.py).
UNSUBSCRIBE_TOKEN_DAYS = env_int("UNSUBSCRIBE_TOKEN_DAYS", 365, minimum=60)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "django_tables2",
    "django_q",
    "post_office",
    "django_ses",
    "axes",  # login throttling: see LOGIN_FAILURE_LIMIT below
    "ninja",  # listed so that /api/v1/docs serves its own Swagger UI files, not a CDN's
    # The project's apps, bottom layer first: each imports only from the apps listed before it
    # (import-linter checks it in `make lint`; see the README's architecture section).
    "common",
    "stats",
    "organisations",
    "audiences",
    "campaigns",
    "tracking",
    "reports",
    "api",  # the integration API (django-ninja) and its keys
    "cobalt_mail",  # the project itself: first-run set-up commands (bootstrap, ses_verify_senders)
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Django's CSP middleware (SECURE_CSP below), early so that every response gets the header,
    # including the redirects and 403s the middleware further down answers with.
    "cobalt_mail.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "cobalt_mail.permissions.OrganisationAccessMiddleware",
    "common.timezones.StaffTimezoneMiddleware",
    # Last, as django-axes asks: turns a locked-out login into the "try again at …" page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "cobalt_mail.urls"
WSGI_APPLICATION = "cobalt_mail.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.csp",
                "organisations.context.organisation",
            ],
        },
    },
]

DATABASE_URL = env_str("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'var' / 'cobalt_mail.sqlite3'}"
DATABASES = {"default": database_from_url(DATABASE_URL, base_dir=BASE_DIR)}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # A file, not memory: the browser tests' server thread and real qcluster processes share it.
    DATABASES["default"]["TEST"] = {
        "NAME": str(BASE_DIR / "var" / f"test_{env_str('COBALT_TEST_DB_SUFFIX', 'main')}.sqlite3")
    }
else:
    DATABASES["default"]["TEST"] = {"NAME": f"test_cobalt_{env_str('COBALT_TEST_DB_SUFFIX', 'main')}"}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
# --- Login throttling (django-axes, records in the database so every web process sees them):
# LOGIN_FAILURE_LIMIT failed logins for one username, or from one address, lock that username or
# address out for LOGIN_LOCKOUT_MINUTES after the last failure. Attempts during a lock-out do not
# extend it, so the time the page promises holds. cobalt_mail/logins.py logs the start and the end.
LOGIN_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 10, minimum=1)
LOGIN_LOCKOUT_MINUTES = env_int("LOGIN_LOCKOUT_MINUTES", 15, minimum=1)
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses locked-out logins before any password check
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=LOGIN_LOCKOUT_MINUTES)
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # each on its own: by username, and by address
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_HANDLER = "cobalt_mail.logins.LoginAttemptHandler"
AXES_LOCKOUT_CALLABLE = "cobalt_mail.logins.lockout_response"
AXES_CLIENT_IP_CALLABLE = "cobalt_mail.logins.client_ip_address"
AXES_VERBOSE = False  # no banner in every command's output; cobalt_mail.logins logs what matters

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns at every start without it
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(BASE_DIR / "var" / "media")))
MEDIA_URL = "media/"
# Uploaded images (the composer's image button) are public: mail clients load them from SITE_URL.
# Cobalt Mail serves them itself at MEDIA_URL; set SERVE_MEDIA=0 when the proxy or a CDN serves
# MEDIA_ROOT there instead (README, "Production deployment").
SERVE_MEDIA = env_bool("SERVE_MEDIA", default=True)
IMAGE_UPLOAD_MAX_MB = env_int("IMAGE_UPLOAD_MAX_MB", 5, minimum=1)

SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", default=not (DEBUG or TESTING))
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "SAMEORIGIN"
# --- Content-Security-Policy on every response (README, "Invariants"). Our pages load every script
# and style sheet from /static/ and carry no inline script, event handler or style attribute
# (tests/cobalt_mail/test_csp.py, tests/e2e/ fail on any violation). The nonce enters the header
# only on pages whose template asks for one: Django's admin and its CSRF failure page.
# img-src allows https: and data: because the composer's rich-text editor shows the campaign's
# remote images. Views that serve campaign HTML (preview, view online) set a stricter policy of
# their own; cobalt_mail/csp.py adds the navigation directives below to it if they are missing.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    # 'report-sample': a violation report quotes the start of the code it blocked.
    "script-src": [CSP.SELF, CSP.NONCE, CSP.REPORT_SAMPLE],
    "style-src": [CSP.SELF, CSP.NONCE, CSP.REPORT_SAMPLE],
    "img-src": [CSP.SELF, "https:", "data:"],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.SELF],
}
BEHIND_TLS_PROXY = env_bool("BEHIND_TLS_PROXY", default=False)
if BEHIND_TLS_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# HTTPS only: off by default (a site first tried over plain HTTP must not lock itself out for a
# year); README "Production deployment" turns them on. includeSubDomains and preload follow HSTS
# when it is on (check --deploy warns without them; they cover the site's own host name and below).
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=False)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", default=True)
# SNS may post to an http:// subscription and load balancers probe health over plain HTTP; a
# redirect would answer both with a 301 they do not follow. The webhook trusts signatures, not TLS.
SECURE_REDIRECT_EXEMPT = [r"^tracking/ses/$", r"^health/$"]

# --- Mail: Django 6.1 MAILERS. "default" queues into post_office; post_office delivers through
# "ses" (django-ses). The engine sends through "ses" directly, one connection per thread.
COBALT_MAILERS = {
    "default": {"BACKEND": "post_office.EmailBackend"},
    "ses": {"BACKEND": "django_ses.SESBackend"},
}
MAILERS = dict(COBALT_MAILERS)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Cobalt Mail <news@cobalt.example>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# Verified SES identities staff may send from (comma separated addresses).
SENDER_ADDRESSES = env_list("SENDER_ADDRESSES", ["news@cobalt.example"])
# Attachments per campaign. The engine sends through SES API v2 (messages up to 40 MB); with
# SEND_SES_API=v1 (SendRawEmail, 10 MB after base64's +33%) keep this at 7 MB or less.
ATTACHMENT_MAX_BYTES = env_int("ATTACHMENT_MAX_BYTES", 10 * 1024 * 1024, minimum=0)
# The preview's link check (campaigns/linkcheck.py): seconds per link, redirects included.
# Addresses on private, loopback or link-local networks are never fetched (server-side request
# forgery) unless LINK_CHECK_ALLOW_PRIVATE is on: for tests and intranet-only installations.
LINK_CHECK_TIMEOUT = env_float("LINK_CHECK_TIMEOUT", 5.0, minimum=0.1)
LINK_CHECK_ALLOW_PRIVATE = env_bool("LINK_CHECK_ALLOW_PRIVATE", default=False)
# The sender domains' DNS checklist (reports/senderdns.py) asks these name servers: comma
# separated, each "ip" or "ip:port" ("[ipv6]:port"); empty = the system's resolver.
DNS_NAMESERVERS = env_list("DNS_NAMESERVERS", [])
for _entry in DNS_NAMESERVERS:
    if _entry.startswith("["):  # [ipv6]:port
        _host, _, _port = _entry[1:].partition("]")
        _port = _port.removeprefix(":")
    elif _entry.count(":") == 1:  # ipv4:port
        _host, _, _port = _entry.partition(":")
    else:  # an IPv4 or IPv6 address alone
        _host, _port = _entry, ""
    try:
        ipaddress.ip_address(_host)
        if not 0 < int(_port or "53") < 65536:
            raise ValueError
    except ValueError:
        raise ImproperlyConfigured(
            f"DNS_NAMESERVERS entry {_entry!r} is not an IP address with an optional port"
            " (e.g. 1.1.1.1, 127.0.0.1:5353 or [::1]:5353)."
        ) from None
# CSV imports run as one django-q2 task with their own time limit (not Q_TIMEOUT): 6 hours is
# about 150 million rows. An import whose worker died (no progress for IMPORT_STALE_SECONDS) is
# started again from the top of its file by the minute tick.
IMPORT_TIMEOUT = env_int("IMPORT_TIMEOUT", 6 * 3600, minimum=60)
IMPORT_STALE_SECONDS = env_int("IMPORT_STALE_SECONDS", 900, minimum=60)
# --- Retention (cobalt_mail/retention.py, daily and `manage.py retention`): days after which mail
# bodies and logs, raw event JSON and import files go; figures, recipients and events stay.
RETENTION_DAYS = env_int("RETENTION_DAYS", 365, minimum=1)
RETENTION_MAIL_DAYS = env_int("RETENTION_MAIL_DAYS", RETENTION_DAYS, minimum=1)
RETENTION_EVENT_PAYLOAD_DAYS = env_int("RETENTION_EVENT_PAYLOAD_DAYS", RETENTION_DAYS, minimum=1)
RETENTION_IMPORT_FILE_DAYS = env_int("RETENTION_IMPORT_FILE_DAYS", RETENTION_DAYS, minimum=1)
# Rows per SELECT and per UPDATE/DELETE transaction: small enough that no table is locked for long.
RETENTION_BATCH_SIZE = env_int("RETENTION_BATCH_SIZE", 5000, minimum=1)
POSTAL_ADDRESS = env_str("POSTAL_ADDRESS", "Cobalt Mail, 1 Example Street, Exampletown")

POST_OFFICE = {
    "DEFAULT_MAILER": "ses",
    "MAX_RETRIES": 0,  # the engine retries, post_office only records
    "LOG_LEVEL": 2,  # post_office's default: a Log for every message, as the engine writes one
    "BATCH_SIZE": 1000,
    "CELERY_ENABLED": False,
    "MESSAGE_ID_ENABLED": False,  # SES replaces Message-ID anyway
}

AWS_SES_REGION_NAME = env_str("AWS_SES_REGION_NAME", env_str("AWS_DEFAULT_REGION", "us-east-1"))
AWS_SES_REGION_ENDPOINT = f"email.{AWS_SES_REGION_NAME}.amazonaws.com"
AWS_SES_REGION_ENDPOINT_URL = env_str("AWS_SES_ENDPOINT_URL") or None
AWS_SES_CONFIGURATION_SET = env_str("AWS_SES_CONFIGURATION_SET", "cobalt-mail") or None
# Our limiter is global across workers; django-ses' own throttle counts per process.
AWS_SES_AUTO_THROTTLE = None
AWS_SES_ACCESS_KEY_ID = env_str("AWS_ACCESS_KEY_ID")
AWS_SES_SECRET_ACCESS_KEY = env_str("AWS_SECRET_ACCESS_KEY")

# --- Delivery engine
# Messages per second for the whole installation; empty = SES GetSendQuota MaxSendRate.
SEND_RATE = env_float("SEND_RATE", None, minimum=0.01)
SEND_BATCH_SIZE = env_int("SEND_BATCH_SIZE", 200, minimum=1)
SEND_THREADS = env_int("SEND_THREADS", 8, minimum=1)
SEND_DISPATCHERS = env_int("SEND_DISPATCHERS", 2, minimum=1)
SEND_TASK_SECONDS = env_int("SEND_TASK_SECONDS", 60, minimum=5)
SEND_MAX_ATTEMPTS = env_int("SEND_MAX_ATTEMPTS", 5, minimum=1)
# One SES send call: connect and read timeouts (seconds). A call past them is abandoned (and
# retried), although SES may still have accepted the message: a duplicate by nature.
SES_CONNECT_TIMEOUT = env_int("SES_CONNECT_TIMEOUT", 5, minimum=1)
SES_READ_TIMEOUT = env_int("SES_READ_TIMEOUT", 15, minimum=1)
# A claim whose owner has not renewed its heartbeat for this long is requeued (the owner died).
# Default: one whole SES call plus 10 s, so that a silent owner's last calls have ended first.
SEND_STALE_SECONDS = env_int("SEND_STALE_SECONDS", SES_CONNECT_TIMEOUT + SES_READ_TIMEOUT + 10, minimum=10)
RATE_LIMITER = env_str("RATE_LIMITER", "redis" if env_str("REDIS_URL") else "database")
if RATE_LIMITER not in {"redis", "database"}:
    raise ImproperlyConfigured(f"RATE_LIMITER={RATE_LIMITER!r}: use 'database' or 'redis'.")
if RATE_LIMITER == "redis" and not env_str("REDIS_URL"):
    raise ImproperlyConfigured("RATE_LIMITER=redis needs REDIS_URL.")
# SES API the engine sends through: v2 SendEmail (cheaper to encode, 40 MB) or v1 SendRawEmail.
SEND_SES_API = env_str("SEND_SES_API", "v2")
if SEND_SES_API not in {"v1", "v2"}:
    raise ImproperlyConfigured(f"SEND_SES_API={SEND_SES_API!r}: use 'v2' (default) or 'v1'.")
# SES tenants (README "SES tenants"): one per organisation, named on every send (SESv2 TenantName).
SES_TENANTS = env_bool("SES_TENANTS", default=False)
if SES_TENANTS and SEND_SES_API != "v2":
    raise ImproperlyConfigured("SES_TENANTS=1 needs SEND_SES_API=v2: only SES API v2 names a tenant on a send.")

# --- Reputation guard (SES reviews accounts at these rates)
GUARD_MIN_DELIVERIES = env_int("GUARD_MIN_DELIVERIES", 200, minimum=1)
# The reputation guard pauses on evidence, not on one unlucky ratio (tracking.guard.reputation_guard_reason).
GUARD_MIN_COMPLAINTS = env_int("GUARD_MIN_COMPLAINTS", 3, minimum=1)
GUARD_MIN_BOUNCES = env_int("GUARD_MIN_BOUNCES", 10, minimum=1)
GUARD_BOUNCE_RATE = env_float("GUARD_BOUNCE_RATE", 0.05, minimum=0)
GUARD_COMPLAINT_RATE = env_float("GUARD_COMPLAINT_RATE", 0.001, minimum=0)
# Reputation per organisation (organisations/reputation.py): its last 7 days and last 1,000 delivered
# messages against SES's review levels, judged like the guard (Wilson 95% lower bound, GUARD_MIN_*).
ORG_BOUNCE_RATE = env_float("ORG_BOUNCE_RATE", 0.05, minimum=0)
ORG_COMPLAINT_RATE = env_float("ORG_COMPLAINT_RATE", 0.001, minimum=0)
SOFT_BOUNCE_LIMIT = env_int("SOFT_BOUNCE_LIMIT", 3, minimum=1)

# --- SNS webhook
SNS_VERIFY_SIGNATURES = env_bool("SNS_VERIFY_SIGNATURES", default=True)
if not SNS_VERIFY_SIGNATURES and not (DEBUG or TESTING):
    # Unsigned notifications could suppress any address and pause any campaign.
    raise ImproperlyConfigured(
        "SNS_VERIFY_SIGNATURES=0 is allowed with DEBUG=1 only: SNS signatures are the webhook's only guard."
    )
SNS_TOPIC_ARNS = env_list("SNS_TOPIC_ARNS", [])
# Extra certificate URL prefixes to trust besides https://sns.<region>.amazonaws.com/ (local only).
SNS_CERT_TRUSTED_URLS = env_list("SNS_CERT_TRUSTED_URLS", [])
if not DEBUG and any(not prefix.lower().startswith("https://") for prefix in SNS_CERT_TRUSTED_URLS):
    # A certificate fetched over plain HTTP can be swapped on the way: anyone could sign notifications.
    raise ImproperlyConfigured(
        "SNS_CERT_TRUSTED_URLS accepts only https:// prefixes; http:// (the local simulator) needs DEBUG=1."
    )
SNS_MAX_BODY_BYTES = env_int("SNS_MAX_BODY_BYTES", 256 * 1024, minimum=1024)
# Local SES event simulator (make run sets SNS_LOCAL_SIMULATOR=1): trust its topic and its
# self-signed certificate, served on loopback, in development only.
SNS_LOCAL_SIMULATOR = env_bool("SNS_LOCAL_SIMULATOR", default=False)
SNS_SIMULATOR_PORT = env_int("SNS_SIMULATOR_PORT", 5006, minimum=1)
SNS_SIMULATOR_TOPIC_ARN = "arn:aws:sns:us-east-1:000000000000:cobalt-local-simulator"
if SNS_LOCAL_SIMULATOR:
    if not DEBUG:
        raise ImproperlyConfigured("SNS_LOCAL_SIMULATOR=1 trusts a local self-signed certificate: only with DEBUG=1.")
    SNS_TOPIC_ARNS = [*SNS_TOPIC_ARNS, SNS_SIMULATOR_TOPIC_ARN]
    SNS_CERT_TRUSTED_URLS = [*SNS_CERT_TRUSTED_URLS, f"http://127.0.0.1:{SNS_SIMULATOR_PORT}/"]
# Webhook writes: concurrent requests of a process share one transaction (tracking/groupcommit.py).
SNS_GROUP_COMMIT = env_bool("SNS_GROUP_COMMIT", default=not TESTING)

# --- Queue: django-q2. ORM broker by default, Redis when REDIS_URL is set.
REDIS_URL = env_str("REDIS_URL")
Q_CLUSTER = {
    "name": env_str("Q_CLUSTER_NAME", "cobalt"),
    "workers": env_int("Q_WORKERS", 2, minimum=1),
    "recycle": 500,
    # A dispatch task works at most SEND_TASK_SECONDS and re-enqueues itself; "retry" must
    # exceed "timeout" so that the ORM broker never hands a running task to a second worker.
    "timeout": env_int("Q_TIMEOUT", 600, minimum=30),
    "retry": env_int("Q_RETRY", 720, minimum=60),
    "max_attempts": 3,
    "queue_limit": 20,
    "bulk": 5,
    "poll": 0.2,
    "catch_up": False,
    "save_limit": 1000,
    "ack_failures": True,
    "label": "Tasks",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"
if TESTING and env_str("REDIS_URL"):
    Q_CLUSTER["name"] = f"cobalt_test_{env_str('COBALT_TEST_DB_SUFFIX', 'main')}"

# /metrics answers a Prometheus scraper sending "Authorization: Bearer <METRICS_TOKEN>"; unset = off (404).
METRICS_TOKEN = env_str("METRICS_TOKEN") or None

# --- The integration API (/api/v1/): requests a minute per key (429 with Retry-After beyond), and
# the largest request body it reads (a sync of 10,000 contacts is a few MB).
API_RATE_LIMIT = env_int("API_RATE_LIMIT", 600, minimum=1)
API_MAX_BODY_BYTES = env_int("API_MAX_BODY_BYTES", 20 * 1024 * 1024, minimum=1024)
# Webhooks out (api/webhooks.py): endpoints on private, loopback, link-local or reserved
# addresses, and plain http://, are refused unless WEBHOOK_ALLOW_PRIVATE is on (tests, intranets).
# A POST waits WEBHOOK_TIMEOUT seconds for its answer; an endpoint that has failed for
# WEBHOOK_DISABLE_AFTER_HOURS is disabled and its administrators are told.
WEBHOOK_ALLOW_PRIVATE = env_bool("WEBHOOK_ALLOW_PRIVATE", default=False)
WEBHOOK_TIMEOUT = env_float("WEBHOOK_TIMEOUT", 5.0, minimum=0.1)
WEBHOOK_DISABLE_AFTER_HOURS = env_int("WEBHOOK_DISABLE_AFTER_HOURS", 24, minimum=1)

DJANGO_TABLES2_TEMPLATE = "tables/bulma.html"

LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
# text: readable lines (the default); json: one JSON object per line with the context fields
# (common/logs.py), for a log shipper.
LOG_FORMAT = (env_str("LOG_FORMAT", "text") or "text").strip().lower()
if LOG_FORMAT not in {"text", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r} is not a log format: use text or json.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "common.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json" if LOG_FORMAT == "json" else "plain"}
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "botocore": {"level": "WARNING"},
        "django_ses": {"level": "WARNING"},
        # Django's own loggers through the root handler only (its console handler printed every
        # line twice) and at LOG_LEVEL, request lines included: `make run` sets WARNING, so a
        # request or a reload shows only when it went wrong.
        "django": {"level": LOG_LEVEL},
        "django.server": {"level": LOG_LEVEL},
    },
}

if TESTING:
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # No test may ask the internet's DNS: a page test that does not start the loopback DNS
    # server (tests/dns_server.py) asks a port where nothing listens and gets "could not be checked".
    DNS_NAMESERVERS = DNS_NAMESERVERS or ["127.0.0.1:9"]
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
else:
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
    }
