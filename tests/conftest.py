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


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory):
    """Small train / test sets of moving-shape scenes (random scenes, so appearance tells videos apart)."""
    from vidsearch.synthetic import make_dataset

    root = tmp_path_factory.mktemp("synthetic")
    train = make_dataset(root / "train", videos=24, scenes_per_video=4, seed=0)
    test = make_dataset(root / "test", videos=4, scenes_per_video=4, seed=99)
    return train, test


@pytest.fixture(scope="session")
def trained_tiny(synthetic, tmp_path_factory):
    """The tiny model trained for a few CPU-seconds through the real CLI; returns (checkpoint, summary).

    Trained once per test run: the first pytest worker to need it trains it in the folder all workers share, the
    others wait for it (the synthetic sets are made from fixed seeds, so every worker's copy is the same)."""
    import json
    import os

    from cli_helpers import run_cli
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    out, summary = shared / "trained" / "tiny-ckpt", shared / "trained" / "summary.json"
    out.parent.mkdir(exist_ok=True)
    with FileLock(str(shared / "trained.lock")):
        if not summary.exists():
            train, test = synthetic
            proc = run_cli("train", str(train), "--out", str(out), "--model", "tiny", "--frames", "8", "--steps", "150",
                           "--batch-size", "32", "--lr", "1e-3", "--checkpoint-every", "50", "--val", str(test),
                           "--json", "--device", "cpu", timeout=1200)
            summary.write_text(proc.stdout)
    return out, json.loads(summary.read_text())
