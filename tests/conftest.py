"""Shared fixtures: seeded RNGs and a throw-away cache."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path_factory):
    """Seed torch and keep generated datasets out of the user's cache."""
    torch.manual_seed(0)
    monkeypatch.setenv("SHAPMIX_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
