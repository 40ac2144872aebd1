"""Settings, read from the environment (and an optional .env file) with django-environ.

Every name is documented in .env.example. The embedded default (no .env at all) is SQLite, the ORM
broker for django-q2 and the built-in Daraja simulator: nothing to install.
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse_lazy

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
    "backoffice",
    "payments",
    "orders",
    "notifications",
    "reports",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

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

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=0))
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
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    # Shared by every process on the machine (web, cluster): the Daraja OAuth token lives here.
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "cache_entries"}
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
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- M-Pesa Daraja -------------------------------------------------------------------------------
SITE_BASE_URL = env.str("SITE_BASE_URL", default="http://127.0.0.1:8000").rstrip("/")
_DARAJA_BASE_URLS = {
    "simulator": f"{SITE_BASE_URL}/simulator/daraja",
    "sandbox": "https://sandbox.safaricom.co.ke",
    "production": "https://api.safaricom.co.ke",
}
MPESA_BASE_URL = env.str("MPESA_BASE_URL", default=_DARAJA_BASE_URLS[MPESA_ENVIRONMENT]).rstrip("/")
# Sandbox credentials are public (daraja.md §9); the simulator accepts them too.
MPESA_CONSUMER_KEY = env.str("MPESA_CONSUMER_KEY", default="simulator-consumer-key")
MPESA_CONSUMER_SECRET = env.str("MPESA_CONSUMER_SECRET", default="simulator-consumer-secret")
MPESA_SHORTCODE = env.str("MPESA_SHORTCODE", default="174379")
MPESA_PASSKEY = env.str(
    "MPESA_PASSKEY", default="bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919"
)
MPESA_TRANSACTION_TYPE = env.str("MPESA_TRANSACTION_TYPE", default="CustomerPayBillOnline")
MPESA_PARTY_B = env.str("MPESA_PARTY_B", default="") or MPESA_SHORTCODE
MPESA_CALLBACK_BASE_URL = env.str("MPESA_CALLBACK_BASE_URL", default=SITE_BASE_URL).rstrip("/")
# Secret path segment of every callback URL we give Daraja; derived from SECRET_KEY when unset.
MPESA_CALLBACK_TOKEN = env.str("MPESA_CALLBACK_TOKEN", default="")
MPESA_CALLBACK_ALLOWED_IPS = env.list("MPESA_CALLBACK_ALLOWED_IPS", default=[])
# The original service's unauthenticated path; callbacks there are confirmed with an STK Query.
MPESA_LEGACY_CALLBACK_ENABLED = env.bool("MPESA_LEGACY_CALLBACK_ENABLED", default=True)
MPESA_CALLBACK_MAX_BYTES = env.int("MPESA_CALLBACK_MAX_BYTES", default=64 * 1024)
MPESA_CONNECT_TIMEOUT = env.float("MPESA_CONNECT_TIMEOUT", default=5.0)
MPESA_READ_TIMEOUT = env.float("MPESA_READ_TIMEOUT", default=20.0)
MPESA_ACCOUNT_REFERENCE_PREFIX = env.str("MPESA_ACCOUNT_REFERENCE_PREFIX", default="")
# Seconds after the push before the first STK Query, and the prompt's lifetime plus margin.
MPESA_FIRST_QUERY_DELAY = env.int("MPESA_FIRST_QUERY_DELAY", default=30)
MPESA_PAYMENT_DEADLINE = env.int("MPESA_PAYMENT_DEADLINE", default=300)
ORDER_PAYMENT_WINDOW_HOURS = env.int("ORDER_PAYMENT_WINDOW_HOURS", default=24)

# --- Refunds and reconciliation -------------------------------------------------------------------

# --- Notifications --------------------------------------------------------------------------------

# Built-in simulator: seconds before it posts a callback.
SIMULATOR_CALLBACK_DELAY = env.float("SIMULATOR_CALLBACK_DELAY", default=3.0)

# --- Admin (django-unfold) ----------------------------------------------------------------------
UNFOLD = {
    "SITE_TITLE": "M-Pesa Back Office",
    "SITE_HEADER": "M-Pesa Back Office",
    "SITE_SYMBOL": "payments",
    "ENVIRONMENT": "backoffice.admin_site.environment_callback",
    "SIDEBAR": {
        "show_search": True,
        "show_all_applications": False,
        "navigation": [
            {
                "title": "Sales",
                "separator": True,
                "items": [
                    {
                        "title": "Orders",
                        "icon": "shopping_cart",
                        "link": reverse_lazy("admin:orders_order_changelist"),
                    },
                    {
                        "title": "Products",
                        "icon": "inventory_2",
                        "link": reverse_lazy("admin:orders_product_changelist"),
                    },
                    {
                        "title": "Customers",
                        "icon": "group",
                        "link": reverse_lazy("admin:orders_customer_changelist"),
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
                    },
                    {
                        "title": "Events",
                        "icon": "history",
                        "link": reverse_lazy("admin:payments_paymentevent_changelist"),
                    },
                    {
                        "title": "Callback inbox",
                        "icon": "inbox",
                        "link": reverse_lazy("admin:payments_callbackinbox_changelist"),
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
                    },
                    {"title": "Users", "icon": "person", "link": reverse_lazy("admin:auth_user_changelist")},
                    {
                        "title": "Schedules",
                        "icon": "schedule",
                        "link": reverse_lazy("admin:django_q_schedule_changelist"),
                    },
                    {
                        "title": "Failed tasks",
                        "icon": "error",
                        "link": reverse_lazy("admin:django_q_failure_changelist"),
                    },
                ],
            },
        ],
    },
}
