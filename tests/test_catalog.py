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
