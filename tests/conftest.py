"""Shared fixtures: paths to the shared DSMTS data (tests that need it skip when it is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DSMTS = SHARED / "dsmts"


@pytest.fixture
def dsmts_dir() -> Path:
    if not (DSMTS / "00001").is_dir():
        pytest.skip(f"DSMTS cases not found at {DSMTS}")
    return DSMTS
