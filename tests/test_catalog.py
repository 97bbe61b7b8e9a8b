import pytest

from kvcap.errors import ModelError
from kvcap.model import catalog, load_model


@pytest.mark.parametrize("name", ["llama3_1_8b", "llama-3.1-8b", "Llama-3.1-8B-Instruct",
                                  "meta-llama/Llama-3.1-8B-Instruct"])
def test_forgiving_names_resolve_to_llama_3_1_8b(name):
    m = load_model(name)
    assert (m.num_hidden_layers, m.num_key_value_heads, m.head_dim, m.vocab_size) == (32, 8, 128, 128256)


def test_all_presets_and_hf_files_are_in_the_catalog():
    keys = {e.key for e in catalog.entries()}
    assert sum(e.source == "mlc-preset" for e in catalog.entries()) == 67
    assert "meta-llama/Llama-3.1-70B-Instruct" in keys and "llama3_1_70b" in keys


def test_ambiguous_name_lists_candidates():
    with pytest.raises(ModelError, match="ambiguous; candidates: .*Qwen2.5"):
        load_model("qwen2.5")


def test_unknown_name():
    with pytest.raises(ModelError, match="unknown model"):
        load_model("no-such-model-xyz")


def test_llama3_8b_parameter_count():
    # Meta-Llama-3-8B: 8,030,261,248 parameters (HF model card) — the tensor list is complete.
    assert load_model("llama3_1_8b").num_params == 8_030_261_248


def test_entries_are_tagged_with_source_and_grouped_by_family():
    fams = {}
    for e in catalog.entries():
        assert e.source in ("mlc-preset", "hf")
        fams.setdefault(e.family, []).append(e.key)
    assert {"llama", "qwen", "gemma", "deepseek", "mistral", "phi", "gpt-oss", "glm", "nemotron"} <= set(fams)
    assert "meta-llama/Llama-4-Scout-17B-16E-Instruct" in fams["llama"]       # wrapper model_type llama4
    assert "moonshotai/Kimi-K2-Instruct" in fams["kimi"]
    assert set(catalog.by_family("QWEN")) == {e for e in catalog.entries() if e.family == "qwen"}
    with pytest.raises(ModelError, match="no catalog family 'zzz'; families: .*llama"):
        catalog.by_family("zzz")


def test_dropping_a_config_json_adds_a_model(tmp_path, monkeypatch):
    import json
    import shutil
    (tmp_path / "hf").mkdir()
    shutil.copy(catalog.DATA / "mlc_model_presets.json", tmp_path / "mlc_model_presets.json")
    cfg = json.loads((catalog.DATA / "hf" / "Qwen__Qwen3-8B.json").read_text())
    (tmp_path / "hf" / "acme__Tiny-Qwen-8B.json").write_text(json.dumps(cfg))
    want = load_model("Qwen/Qwen3-8B").num_params
    monkeypatch.setattr(catalog, "DATA", tmp_path)
    for f in (catalog.entries, catalog._index, catalog._presets):
        f.cache_clear()
    try:
        e = catalog.lookup("acme/tiny-qwen-8b")
        assert (e.key, e.source, e.family) == ("acme/Tiny-Qwen-8B", "hf", "qwen")
        assert load_model("acme/Tiny-Qwen-8B").num_params == want
    finally:
        for f in (catalog.entries, catalog._index, catalog._presets):
            f.cache_clear()
