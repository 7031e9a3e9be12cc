"""Fixtures of the report tests: the system's Chromium (never a downloaded browser), found as
the service finds it (`CASETRAIL_CHROMIUM`, default `chromium` on PATH). Browser tests are
marked `browser`; without Chromium they skip on a developer's machine and fail when CI=true
(`.ci/run` installs Debian's `chromium`), as the PostgreSQL tests do (tests/conftest.py)."""

from __future__ import annotations

import os
import shutil

import pytest

from gateway.settings import Settings


def chromium_path() -> str:
    configured = Settings.from_env().chromium
    found = shutil.which(configured)
    if found is None:
        message = f"Chromium ({configured!r}) is not installed: apt-get install chromium"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture
def chromium() -> str:
    return chromium_path()
