"""The model configs quoted in the real engine logs (../shared/validation) build, or are refused
for a stated reason; where a log states a model-only quantity, the spec reproduces it."""

import json
import re

import pytest

from kvcap.errors import ModelError
from kvcap.model import catalog, hf

# Cases whose quoted config is a trimmed copy kvcap cannot build, and why.
REFUSED = {
    "vllm-40691": "needs a vision_config",                 # Qwen3.5-27B without its vision tower
    "vllm-myoceane-gemma-4-26b-a4b": "needs a vision_config",
    "vllm-15871": "missing 'vocab_size'",                  # DeepSeek-V2-Lite-Chat, trimmed
    "vllm-2418": "no 'model_type'",
}


def _cases(shared):
    for f in sorted((shared / "validation").glob("*.jsonl")):
        for line in f.read_text().splitlines():
            if line.strip():
                yield json.loads(line)


def test_every_quoted_config_builds_or_is_refused_for_its_reason(shared):
    seen = set()
    for case in _cases(shared):
        cfg = case["model"].get("hf_config")
        if not cfg:
            continue
        if case["id"] in REFUSED:
            with pytest.raises(ModelError, match=REFUSED[case["id"]]):
                hf.from_config(cfg, case["model"]["name"], "validation")
            seen.add(case["id"])
            continue
        spec = hf.from_config(cfg, case["model"]["name"], "validation")
        assert spec.kv_elems_per_token() > 0
    assert seen == set(REFUSED)


def test_deepseek_v2_lite_needs_the_logged_kv_for_one_max_len_request(shared):
    case = next(c for c in _cases(shared) if c["id"] == "vllm-15871")
    # the quoted config is trimmed (no vocab_size, v_head_dim); the catalog's V2-Lite config fills
    # what it omits, and every field it quotes is kept
    base = catalog.lookup("deepseek-ai/DeepSeek-V2-Lite").config()
    spec = hf.from_config({**base, **case["model"]["hf_config"]}, "v2-lite-chat", "validation")
    needed = float(re.search(r"\(([0-9.]+) GiB KV cache is needed", case["observed"]["error"]).group(1))
    max_len = case["options"]["max_model_len"]
    # 27 MLA layers x (512 + 64) latent values x 2 bytes x 32,768 tokens, printed with 2 decimals
    assert spec.kv_elems_per_token() == 27 * 576
    assert round(spec.kv_elems_per_token() * 2 * max_len / 2**30, 2) == needed == 0.95
