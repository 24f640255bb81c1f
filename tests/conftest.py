"""Shared test set-up: Prefect in a throwaway home, one session-scoped test harness."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

_PREFECT_HOME = tempfile.mkdtemp(prefix="staffcast-prefect-")
os.environ.setdefault("PREFECT_HOME", _PREFECT_HOME)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.pop("PREFECT_API_URL", None)
logging.getLogger("cmdstanpy").disabled = True

AS_OF = date(2025, 11, 3)
"""A Monday: the as_of every small-agency test uses."""


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One Prefect test server for the whole session (starting one costs seconds)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def small_agency(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A small demo agency (8 facilities, about 1.3 years) in a session-wide temp folder."""
    from staffcast.demo_agency import build_demo_agency

    path = tmp_path_factory.mktemp("agency") / "ops.db"
    return build_demo_agency(path, AS_OF, facilities=8, years=1.3, seed=3)


@pytest.fixture()
def staffcast_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """STAFFCAST_HOME pointed at a fresh folder."""
    home = tmp_path / "home"
    monkeypatch.setenv("STAFFCAST_HOME", str(home))
    return home
