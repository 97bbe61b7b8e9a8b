import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# ../shared beside the repository: the validation cases and research (CI puts a copy there).
SHARED = Path(os.environ.get("KVCAP_SHARED", ROOT.parent / "shared"))


@pytest.fixture
def shared() -> Path:
    if not SHARED.exists():
        pytest.fail(f"../shared not found at {SHARED}: CI and developers have it beside the repository")
    return SHARED


@pytest.fixture(autouse=True)
def _hermetic_hf(monkeypatch, tmp_path_factory):
    """Tests never touch the network or the developer's Hugging Face cache."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path_factory.mktemp("hf-hub-cache")))
