"""Test settings: the real settings, with fast hashing and synchronous django-q2 tasks."""

import os

os.environ.setdefault("Q_SYNC", "1")
os.environ.setdefault("SIMULATOR_CALLBACK_DELAY", "0.2")

from backoffice.settings import *  # noqa: E402,F403
from backoffice.settings import STORAGES  # noqa: E402

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
