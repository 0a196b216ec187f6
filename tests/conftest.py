"""Shared fixtures: tests/ on sys.path, and no test ever touches the real user data folder."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Point VIDSEARCH_HOME (and XDG data) at a temporary folder for every test."""
    home = tmp_path / "vidsearch-home"
    monkeypatch.setenv("VIDSEARCH_HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    return home
