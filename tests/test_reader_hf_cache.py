"""The local Hugging Face cache: an HF id -> its snapshot, offline."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kvcap.errors import ModelError
from kvcap.model import load_model
from kvcap.model.hf_cache import cache_dir, parse_repo_id, snapshot
from test_reader_files import tiny_llama, tiny_llama_tensors, write_safetensors

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def make_cached(cache: Path, repo_id: str, commit: str = COMMIT, ref: str | None = "main",
                weights: bool = True) -> Path:
    """A cache entry laid out as huggingface_hub writes it: files are symlinks into blobs/."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / commit
    blobs = repo / "blobs"
    snap.mkdir(parents=True)
    blobs.mkdir(exist_ok=True)
    (blobs / "cfg").write_text(json.dumps(tiny_llama()))
    os.symlink(blobs / "cfg", snap / "config.json")
    if weights:
        write_safetensors(blobs / "w", tiny_llama_tensors("BF16"))
        os.symlink(blobs / "w", snap / "model.safetensors")
    if ref:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return snap


def test_cache_dir_follows_the_hub_environment():
    assert cache_dir({"HF_HUB_CACHE": "/x/hub"}) == Path("/x/hub")
    assert cache_dir({"HF_HOME": "/h"}) == Path("/h/hub")
    assert cache_dir({"XDG_CACHE_HOME": "/c"}) == Path("/c/huggingface/hub")
    assert cache_dir({}) == Path.home() / ".cache" / "huggingface" / "hub"
    assert cache_dir({"HF_HUB_CACHE": "/a", "HF_HOME": "/b"}) == Path("/a")


@pytest.mark.parametrize("text, parsed", [
    ("meta-llama/Llama-3.1-8B", ("meta-llama/Llama-3.1-8B", None)),
    ("org/name@" + COMMIT, ("org/name", COMMIT)),
    ("org/name@v1.0", ("org/name", "v1.0")),
    ("llama3_1_8b", None), ("a/b/c", None), ("org/x.gguf", None), ("../x", None),
])
def test_repo_ids(text, parsed):
    assert parse_repo_id(text) == parsed


def test_model_id_loads_from_the_cache_with_its_headers(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    make_cached(tmp_path, "someorg/tiny-llama")
    m = load_model("someorg/tiny-llama")
    assert m.name == "someorg/tiny-llama" and m.source == f"hf-cache:someorg/tiny-llama@{COMMIT}"
    assert m.stored_bytes == {"bfloat16": 2 * m.num_params} and m.stored_tensors == 21


def test_hf_home_and_revision(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    other = "f" * 40
    make_cached(tmp_path / "hub", "org/m")
    make_cached(tmp_path / "hub", "org/m", commit=other, ref="dev", weights=False)
    assert load_model("org/m").stored_tensors == 21
    assert load_model("org/m@dev").stored_tensors == 0
    assert load_model(f"org/m@{other}").source.endswith(other)
    with pytest.raises(ModelError, match="revision 'nope' is not in the Hugging Face cache"):
        load_model("org/m@nope")


def test_several_snapshots_without_a_main_ref(tmp_path):
    make_cached(tmp_path, "org/m", ref=None)
    make_cached(tmp_path, "org/m", commit="e" * 40, ref=None)
    with pytest.raises(ModelError, match="2 snapshots and no refs/main; name one as org/m@<commit>"):
        snapshot("org/m", cache=tmp_path)


def test_dangling_ref_is_an_error(tmp_path):
    snap = make_cached(tmp_path, "org/m")
    (snap.parent.parent / "refs" / "main").write_text("d" * 40)
    with pytest.raises(ModelError, match="snapshot d{40} is missing"):
        snapshot("org/m", cache=tmp_path)


def test_missing_blob_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    snap = make_cached(tmp_path, "org/m")
    (snap.parent.parent / "blobs" / "w").unlink()          # an interrupted download
    with pytest.raises(ModelError, match="model.safetensors") as e:
        load_model("org/m")
    assert "\n" not in str(e.value)


def test_the_cache_folder_itself_can_be_given(tmp_path):
    snap = make_cached(tmp_path, "org/m")
    assert load_model(snap.parent.parent).stored_tensors == 21


def test_uncached_catalog_id_still_resolves_offline():
    m = load_model("meta-llama/Llama-3.1-8B-Instruct")
    assert m.source.startswith("catalog:hf:")


def test_uncached_unknown_id_offline_says_why():
    with pytest.raises(ModelError, match=r"not in the Hugging Face cache either \(online lookup is off"):
        load_model("nobody/no-such-model-anywhere")
