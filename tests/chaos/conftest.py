"""The chaos runs: real processes on PostgreSQL and Redis, broken on purpose (scripts/chaos/run).

They take minutes, restart the machine's shared PostgreSQL and Redis, and need both running, so they only
run with CHAOS=1; `make test` collects and skips them.
"""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.chaos.stack import keep_logs, running_stack


def pytest_collection_modifyitems(config, items):
    if os.environ.get("CHAOS") == "1":
        return
    skip = pytest.mark.skip(reason="chaos run: CHAOS=1, PostgreSQL and Redis (bash scripts/chaos/run)")
    for item in items:
        if "chaos" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def stack(django_db_blocker):
    """One running topology for all the scenarios (each works on orders of its own)."""
    workdir = Path(tempfile.mkdtemp(prefix="backoffice-chaos-"))
    try:
        with django_db_blocker.unblock(), running_stack(workdir) as running:
            yield running
    finally:
        if os.environ.get("CHAOS_LOG_DIR"):
            keep_logs(workdir, os.environ["CHAOS_LOG_DIR"])
            shutil.rmtree(workdir, ignore_errors=True)
        print(f"chaos: server logs in {os.environ.get('CHAOS_LOG_DIR') or workdir}")


@pytest.fixture
def scratch_db(django_db_blocker):
    """Database reads of the test itself (the scratch database, through the `chaos` alias)."""
    with django_db_blocker.unblock():
        yield
