"""kvcap web uploads: a config.json, a GGUF file's start, safetensors headers — parsed in memory
into the same ModelSpec the CLI reads from the files, never written to disk."""

from __future__ import annotations

import builtins
import io
import json
from pathlib import Path

import pytest

import kvcap
from kvcap.errors import ModelError
from kvcap.model.gguf_reader import read_gguf
from kvcap.web.upload import UploadStore, clean_name
from test_reader_files import hf_folder, st_header, tiny_llama, tiny_llama_tensors, write_gguf
from test_reader_gguf import META, llama_tensors
from test_web_api import get_json, request, server  # noqa: F401 (the module's server fixture)


def post(server, data: bytes, filename: str, token: str = ""):
    q = f"filename={filename}" + (f"&token={token}" if token else "")
    code, _, body = request(server, "POST", f"/api/upload?{q}", body=data, headers={"X-Kvcap": "1"})
    return code, json.loads(body)


@pytest.fixture
def no_disk(monkeypatch):
    """Any open() of a file fails the test while it is active."""
    def refuse(*a, **k):
        raise AssertionError(f"an upload touched the file system: open{a[:1]}")
    monkeypatch.setattr(builtins, "open", refuse)
    monkeypatch.setattr(io, "open", refuse)
    monkeypatch.setattr(Path, "open", refuse)


def test_config_upload_plans_like_the_file(server, tmp_path):
    cfg = dict(tiny_llama(), _name_or_path="org/tiny")
    code, doc = post(server, json.dumps(cfg).encode(), "config.json")
    assert code == 200 and doc["model_param"] == f"upload:{doc['token']}"
    assert doc["model"]["name"] == "org/tiny" and doc["model"]["num_hidden_layers"] == 2
    code, plan = get_json(server, f"/api/plan?model={doc['model_param']}&device=rtx-4090&engine=llamacpp&o.n_ctx=4096")
    assert code == 200
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    direct = kvcap.plan(kvcap.load_model(tmp_path / "config.json"), "rtx-4090", "llamacpp", n_ctx=4096)
    assert plan["plan"]["kv_tokens"] == direct.kv_tokens
    assert plan["plan"]["ledger"] == json.loads(json.dumps([l.to_json() for l in direct.ledger], default=str))


def test_gguf_start_gives_the_spec_of_the_whole_file(server, tmp_path):
    path = tmp_path / "tiny-Q4_K_M.gguf"
    write_gguf(path, "llama", META, llama_tensors(), file_type=15)
    head = path.read_bytes()[:read_gguf(path).data_offset]   # metadata + tensor infos, no tensor data
    assert len(head) < path.stat().st_size
    code, doc = post(server, head, "tiny-Q4_K_M.gguf")
    assert code == 200, doc
    full = kvcap.load_model(path)
    assert doc["model"]["stored_bytes"] == sum(full.stored_bytes.values())
    assert doc["model"]["quantization"]["file_type"] == "Q4_K_M" and doc["model"]["name"] == "tiny-llama"
    _, plan = get_json(server, f"/api/plan?model={doc['model_param']}&device=rtx-4090&engine=llamacpp")
    assert plan["plan"]["kv_tokens"] == kvcap.plan(full, "rtx-4090", "llamacpp").kv_tokens


def test_gguf_cut_inside_its_metadata_says_send_more(tmp_path):
    path = tmp_path / "t.gguf"
    write_gguf(path, "llama", META, llama_tensors())
    with pytest.raises(ModelError, match="upload ends at byte 100, inside the GGUF header"):
        UploadStore().add(path.read_bytes()[:100], "t.gguf")


def test_safetensors_header_prices_the_checkpoint(server, tmp_path):
    cfg = tiny_llama()
    code, up = post(server, json.dumps(cfg).encode(), "config.json")
    head, size = st_header(tiny_llama_tensors("F16"))
    code, doc = post(server, head, "model.safetensors", up["token"])
    assert code == 200 and doc["token"] == up["token"] and "1 safetensors header" in doc["note"]
    # The header's tensors are F16: bytes = 2 × the parameters the tiny Llama declares.
    assert doc["model"]["stored_bytes"] == size == 2 * kvcap.load_model(cfg).num_params
    folder = hf_folder(tmp_path / "m", cfg, tiny_llama_tensors("F16"))
    assert doc["model"]["stored_bytes"] == sum(kvcap.load_model(folder).stored_bytes.values())


def test_safetensors_shards_count_only_when_complete():
    store = UploadStore()
    token, base = store.add(json.dumps(tiny_llama()).encode(), "config.json")
    t = tiny_llama_tensors("BF16")
    names = list(t)
    half = len(names) // 2
    h1, s1 = st_header({n: t[n] for n in names[:half]})
    h2, s2 = st_header({n: t[n] for n in names[half:]})
    _, up = store.add(h1, "model-00001-of-00002.safetensors", token)
    # Half the weights must not be taken for all of them (an over-promise of KV).
    assert "1 of 2" in up.note and up.spec.stored_bytes == base.spec.stored_bytes
    _, up = store.add(h2, "model-00002-of-00002.safetensors", token)
    assert sum(up.spec.stored_bytes.values()) == s1 + s2 and up.spec.stored_bytes == {"bfloat16": s1 + s2}


def test_safetensors_needs_a_config_upload_first():
    head, _ = st_header(tiny_llama_tensors())
    with pytest.raises(ModelError, match="config.json first"):
        UploadStore().add(head, "model.safetensors")
    store = UploadStore()
    with pytest.raises(ModelError, match="unknown or expired upload"):
        store.add(head, "model.safetensors", "no-such-token")


def test_uploads_never_touch_the_disk(tmp_path, no_disk):
    store = UploadStore()
    token, _ = store.add(json.dumps(tiny_llama()).encode(), "../../etc/config.json")
    head, _ = st_header(tiny_llama_tensors())
    store.add(head, "model.safetensors", token)


def test_gguf_upload_never_touches_the_disk(tmp_path, monkeypatch):
    path = tmp_path / "t.gguf"
    write_gguf(path, "llama", META, llama_tensors())
    data = path.read_bytes()
    def refuse(*a, **k):
        raise AssertionError("disk")
    monkeypatch.setattr(builtins, "open", refuse)
    monkeypatch.setattr(io, "open", refuse)
    _, up = UploadStore().add(data, "t.gguf")
    assert up.spec.num_hidden_layers == 2


def test_store_is_bounded_and_least_recently_used():
    store = UploadStore(max_entries=2)
    cfg = json.dumps(tiny_llama()).encode()
    a, _ = store.add(cfg, "a.json")
    b, _ = store.add(cfg, "b.json")
    store.get(a)                       # a used last: b is the oldest
    c, _ = store.add(cfg, "c.json")
    assert store.get(a) and store.get(c)
    with pytest.raises(ModelError, match="upload the file again"):
        store.get(b)


@pytest.mark.parametrize("name,want", [("../../etc/passwd", "passwd"), ("C:\\x\\config.json", "config.json"),
                                       ("we ird<>name.gguf", "we_ird_name.gguf"), ("", "upload")])
def test_upload_names_are_labels_not_paths(name, want):
    assert clean_name(name) == want


def test_split_gguf_is_refused_in_one_line(tmp_path):
    path = tmp_path / "t-00001-of-00002.gguf"
    write_gguf(path, "llama", {**META, "split.count": 2, "split.no": 0}, llama_tensors())
    with pytest.raises(ModelError, match="split GGUF"):
        UploadStore().add(path.read_bytes(), path.name)
