"""Fixtures shared by every test package."""

from __future__ import annotations

from pathlib import Path

import pytest

# A real Orthanc with its DICOMweb plugin, for the PACS tests (skips where it is not installed).
from tests.orthanc import archive, orthanc, orthanc_server  # noqa: F401

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or a skip that says it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}: these tests need ../shared/data beside the repository")
    return SHARED_DATA
