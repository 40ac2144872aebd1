"""Test settings: the real settings, with fast hashing and synchronous django-q2 tasks."""

import os

os.environ.setdefault("Q_SYNC", "1")
# Each test's connection closes with it (pytest-django's databases are dropped after the run).
os.environ.setdefault("DATABASE_CONN_MAX_AGE", "0")
os.environ.setdefault("SIMULATOR_CALLBACK_DELAY", "0.2")
# Every test sees the figures of its own data at once (tests of the report cache turn it on).
os.environ.setdefault("REPORTS_CACHE_SECONDS", "0")

from backoffice.settings import *  # noqa: E402,F403
from backoffice.settings import DATABASES, STORAGES  # noqa: E402

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not :memory:, so the live server, the simulator's delivery threads and the test share it.
    import tempfile

    DATABASES["default"]["TEST"] = {
        "NAME": os.path.join(tempfile.gettempdir(), f"backoffice-test-{os.getpid()}.sqlite3")
    }

# Admin pages in live-server and browser tests serve static files straight from the apps.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
