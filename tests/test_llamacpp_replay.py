"""The real llama.cpp and Ollama cases replay exactly; cases kvcap cannot judge are skipped with a reason."""

from __future__ import annotations

import copy

import pytest

from kvcap.validate import Skip, load_cases, validate
from kvcap.validate import llamacpp as replay_llamacpp
from kvcap.validate import ollama as replay_ollama


@pytest.fixture
def cases(shared):
    return load_cases([shared / "validation" / "llamacpp.jsonl"])


def by_id(cases, prefix):
    return copy.deepcopy(next(c for c in cases if c["id"].startswith(prefix)))


def test_every_case_is_exact(shared):
    report = validate([shared / "validation" / "llamacpp.jsonl"])
    for case in report["cases"]:
        assert case["status"] == "pass", (case["id"], case["reason"], case["fields"])
    for engine in ("llamacpp", "ollama"):
        s = report["summary"][engine]
        assert s["fail"] == 0 and s["skipped"] == 0 and s["exact"] == s["pass"] > 0
        assert s["max_rel_err"] == 0.0


def test_predictions_field_by_field(cases):
    # each value worked out in test_llamacpp_kv / the case notes; here: the names and the log rounding
    got = {c["id"]: replay_llamacpp.replay(c)["end_to_end"] for c in cases}
    assert got["ollama-790-gemma7b-partial"] == {"n_ctx": 2048, "kv_size_mib": 896.0, "k_mib": 448.0, "v_mib": 448.0}
    assert got["llamacpp-ggml-ci-pythia1.4b-metal-m4"] == {"n_ctx": 2048, "kv_cells": 2048, "kv_layers": 24,
                                                           "kv_size_mib": 384.0, "k_mib": 192.0, "v_mib": 192.0}
    assert got["llamacpp-unsloth-7530-gemma3-270m-np3"] == {"n_ctx": 1536, "kv_size_mib": 27.0}
    assert got["llamacpp-fitparams-readme-qwen3-30b"] == {"n_ctx": 4096, "kv_size_mib": 384.0}
    assert got["llamacpp-ik-259-deepseek-mla-q8"] == {"n_ctx": 32768, "kv_size_mib": 1166.62}


def test_ollama_module_reexports_the_replay():
    assert replay_ollama.replay is replay_llamacpp.replay


def test_ik_fork_is_named_in_the_result(cases):
    out = replay_llamacpp.replay(by_id(cases, "llamacpp-ik-259"))
    assert "ik_llama.cpp" in out["note"]


def test_four_slots_need_no_rounding(cases):
    # the same maintainer comment: 4 slots allocate 1024 cells / 18.0 MiB
    case = by_id(cases, "llamacpp-unsloth-7530")
    case["options"]["n_seq_max"] = 4
    assert replay_llamacpp.replay(case)["end_to_end"] == {"n_ctx": 1024, "kv_size_mib": 18.0}


def test_a_year_whose_rules_disagree_is_skipped(cases):
    # -np 3 with -c 1000: Aug-Oct 2025 builds round each stream to 352 cells, later ones to 512
    case = by_id(cases, "llamacpp-unsloth-7530")
    case["engine_era"], case["options"]["n_ctx"] = "2025", 1000
    with pytest.raises(Skip, match="engine_era '2025' spans llama.cpp builds"):
        replay_llamacpp.replay(case)


@pytest.mark.parametrize("change, reason", [
    (lambda c: c.update(engine_era=None), "no llama.cpp era"),
    (lambda c: c["options"].pop("n_ctx"), "no device memory"),
    (lambda c: c["model"].pop("gguf_metadata"), "neither hf_config nor gguf_metadata"),
    (lambda c: c["options"].update(type_k="q3_k"), "kvcap refuses this case: type_k"),
])
def test_skips_name_their_reason(cases, change, reason):
    case = by_id(cases, "llamacpp-ggml-ci-pythia")
    change(case)
    with pytest.raises(Skip, match=reason):
        replay_llamacpp.replay(case)


def test_ollama_case_needs_a_version(cases):
    case = by_id(cases, "ollama-790")
    case["engine_version"] = None
    with pytest.raises(Skip, match="engine_version"):
        replay_llamacpp.replay(case)


def test_seqs_field_follows_the_log_format(cases):
    # since the per-sequence streams the line prints "%2u/%u seqs" (n_seq_max / n_stream)
    case = by_id(cases, "llamacpp-unsloth-7530")
    case["observed"] = {"kv_seqs": "3/3", "kv_cells": 512, "swa_kv_cells": 512, "swa_kv_layers": 15}
    assert replay_llamacpp.replay(case)["end_to_end"] == {"kv_seqs": "3/3", "kv_cells": 512, "swa_kv_cells": 512,
                                                           "swa_kv_layers": 15}
    case["observed"] = {"kv_seqs": 3}
    assert replay_llamacpp.replay(case)["end_to_end"] == {"kv_seqs": 3}
