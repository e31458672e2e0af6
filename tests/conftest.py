"""Shared fixtures: seeded RNGs, the shared real-data folder, and a throw-away cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, skipping the test (with the reason) when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} is missing (see ../shared/README.md)")
    return path


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path_factory):
    """Seed torch and keep generated datasets out of the user's cache."""
    torch.manual_seed(0)
    monkeypatch.setenv("SHAPMIX_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
