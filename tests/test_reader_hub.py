"""The optional Hugging Face Hub lookup, with a fake client: tests never touch the network."""

from __future__ import annotations

import json
import sys
import types
from dataclasses import dataclass

import pytest

from kvcap.cli import main
from kvcap.errors import ModelError
from kvcap.model import hub, load_model
from test_reader_files import tiny_llama, tiny_llama_tensors


@dataclass
class TensorInfo:          # the fields of huggingface_hub.utils.TensorInfo that kvcap reads
    dtype: str
    shape: list
    data_offsets: tuple


@dataclass
class FileMeta:
    tensors: dict


@dataclass
class RepoMeta:
    files_metadata: dict


def repo_meta(tensors: dict, files: int = 2) -> RepoMeta:
    """Split the tiny Llama's tensors over `files` files, each with offsets from 0."""
    names = list(tensors)
    out = {}
    for k in range(files):
        part, pos = {}, 0
        for n in names[k::files]:
            dtype, shape = tensors[n]
            size = {"BF16": 2, "F16": 2}[dtype]
            for d in shape:
                size *= d
            part[n] = TensorInfo(dtype, list(shape), (pos, pos + size))
            pos += size
        out[f"model-{k + 1:05d}-of-{files:05d}.safetensors"] = FileMeta(part)
    return RepoMeta(out)


class NotASafetensorsRepoError(Exception):
    pass


class GatedRepoError(Exception):
    pass


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """A stand-in `huggingface_hub` module recording its calls."""
    calls = []
    mod = types.ModuleType("huggingface_hub")
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(tiny_llama()))
    state = {"meta": repo_meta(tiny_llama_tensors("BF16")), "download_error": None}

    def hf_hub_download(repo_id, filename, revision=None):
        calls.append(("download", repo_id, filename, revision))
        if state["download_error"]:
            raise state["download_error"]
        return str(config_path)

    def get_safetensors_metadata(repo_id, revision=None):
        calls.append(("headers", repo_id, revision))
        if isinstance(state["meta"], Exception):
            raise state["meta"]
        return state["meta"]

    mod.hf_hub_download = hf_hub_download
    mod.get_safetensors_metadata = get_safetensors_metadata
    monkeypatch.setitem(sys.modules, "huggingface_hub", mod)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    return types.SimpleNamespace(calls=calls, state=state)


def test_hub_gives_config_and_header_bytes(fake_hub):
    m = load_model("someorg/tiny-llama")
    assert m.source == "hub:someorg/tiny-llama@main" and m.name == "someorg/tiny-llama"
    assert m.stored_bytes == {"bfloat16": 2 * m.num_params} and m.stored_tensors == 21
    assert fake_hub.calls == [("download", "someorg/tiny-llama", "config.json", None),
                              ("headers", "someorg/tiny-llama", None)]


def test_revision_is_passed_through(fake_hub):
    load_model("someorg/tiny-llama@v2")
    assert fake_hub.calls[0][-1] == "v2" and fake_hub.calls[1][-1] == "v2"


def test_offline_flag_refuses_before_any_call(fake_hub):
    with pytest.raises(ModelError, match="online lookup is off"):
        load_model("someorg/tiny-llama", offline=True)
    assert fake_hub.calls == []


def test_hf_hub_offline_env_refuses(fake_hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="HF_HUB_OFFLINE"):
        load_model("someorg/tiny-llama")
    assert fake_hub.calls == []


def test_cli_offline_flag(fake_hub, capsys):
    assert main(["plan", "someorg/tiny-llama", "--offline", "--device", "m1-8gb"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "online lookup is off" in err
    assert fake_hub.calls == []


def test_catalog_ids_never_go_online(fake_hub):
    assert load_model("meta-llama/Llama-3.1-8B-Instruct").source.startswith("catalog:")
    assert fake_hub.calls == []


def test_repo_without_safetensors_is_config_only(fake_hub):
    fake_hub.state["meta"] = NotASafetensorsRepoError("no safetensors")
    m = load_model("someorg/tiny-llama")
    assert m.stored_bytes == {} and m.num_hidden_layers == 2


def test_gated_and_network_failures_are_one_line(fake_hub):
    fake_hub.state["download_error"] = GatedRepoError("401 Client Error\nlong body")
    with pytest.raises(ModelError, match="gated on the Hugging Face Hub"):
        load_model("someorg/tiny-llama")
    fake_hub.state["download_error"] = ConnectionError("Max retries exceeded\nmore")
    with pytest.raises(ModelError, match="cannot fetch config.json of someorg/tiny-llama .*ConnectionError: Max retries exceeded$"):
        load_model("someorg/tiny-llama")


def test_hub_headers_are_validated_like_local_ones(fake_hub):
    bad = repo_meta(tiny_llama_tensors("BF16"), files=1)
    info = next(iter(bad.files_metadata.values())).tensors["lm_head.weight"]
    info.data_offsets = (info.data_offsets[0], info.data_offsets[1] + 2)
    fake_hub.state["meta"] = bad
    with pytest.raises(ModelError, match="'lm_head.weight' declares"):
        load_model("someorg/tiny-llama")


def test_without_huggingface_hub_installed_the_id_falls_back_to_the_catalog(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert not hub.available()
    assert load_model("unsloth/Llama-3.1-8B-Instruct").source.startswith("catalog:")
    with pytest.raises(ModelError, match=r"pip install 'kvcap\[hf\]'"):
        load_model("nobody/no-such-model-anywhere")


def test_offline_env_values():
    assert hub.offline(None, {"HF_HUB_OFFLINE": "true"}) and hub.offline(None, {"HF_HUB_OFFLINE": "1"})
    assert not hub.offline(None, {"HF_HUB_OFFLINE": "0"}) and not hub.offline(None, {})
    assert hub.offline(True, {}) and not hub.offline(False, {"HF_HUB_OFFLINE": "1"})


def test_cached_config_without_weights_fetches_the_headers(fake_hub, tmp_path, monkeypatch):
    """After a metadata fetch the cache holds config.json only; the headers come from the hub."""
    from test_reader_hf_cache import make_cached
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    make_cached(tmp_path / "cache", "someorg/tiny-llama", weights=False)
    assert load_model("someorg/tiny-llama").stored_tensors == 21
    assert [c[0] for c in fake_hub.calls] == ["download", "headers"]
    # Offline, the cached config alone is used.
    fake_hub.calls.clear()
    m = load_model("someorg/tiny-llama", offline=True)
    assert m.source.startswith("hf-cache:") and m.stored_tensors == 0 and fake_hub.calls == []
