"""Media tests run the real engine (sippy + our RTP) against real sipp processes on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def media_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared across tests so the TTS prompt is synthesised once per session (as in production)."""
    return tmp_path_factory.mktemp("media-cache")
