"""Settings, read from the environment (and an optional .env file) with django-environ.

Every name is documented in .env.example. The embedded default (no .env at all) is SQLite, the ORM
broker for django-q2 and the built-in Daraja simulator: nothing to install.
"""

import datetime as dt
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse_lazy
from django.utils.text import format_lazy

from backoffice.sidebar import may_view

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
if (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

MPESA_ENVIRONMENT = env.str("MPESA_ENVIRONMENT", default="simulator")
if MPESA_ENVIRONMENT not in {"simulator", "sandbox", "production"}:
    raise ImproperlyConfigured("MPESA_ENVIRONMENT must be one of simulator, sandbox, production.")

DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
if not SECRET_KEY:
    if MPESA_ENVIRONMENT != "simulator":
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set outside the simulator environment.")
    SECRET_KEY = "simulator-only-insecure-key-set-DJANGO_SECRET_KEY-for-anything-real"
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])
# Only honour X-Forwarded-For / X-Forwarded-Proto when a proxy we run sets them.
BEHIND_PROXY = env.bool("DJANGO_BEHIND_PROXY", default=False)
if BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# HTTPS only, outside the simulator and DEBUG: redirect, HSTS, secure cookies. DJANGO_SECURE_SSL=false turns
# them off for a plain-HTTP test rig (check --deploy then warns W004, W008, W012, W016, rightly so).
# Behind a proxy that terminates TLS, DJANGO_BEHIND_PROXY=true makes its X-Forwarded-Proto count, or every
# request looks like plain HTTP and is redirected forever.
# An empty DJANGO_SECURE_SSL (as in .env.example) means this default.
SECURE_SSL = (
    env.bool("DJANGO_SECURE_SSL")
    if env.str("DJANGO_SECURE_SSL", default="")
    else MPESA_ENVIRONMENT != "simulator" and not DEBUG
)
SECURE_SSL_REDIRECT = SECURE_SSL
SESSION_COOKIE_SECURE = SECURE_SSL
CSRF_COOKIE_SECURE = SECURE_SSL
# One year, the value the browsers' preload list asks for; start lower (e.g. 3600) on a new host name
# if you are not sure every subdomain of it serves HTTPS: browsers remember it for that long.
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=31_536_000) if SECURE_SSL else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
# Off by default, and its warning (security.W021) silenced with it: preloading is a decision about the
# whole registrable domain (hstspreload.org lists apex domains only, and leaving the list takes months),
# not one this app can make for a back office usually served from a subdomain. Opt in when it is yours.
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=False)
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]

INSTALLED_APPS = [
    "unfold",
    "unfold.contrib.filters",
    "unfold.contrib.forms",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_q",
    "anymail",
    "axes",
    "audit",
    "backoffice",
    "payments",
    "orders",
    "notifications",
    "reports",
    "exports",
    "statements",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Database or Redis unreachable (a restart, a failover): 503 with Retry-After, not a 500. Outside the
    # middleware below, so it also sees what they raise.
    "common.outage.ServiceUnavailableMiddleware",
    # Inside SecurityMiddleware, so its headers reach the JSON errors too; outside the rest, so it sees
    # their errors (a bad Host from CommonMiddleware, a CSRF refusal).
    "backoffice.middleware.ApiJsonErrorMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Audit records written during a request know its user and address.
    "audit.middleware.AuditContextMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a lockout into the lockout response.
    "axes.middleware.AxesMiddleware",
]

# Failed sign-ins are counted by django-axes, per account and per address: either reaching the limit locks
# that account (from anywhere) or that address (for any account) for AXES_COOLOFF_MINUTES. A success resets
# the count. Superusers see attempts and lockouts (and lift them) under "Access attempts" in the admin.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_ENABLED = env.bool("AXES_ENABLED", default=True)
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = dt.timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
AXES_LOCKOUT_TEMPLATE = "admin/locked_out.html"
# Renders that template with the admin site's context too (it extends the sign-in page), status 429.
AXES_LOCKOUT_CALLABLE = "backoffice.lockout.lockout_response"
# The address axes counts is the one every audit record names (the last proxy hop only behind our proxy).
AXES_CLIENT_IP_CALLABLE = "common.net.client_ip"
# Passwords never reach the attempt log; axes keeps only the username and the address.
AXES_SENSITIVE_PARAMETERS = ["password", "csrfmiddlewaretoken"]

# Staff sessions end after STAFF_SESSION_IDLE_HOURS without a request (each request renews the cookie).
SESSION_COOKIE_AGE = int(env.float("STAFF_SESSION_IDLE_HOURS", default=8.0) * 3600)
SESSION_SAVE_EVERY_REQUEST = True

ROOT_URLCONF = "backoffice.urls"
WSGI_APPLICATION = "backoffice.wsgi.application"

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
            ],
        },
    },
]

DATABASES = {
    "default": environ.Env.db_url_config(
        env.str("DATABASE_URL", default="") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}"
    )
}
_postgres = DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
# PostgreSQL keeps each web thread's and worker's connection open (a new one costs a process fork on the
# server and several round trips: bench/README.md measured the trivial API view at a quarter of its speed
# without reuse), checked before each request so a restarted server costs one failed check, not an error.
DATABASES["default"].setdefault(
    "CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=600 if _postgres else 0)
)
DATABASES["default"].setdefault(
    "CONN_HEALTH_CHECKS", env.bool("DATABASE_CONN_HEALTH_CHECKS", default=_postgres)
)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # An unreachable server fails a request in seconds (common.outage answers 503) instead of hanging.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web process and the django-q2 cluster share one SQLite file: WAL lets readers run beside the
    # writer, IMMEDIATE takes the write lock at BEGIN (no lock upgrade deadlock), and the timeout waits
    # for the lock instead of raising "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }

REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            # Bounded waits while Redis is down (common.outage answers 503), and one immediate retry on a
            # new connection, so a pooled connection that a Redis restart closed fails no request.
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2, "retry": Retry(NoBackoff(), 1)},
        }
    }
else:
    # Shared by every process on the machine (web, cluster): the Daraja OAuth token lives here. Django's
    # default MAX_ENTRIES (300) would cull live entries (token, throttles, simulator state) under load.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "cache_entries",
            "OPTIONS": {"MAX_ENTRIES": env.int("CACHE_MAX_ENTRIES", default=50_000)},
        }
    }

Q_CLUSTER = {
    "name": env.str("Q_CLUSTER_NAME", default="backoffice"),
    "workers": env.int("Q_WORKERS", default=2),
    # A task may run `timeout` seconds; an un-acknowledged one is redelivered after `retry`, so retry must
    # be larger or a slow task runs twice. Every task is idempotent anyway.
    "timeout": 60,
    "retry": 120,
    "max_attempts": 3,
    "ack_failures": True,
    "catch_up": False,
    "save_limit": 500,
    "poll": 0.5,
    "time_zone": "Africa/Nairobi",
    "sync": env.bool("Q_SYNC", default=False),
    "cache": "default",
    "label": "Task queue",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("sw", "Kiswahili")]
TIME_ZONE = "Africa/Nairobi"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# The model payments belong to; payments never imports the orders app.
PAYMENTS_ORDER_MODEL = "orders.Order"
DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Callback and delivery-report URLs carry a secret path segment ("Not Found: /hooks/...", tracebacks):
    # every handler masks it, and every configured secret value, in the message, arguments and traceback.
    "filters": {"mask_secrets": {"()": "backoffice.log_masking.SecretMaskingFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "django.server": {
            "()": "django.utils.log.ServerFormatter",
            "format": "[{server_time}] {message}",
            "style": "{",
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["mask_secrets"]},
        "django.server": {
            "class": "logging.StreamHandler",
            "formatter": "django.server",
            "filters": ["mask_secrets"],
        },
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # Replaces Django's default handlers for "django": a DEBUG-only console (a second copy of each line)
        # and mail_admins, whose emails carry the whole request, secret path included (ADMINS is unset).
        "django": {"handlers": [], "level": "INFO"},
        # runserver's request lines, in Django's format, masked.
        "django.server": {"handlers": ["django.server"], "level": "INFO", "propagate": False},
        "django.db.backends": {"level": "WARNING"},
        # django-q2 logs every scheduled run at INFO; the sweepers run every minute.
        "django-q": {"level": env.str("Q_LOG_LEVEL", default="WARNING")},
        # django-axes logs every sign-in at INFO; failures and lockouts (WARNING) stay, and the audit trail
        # records every sign-in anyway.
        "axes": {"level": "WARNING"},
    },
}

# --- M-Pesa Daraja -------------------------------------------------------------------------------
SITE_BASE_URL = env.str("SITE_BASE_URL", default="http://127.0.0.1:8000").rstrip("/")
_DARAJA_BASE_URLS = {
    "simulator": f"{SITE_BASE_URL}/simulator/daraja",
    "sandbox": "https://sandbox.safaricom.co.ke",
    "production": "https://api.safaricom.co.ke",
}
# An empty value (as in .env.example) means the default, here and below.
MPESA_BASE_URL = (env.str("MPESA_BASE_URL", default="") or _DARAJA_BASE_URLS[MPESA_ENVIRONMENT]).rstrip("/")
# Sandbox credentials are public (daraja.md §9); the simulator accepts them too.
MPESA_CONSUMER_KEY = env.str("MPESA_CONSUMER_KEY", default="simulator-consumer-key")
MPESA_CONSUMER_SECRET = env.str("MPESA_CONSUMER_SECRET", default="simulator-consumer-secret")
MPESA_SHORTCODE = env.str("MPESA_SHORTCODE", default="174379")
MPESA_PASSKEY = env.str(
    "MPESA_PASSKEY", default="bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919"
)
MPESA_TRANSACTION_TYPE = env.str("MPESA_TRANSACTION_TYPE", default="CustomerPayBillOnline")
MPESA_PARTY_B = env.str("MPESA_PARTY_B", default="") or MPESA_SHORTCODE
MPESA_CALLBACK_BASE_URL = (env.str("MPESA_CALLBACK_BASE_URL", default="") or SITE_BASE_URL).rstrip("/")
# Secret path segment of every callback URL we give Daraja; derived from SECRET_KEY when unset.
MPESA_CALLBACK_TOKEN = env.str("MPESA_CALLBACK_TOKEN", default="")
MPESA_CALLBACK_ALLOWED_IPS = env.list("MPESA_CALLBACK_ALLOWED_IPS", default=[])
# The original service's unauthenticated path; callbacks there are confirmed with an STK Query.
MPESA_LEGACY_CALLBACK_ENABLED = env.bool(
    "MPESA_LEGACY_CALLBACK_ENABLED", default=MPESA_ENVIRONMENT == "simulator"
)
MPESA_CALLBACK_MAX_BYTES = env.int("MPESA_CALLBACK_MAX_BYTES", default=64 * 1024)
# "worker": a Daraja request is answered once stored, and a django-q2 task applies it (the production
# topology: Redis delivers the task at once). "request": applied before answering (the embedded default,
# where SQLite has one writer and the ORM broker is polled). Either way, the inbox sweeper applies a row
# nobody applied within INBOX_RETRY_AFTER.
MPESA_CALLBACK_APPLY = env.str("MPESA_CALLBACK_APPLY", default="worker" if REDIS_URL else "request")
if MPESA_CALLBACK_APPLY not in ("worker", "request"):
    raise ImproperlyConfigured("MPESA_CALLBACK_APPLY must be 'worker' or 'request'.")
MPESA_CONNECT_TIMEOUT = env.float("MPESA_CONNECT_TIMEOUT", default=5.0)
MPESA_READ_TIMEOUT = env.float("MPESA_READ_TIMEOUT", default=20.0)
MPESA_ACCOUNT_REFERENCE_PREFIX = env.str("MPESA_ACCOUNT_REFERENCE_PREFIX", default="")
# Seconds after the push before the first STK Query, and the prompt's lifetime plus margin.
MPESA_FIRST_QUERY_DELAY = env.int("MPESA_FIRST_QUERY_DELAY", default=30)
MPESA_PAYMENT_DEADLINE = env.int("MPESA_PAYMENT_DEADLINE", default=300)
ORDER_PAYMENT_WINDOW_HOURS = env.int("ORDER_PAYMENT_WINDOW_HOURS", default=24)

# --- Refunds and reconciliation -------------------------------------------------------------------
# Base URL of ResultURL / QueueTimeOutURL for Reversal, B2C and Transaction Status; empty = the callback base.
MPESA_RESULT_BASE_URL = env.str("MPESA_RESULT_BASE_URL", default="").rstrip("/")
# The API operator (initiator) for Reversal, B2C and Transaction Status. Its password is encrypted with
# Safaricom's certificate for the environment; or give MPESA_SECURITY_CREDENTIAL already encrypted.
_SIMULATOR = MPESA_ENVIRONMENT == "simulator"
MPESA_INITIATOR_NAME = env.str("MPESA_INITIATOR_NAME", default="") or ("testapi" if _SIMULATOR else "")
MPESA_INITIATOR_PASSWORD = env.str("MPESA_INITIATOR_PASSWORD", default="") or (
    "Safaricom999!*!" if _SIMULATOR else ""
)
MPESA_CERTIFICATE_PATH = env.str("MPESA_CERTIFICATE_PATH", default="") or (
    str(BASE_DIR / "payments" / "simulator" / "certs" / "simulator-cert.pem") if _SIMULATOR else ""
)
MPESA_SECURITY_CREDENTIAL = env.str("MPESA_SECURITY_CREDENTIAL", default="")
# B2C shortcode for partial refunds; without it only full refunds (Reversal) are possible.
MPESA_B2C_SHORTCODE = env.str("MPESA_B2C_SHORTCODE", default="")
# Refunds above this amount (KES) need a second person with payments.approve_refund.
REFUND_APPROVAL_THRESHOLD = env.int("REFUND_APPROVAL_THRESHOLD", default=5000)
# STK Query backoff for attempts without a callback: first interval, doubled per query, capped.
MPESA_QUERY_INTERVAL = env.int("MPESA_QUERY_INTERVAL", default=20)
MPESA_QUERY_INTERVAL_MAX = env.int("MPESA_QUERY_INTERVAL_MAX", default=120)
# A `pending` M-Pesa attempt this old never got an answer to its push (the process stopped mid-push).
MPESA_PENDING_TIMEOUT = env.int("MPESA_PENDING_TIMEOUT", default=300)
# Inbox rows still `received` this long after arrival were dropped by a dead worker: process them again,
# like `failed` and `unmatched` rows, up to INBOX_MAX_ATTEMPTS processing attempts each.
INBOX_RETRY_AFTER = env.int("INBOX_RETRY_AFTER", default=60)
INBOX_MAX_ATTEMPTS = env.int("INBOX_MAX_ATTEMPTS", default=5)
# A refund still `submitting` this long after it was recorded lost its worker mid-call: it becomes
# `unknown` (never resent). Must exceed the task timeout and MPESA_READ_TIMEOUT.
REFUND_SUBMITTING_TIMEOUT = env.int("REFUND_SUBMITTING_TIMEOUT", default=180)
# A `submitted` refund with no Result after this many seconds becomes `unknown`.
REFUND_RESULT_TIMEOUT = env.int("REFUND_RESULT_TIMEOUT", default=600)
# Transaction Status for `unknown` refunds: first after this delay, then doubled per query, capped.
REFUND_STATUS_INTERVAL = env.int("REFUND_STATUS_INTERVAL", default=120)
REFUND_STATUS_INTERVAL_MAX = env.int("REFUND_STATUS_INTERVAL_MAX", default=3600)

# --- Statement reconciliation -------------------------------------------------------------------------
# A statement line whose receipt we do not know is matched to a payment with the same amount and the same
# visible phone digits that Daraja accepted at most this many minutes before the line's completion time.
STATEMENT_MATCH_WINDOW_MINUTES = env.int("STATEMENT_MATCH_WINDOW_MINUTES", default=10)
# A completed payment is "not on the statement" once a statement (or pulled window) covering its
# completion time plus this many minutes has been imported without its line.
STATEMENT_MISSING_GRACE_MINUTES = env.int("STATEMENT_MISSING_GRACE_MINUTES", default=30)
STATEMENT_IMPORT_MAX_BYTES = env.int("STATEMENT_IMPORT_MAX_BYTES", default=100 * 1024 * 1024)
# Daraja Pull Transactions (for shortcodes registered for it): every MPESA_PULL_INTERVAL_MINUTES the last
# MPESA_PULL_LOOKBACK_HOURS of C2B transactions are pulled into the statement store (Daraja keeps 48 h).
# An empty value (as in .env.example) means the default: on with the simulator, off otherwise.
MPESA_PULL_TRANSACTIONS_ENABLED = (
    env.bool("MPESA_PULL_TRANSACTIONS_ENABLED")
    if env.str("MPESA_PULL_TRANSACTIONS_ENABLED", default="")
    else _SIMULATOR
)
MPESA_PULL_INTERVAL_MINUTES = env.int("MPESA_PULL_INTERVAL_MINUTES", default=15)
MPESA_PULL_LOOKBACK_HOURS = env.int("MPESA_PULL_LOOKBACK_HOURS", default=3)
# The Safaricom number registered with the shortcode for Pull Transactions (register once).
MPESA_PULL_NOMINATED_NUMBER = env.str("MPESA_PULL_NOMINATED_NUMBER", default="")
# "No such transaction" from Transaction Status fails a refund only this long after Daraja accepted it.
REFUND_NOT_FOUND_GRACE = env.int("REFUND_NOT_FOUND_GRACE", default=900)

# --- Notifications --------------------------------------------------------------------------------
# SMS: "local" records messages as Notification rows and logs them (phone masked); "africastalking" sends.
SMS_BACKEND = env.str("SMS_BACKEND", default="local")
if SMS_BACKEND not in {"local", "africastalking"}:
    raise ImproperlyConfigured("SMS_BACKEND must be local or africastalking.")
# The local backend takes this long to record a message, like a slow provider (load and chaos runs).
SMS_LOCAL_LATENCY_MS = env.int("SMS_LOCAL_LATENCY_MS", default=0)
# Username "sandbox" talks to AT's sandbox host. AFRICASTALKING_API_URL replaces the host (tests, proxies).
AFRICASTALKING_USERNAME = env.str("AFRICASTALKING_USERNAME", default="sandbox")
AFRICASTALKING_API_KEY = env.str("AFRICASTALKING_API_KEY", default="")
AFRICASTALKING_SENDER_ID = env.str("AFRICASTALKING_SENDER_ID", default="")
AFRICASTALKING_API_URL = env.str("AFRICASTALKING_API_URL", default="").rstrip("/")
AFRICASTALKING_CONNECT_TIMEOUT = env.float("AFRICASTALKING_CONNECT_TIMEOUT", default=3.05)
AFRICASTALKING_READ_TIMEOUT = env.float("AFRICASTALKING_READ_TIMEOUT", default=10.0)
if SMS_BACKEND == "africastalking" and not AFRICASTALKING_API_KEY:
    raise ImproperlyConfigured("SMS_BACKEND=africastalking needs AFRICASTALKING_API_KEY.")

# Email: EMAIL_ESP names the Anymail backend; "console" (default) prints messages to the console.
# ANYMAIL_API_KEY is the ESP's main credential, ANYMAIL_OPTIONS (JSON) any other backend option.
_ANYMAIL_ESPS = {
    "amazon_ses", "brevo", "mailersend", "mailgun", "mailjet", "mailtrap", "mandrill", "postal",
    "postmark", "resend", "scaleway", "sendgrid", "sparkpost", "unisender_go",
}  # fmt: skip
# The option each ESP calls its main credential (Amazon SES uses boto3's AWS_* credentials instead).
_ANYMAIL_KEY_OPTION = {"postmark": "server_token", "mailersend": "api_token", "mailtrap": "api_token",
                       "scaleway": "secret_key", "amazon_ses": ""}  # fmt: skip
EMAIL_ESP = env.str("EMAIL_ESP", default="console").strip().lower()
if EMAIL_ESP == "console":
    _MAILER = {"BACKEND": "anymail.backends.console.EmailBackend"}
elif EMAIL_ESP in _ANYMAIL_ESPS:
    _options = env.json("ANYMAIL_OPTIONS", default={})
    _key_option = _ANYMAIL_KEY_OPTION.get(EMAIL_ESP, "api_key")
    if _key_option and env.str("ANYMAIL_API_KEY", default=""):
        _options[_key_option] = env.str("ANYMAIL_API_KEY")
    if _key_option and _key_option not in _options:
        raise ImproperlyConfigured(f"EMAIL_ESP={EMAIL_ESP} needs ANYMAIL_API_KEY.")
    if env.str("ANYMAIL_API_URL", default=""):
        _options["api_url"] = env.str("ANYMAIL_API_URL")
    _MAILER = {"BACKEND": f"anymail.backends.{EMAIL_ESP}.EmailBackend", "OPTIONS": _options}
else:
    raise ImproperlyConfigured(f"EMAIL_ESP must be console or one of {', '.join(sorted(_ANYMAIL_ESPS))}.")
# --- Email files and report emails (reports app) -----------------------------------------------------
# EMAIL_FILE_PATH: when set, every outgoing email is written to a file in that folder (Django's file
# backend), whatever EMAIL_ESP says. Django 6.1 refuses an EMAIL_FILE_PATH *setting* beside MAILERS, so the
# variable only feeds the mailer's options.
if env.str("EMAIL_FILE_PATH", default=""):
    _MAILER = {
        "BACKEND": "django.core.mail.backends.filebased.EmailBackend",
        "OPTIONS": {"file_path": env.str("EMAIL_FILE_PATH")},
    }
# Stored report attachments (too large to email) live under MEDIA_ROOT; they are served only by the
# staff-only download view, never as public media.
MEDIA_ROOT = env.str("MEDIA_ROOT", default="") or str(BASE_DIR / "var" / "media")
# An attachment larger than this (bytes) is stored and the email links to a staff-only download.
REPORT_MAX_ATTACHMENT_BYTES = env.int("REPORT_MAX_ATTACHMENT_BYTES", default=10 * 1024 * 1024)
# A scheduled report that fails is tried again after REPORT_RETRY_SECONDS, REPORT_MAX_ATTEMPTS in all.
REPORT_MAX_ATTEMPTS = env.int("REPORT_MAX_ATTEMPTS", default=3)
REPORT_RETRY_SECONDS = env.int("REPORT_RETRY_SECONDS", default=600)
# Seconds a report task may run (a month of a million attempts takes minutes, not Q_CLUSTER's 60 s).
REPORT_TASK_TIMEOUT = env.int("REPORT_TASK_TIMEOUT", default=1800)
MAILERS = {"default": _MAILER}
ANYMAIL = {"REQUESTS_TIMEOUT": env.float("ANYMAIL_REQUESTS_TIMEOUT", default=20.0)}
# "user:password" for HTTP Basic auth on /anymail/<esp>/tracking/ (register https://user:password@host/...).
if env.str("ANYMAIL_WEBHOOK_SECRET", default=""):
    ANYMAIL["WEBHOOK_SECRET"] = env.str("ANYMAIL_WEBHOOK_SECRET")
NOTIFICATIONS_MAILER = "default"
NOTIFICATIONS_FROM_EMAIL = env.str("NOTIFICATIONS_FROM_EMAIL", default="Back Office <noreply@localhost>")
NOTIFICATIONS_STAFF_EMAILS = env.list("NOTIFICATIONS_STAFF_EMAILS", default=[])
NOTIFICATIONS_BUSINESS_NAME = env.str("NOTIFICATIONS_BUSINESS_NAME", default="Duka")
# Secret path segment of the SMS delivery-report URL; derived from SECRET_KEY when unset.
NOTIFICATIONS_WEBHOOK_TOKEN = env.str("NOTIFICATIONS_WEBHOOK_TOKEN", default="")
# Retries: min(2^(n-1) * base, max) seconds after failed attempt n; failed after MAX_ATTEMPTS.
NOTIFICATIONS_MAX_ATTEMPTS = env.int("NOTIFICATIONS_MAX_ATTEMPTS", default=6)
NOTIFICATIONS_RETRY_BASE_SECONDS = env.int("NOTIFICATIONS_RETRY_BASE_SECONDS", default=30)
NOTIFICATIONS_RETRY_MAX_SECONDS = env.int("NOTIFICATIONS_RETRY_MAX_SECONDS", default=3600)
# A message `sending` this long lost its worker; it counts as possibly sent (one resend at most).
NOTIFICATIONS_SENDING_STALE_SECONDS = env.int("NOTIFICATIONS_SENDING_STALE_SECONDS", default=300)

# --- Alerts (reports.alerts) ----------------------------------------------------------------------
# Who is told when an alert opens, is still open (reminder) and resolves: these addresses by email
# (default: NOTIFICATIONS_STAFF_EMAILS), and these on-call phone numbers by SMS (optional).
ALERT_EMAILS = env.list("ALERT_EMAILS", default=[]) or NOTIFICATIONS_STAFF_EMAILS
ALERT_SMS_NUMBERS = env.list("ALERT_SMS_NUMBERS", default=[])
# Seeds of the default alert rules, copied into them when the migration creates them; after that the rules
# are edited in the admin (Alerts > Alert rules). A 30-minute window, at least 20 finished attempts,
# attempt success below 0.50 or technical success below 0.80; callback silence after 10 minutes.
ALERT_WINDOW_MINUTES = env.int("ALERT_WINDOW_MINUTES", default=30)
ALERT_MIN_ATTEMPTS = env.int("ALERT_MIN_ATTEMPTS", default=20)
ALERT_SUCCESS_FLOOR = env.float("ALERT_SUCCESS_FLOOR", default=0.50)
ALERT_TECHNICAL_FLOOR = env.float("ALERT_TECHNICAL_FLOOR", default=0.80)
ALERT_CALLBACK_SILENCE_MINUTES = env.int("ALERT_CALLBACK_SILENCE_MINUTES", default=10)

# Built-in simulator: seconds before it posts a callback.
SIMULATOR_CALLBACK_DELAY = env.float("SIMULATOR_CALLBACK_DELAY", default=3.0)
# Built-in simulator under load tests: STK Query answers this late; each API takes at most this many requests a
# second and answers Spike Arrest past it (0: no limit); a minted token lives this long.
SIMULATOR_QUERY_LATENCY_MS = env.int("SIMULATOR_QUERY_LATENCY_MS", default=0)
# Reversal and B2C answer this late (chaos runs kill the worker waiting for them).
SIMULATOR_REFUND_LATENCY_MS = env.int("SIMULATOR_REFUND_LATENCY_MS", default=0)
SIMULATOR_RATE_LIMIT_PER_SECOND = env.int("SIMULATOR_RATE_LIMIT_PER_SECOND", default=0)
SIMULATOR_TOKEN_SECONDS = env.int("SIMULATOR_TOKEN_SECONDS", default=3600)
# Requests a second all our processes together send to each Daraja API (0: no limit). Safaricom publishes no
# figure: put the one agreed for the app, and Spike Arrest (500.003.02) never answers us. A sweep then claims
# what this lets through until the next sweep, a minute later.
MPESA_RATE_LIMIT_PER_SECOND = env.int("MPESA_RATE_LIMIT_PER_SECOND", default=0)

# --- Analytics ----------------------------------------------------------------------------------------
# Figures people look at (dashboard, reports API) are at most this many seconds old; 0 computes every time.
REPORTS_CACHE_SECONDS = env.int("REPORTS_CACHE_SECONDS", default=60)

# --- List exports (exports app) -------------------------------------------------------------------
# An export of at most this many rows is written at once and downloads from the dialog; a longer one is
# written by a task and listed under Exports when ready. Files are kept EXPORT_RETENTION_HOURS under
# MEDIA_ROOT/exports/ (served only to their requester, by a POST that is audited), then deleted.
EXPORT_SYNC_MAX_ROWS = env.int("EXPORT_SYNC_MAX_ROWS", default=50_000)
EXPORT_RETENTION_HOURS = env.int("EXPORT_RETENTION_HOURS", default=24)
# Seconds an export task may run (a million rows as XLSX takes minutes, not Q_CLUSTER's 60 s).
EXPORT_TASK_TIMEOUT = env.int("EXPORT_TASK_TIMEOUT", default=1800)

# --- Admin (django-unfold) ----------------------------------------------------------------------
UNFOLD = {
    "SITE_TITLE": "M-Pesa Back Office",
    "SITE_HEADER": "M-Pesa Back Office",
    "SITE_SYMBOL": "payments",
    "ENVIRONMENT": "backoffice.admin_site.environment_callback",
    "DASHBOARD_CALLBACK": "reports.dashboard.dashboard_callback",
    "SIDEBAR": {
        "show_search": True,
        "show_all_applications": False,
        "navigation": [
            {
                "title": "Overview",
                "items": [
                    {"title": "Dashboard", "icon": "dashboard", "link": reverse_lazy("admin:index")},
                    {
                        "title": "Alerts",
                        "icon": "notifications_active",
                        "link": format_lazy("{}?active=yes", reverse_lazy("admin:reports_alert_changelist")),
                        "badge": "reports.alerts.selectors.active_alerts_badge",
                        "badge_variant": "danger",
                        "badge_style": "solid",
                        "permission": may_view("reports.alert"),
                    },
                    {
                        "title": "Alert rules",
                        "icon": "rule",
                        "link": reverse_lazy("admin:reports_alertrule_changelist"),
                        "permission": may_view("reports.alertrule"),
                    },
                    {
                        "title": "Report subscriptions",
                        "icon": "schedule_send",
                        "link": reverse_lazy("admin:reports_reportsubscription_changelist"),
                        "permission": may_view("reports.reportsubscription"),
                    },
                    {
                        "title": "Report runs",
                        "icon": "outgoing_mail",
                        "link": reverse_lazy("admin:reports_reportrun_changelist"),
                        "permission": may_view("reports.reportrun"),
                    },
                    {
                        "title": "Exports",
                        "icon": "download",
                        "link": reverse_lazy("admin:exports_export_changelist"),
                        "permission": may_view("exports.export"),
                    },
                    {
                        "title": "Audit trail",
                        "icon": "policy",
                        "link": reverse_lazy("admin:audit_auditentry_changelist"),
                        "permission": may_view("audit.auditentry"),
                    },
                ],
            },
            {
                "title": "Sales",
                "separator": True,
                "items": [
                    {
                        "title": "Orders",
                        "icon": "shopping_cart",
                        "link": reverse_lazy("admin:orders_order_changelist"),
                        "permission": may_view("orders.order"),
                    },
                    {
                        "title": "Products",
                        "icon": "inventory_2",
                        "link": reverse_lazy("admin:orders_product_changelist"),
                        "permission": may_view("orders.product"),
                    },
                    {
                        "title": "Customers",
                        "icon": "group",
                        "link": reverse_lazy("admin:orders_customer_changelist"),
                        "permission": may_view("orders.customer"),
                    },
                ],
            },
            {
                "title": "Payments",
                "separator": True,
                "items": [
                    {
                        "title": "Payments",
                        "icon": "payments",
                        "link": reverse_lazy("admin:payments_payment_changelist"),
                        "badge": "payments.admin.needs_review_badge",
                        "permission": may_view("payments.payment"),
                    },
                    {
                        "title": "Refunds",
                        "icon": "currency_exchange",
                        "link": reverse_lazy("admin:payments_refund_changelist"),
                        "badge": "payments.admin.refunds_attention_badge",
                        "permission": may_view("payments.refund"),
                    },
                    {
                        "title": "Events",
                        "icon": "history",
                        "link": reverse_lazy("admin:payments_paymentevent_changelist"),
                        "permission": may_view("payments.paymentevent"),
                    },
                    {
                        "title": "Callback inbox",
                        "icon": "inbox",
                        "link": reverse_lazy("admin:payments_callbackinbox_changelist"),
                        "badge": "payments.admin.inbox_attention_badge",
                        "permission": may_view("payments.callbackinbox"),
                    },
                ],
            },
            {
                "title": "Reconciliation",
                "separator": True,
                "items": [
                    {
                        "title": "Statement imports",
                        "icon": "upload_file",
                        "link": reverse_lazy("admin:statements_statementimport_changelist"),
                        "permission": may_view("statements.statementimport"),
                    },
                    {
                        "title": "Statement lines",
                        "icon": "receipt_long",
                        "link": reverse_lazy("admin:statements_statementline_changelist"),
                        "permission": may_view("statements.statementline"),
                    },
                    {
                        "title": "Reconciliation runs",
                        "icon": "balance",
                        "link": reverse_lazy("admin:statements_reconciliationrun_changelist"),
                        "permission": may_view("statements.reconciliationrun"),
                    },
                    {
                        "title": "Reconciliation exceptions",
                        "icon": "rule_settings",
                        "link": reverse_lazy("admin:statements_reconciliationitem_changelist"),
                        "badge": "statements.admin.open_exceptions_badge",
                        "permission": may_view("statements.reconciliationitem"),
                    },
                ],
            },
            {
                "title": "Notifications",
                "separator": True,
                "items": [
                    {
                        "title": "Messages",
                        "icon": "sms",
                        "link": reverse_lazy("admin:notifications_notification_changelist"),
                        "permission": may_view("notifications.notification"),
                    },
                    {
                        "title": "Message templates",
                        "icon": "edit_note",
                        "link": reverse_lazy("admin:notifications_messagetemplate_changelist"),
                        "permission": may_view("notifications.messagetemplate"),
                    },
                    {
                        "title": "Notification rules",
                        "icon": "toggle_on",
                        "link": reverse_lazy("admin:notifications_notificationrule_changelist"),
                        "permission": may_view("notifications.notificationrule"),
                    },
                ],
            },
            {
                "title": "System",
                "separator": True,
                "items": [
                    {
                        "title": "API tokens",
                        "icon": "key",
                        "link": reverse_lazy("admin:backoffice_apitoken_changelist"),
                        "permission": may_view("backoffice.apitoken"),
                    },
                    {
                        "title": "Users",
                        "icon": "person",
                        "link": reverse_lazy("admin:auth_user_changelist"),
                        "permission": may_view("auth.user"),
                    },
                    {
                        "title": "Roles",
                        "icon": "badge",
                        "link": reverse_lazy("admin:auth_group_changelist"),
                        "permission": may_view("auth.group"),
                    },
                    {
                        "title": "Schedules",
                        "icon": "schedule",
                        "link": reverse_lazy("admin:django_q_schedule_changelist"),
                        "permission": may_view("django_q.schedule"),
                    },
                    {
                        "title": "Failed tasks",
                        "icon": "error",
                        "link": reverse_lazy("admin:django_q_failure_changelist"),
                        "permission": may_view("django_q.failure"),
                    },
                    {
                        "title": "Sign-in lockouts",
                        "icon": "lock_person",
                        "link": reverse_lazy("admin:axes_accessattempt_changelist"),
                        "permission": may_view("axes.accessattempt"),
                    },
                    {
                        "title": "Sign-in log",
                        "icon": "login",
                        "link": reverse_lazy("admin:axes_accesslog_changelist"),
                        "permission": may_view("axes.accesslog"),
                    },
                ],
            },
        ],
    },
}
