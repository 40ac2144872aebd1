# The browser tests here drive Debian's chromium like tests/browser does.
from tests.browser.conftest import admin_login, browser_type_launch_args  # noqa: F401
