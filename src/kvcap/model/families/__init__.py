"""Family builders: HF config dict -> ModelSpec, one module per family of architectures.

`BUILDERS` maps a `model_type` to the module and function that build it. A model_type not
listed here fails closed with the list of supported ones. Adding a family = a module here and a
line in this table (and in `FAMILY`, the catalog grouping).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any, Callable, Mapping

from ...errors import ModelError

# model_type -> "module:function" (modules are imported only when a model of theirs is built).
BUILDERS: dict[str, str] = {
    # full attention on every layer, or one sliding window (Mistral v0.1, Phi-3-mini-4k,
    # StarCoder2), or Qwen2's max_window_layers split, or a layer_types list (Cohere 2)
    **{t: "dense:build" for t in (
        "llama", "mistral", "ministral", "qwen2", "qwen3", "phi3", "phi3_v", "olmo2",
        "granite", "internlm2", "starcoder2", "stablelm", "cohere", "cohere2", "gemma", "minicpm",
        "orion", "baichuan", "internlm")},
    "gemma2": "gemma:build", "gemma3_text": "gemma:build", "gemma3n_text": "gemma3n:build",
    "gemma4_text": "gemma4:build",
    "gpt_oss": "gpt_oss:build",
    **{t: "moe:build" for t in ("mixtral", "qwen2_moe", "qwen3_moe", "phimoe", "deepseek")},
    **{t: "deepseek:build" for t in ("deepseek_v2", "deepseek_v3", "deepseek_v32", "kimi_k2", "glm4_moe_lite")},
    **{t: "glm:build" for t in ("chatglm", "glm", "glm4", "glm4_moe")},
    "llama4_text": "llama4:build",
    **{t: "gated_delta:build" for t in ("qwen3_next", "qwen3_5_text", "qwen3_5_moe_text")},
    **{t: "mamba:build" for t in ("mamba", "mamba2", "jamba", "falcon_h1", "nemotron_h", "granitemoehybrid")},
    "lfm2": "lfm2:build",
    **{t: "rwkv:build" for t in ("rwkv", "rwkv5")},
    **{t: "minimax:build" for t in ("minimax", "minimax_m1")},
    **{t: "legacy:build" for t in ("gpt2", "gpt_bigcode", "gpt_neox", "gptj", "phi", "phi-msft", "qwen")},
    "phi3small": "phi3small:build",
    # multimodal wrappers: the language model from text_config, the vision tower's weights
    **{t: "multimodal:build" for t in (
        "llava", "gemma3", "gemma3n", "gemma4", "llama4", "qwen3_5", "qwen3_5_moe", "mistral3", "ministral3")},
    # encoder-only: no KV cache at all, refused with that reason
    **{t: "encoder:build" for t in (
        "bert", "roberta", "xlm-roberta", "distilbert", "nomic_bert", "modernbert", "electra", "deberta-v2")},
}

# model_type -> catalog family (`kvcap models --family F`); architecture kin share one.
FAMILY: dict[str, str] = {
    **dict.fromkeys(("llama", "llama4", "llama4_text"), "llama"),
    **dict.fromkeys(("mistral", "mixtral", "ministral", "ministral3", "mistral3"), "mistral"),
    **dict.fromkeys(("qwen", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "qwen3_next", "qwen3_5",
                     "qwen3_5_moe", "qwen3_5_text", "qwen3_5_moe_text"), "qwen"),
    **dict.fromkeys(("gemma", "gemma2", "gemma3", "gemma3_text", "gemma3n", "gemma3n_text", "gemma4", "gemma4_text"),
                    "gemma"),
    **dict.fromkeys(("phi", "phi-msft", "phi3", "phi3_v", "phi3small", "phimoe"), "phi"),
    **dict.fromkeys(("deepseek", "deepseek_v2", "deepseek_v3", "deepseek_v32"), "deepseek"),
    "kimi_k2": "kimi",
    **dict.fromkeys(("chatglm", "glm", "glm4", "glm4_moe", "glm4_moe_lite"), "glm"),
    "gpt_oss": "gpt-oss", "gpt2": "gpt2", "gpt_bigcode": "starcoder", "starcoder2": "starcoder",
    "gpt_neox": "gpt-neox", "gptj": "gpt-j", "olmo2": "olmo",
    **dict.fromkeys(("granite", "granitemoehybrid"), "granite"),
    **dict.fromkeys(("internlm", "internlm2"), "internlm"),
    "minicpm": "minicpm", "baichuan": "baichuan", "orion": "orion", "stablelm": "stablelm",
    **dict.fromkeys(("cohere", "cohere2"), "cohere"),
    **dict.fromkeys(("mamba", "mamba2"), "mamba"), "jamba": "jamba", "falcon_h1": "falcon-h1",
    "nemotron_h": "nemotron", "lfm2": "lfm2", **dict.fromkeys(("rwkv", "rwkv5"), "rwkv"),
    **dict.fromkeys(("minimax", "minimax_m1"), "minimax"), "llava": "llava",
    **dict.fromkeys(("bert", "roberta", "xlm-roberta", "distilbert", "nomic_bert", "modernbert", "electra",
                     "deberta-v2"), "encoder"),
}

# A config with `auto_map` runs remote code; kvcap follows it only for the architecture classes
# whose shapes it knows (the public modeling files of these checkpoints).
REMOTE_CODE_ARCHITECTURES = frozenset({
    "LlamaForCausalLM", "MistralForCausalLM", "Phi3ForCausalLM", "Phi3VForCausalLM", "Phi3SmallForCausalLM",
    "PhiMoEForCausalLM", "PhiForCausalLM", "QWenLMHeadModel", "ChatGLMModel", "ChatGLMForConditionalGeneration",
    "BaichuanForCausalLM", "InternLMForCausalLM", "InternLM2ForCausalLM", "OrionForCausalLM",
    "MiniCPMForCausalLM", "DeepseekForCausalLM", "DeepseekV2ForCausalLM", "DeepseekV3ForCausalLM",
    "RwkvForCausalLM", "Rwkv5ForCausalLM", "MiniMaxM1ForCausalLM", "MiniMaxText01ForCausalLM",
    "NemotronHForCausalLM", "Glm4ForCausalLM", "Glm4MoeForCausalLM", "FalconH1ForCausalLM",
    "JambaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "BertModel",
})


def supported() -> list[str]:
    return sorted(t for t, b in BUILDERS.items() if not b.startswith("encoder:"))


def family_of(model_type: str) -> str:
    return FAMILY.get(model_type, model_type)


def _check_remote_code(cfg: Mapping[str, Any], model_type: str) -> None:
    if not cfg.get("auto_map"):
        return
    archs = cfg.get("architectures")
    arch = archs[0] if isinstance(archs, list) and archs and isinstance(archs[0], str) else None
    if arch not in REMOTE_CODE_ARCHITECTURES:
        raise ModelError(
            f"model_type {model_type!r} with auto_map needs remote code for architecture {arch!r}, which kvcap "
            f"does not know; supported: {', '.join(sorted(REMOTE_CODE_ARCHITECTURES))}"
        )


def builder_for(model_type: str) -> Callable[[Mapping[str, Any], str, str], Any]:
    target = BUILDERS.get(model_type)
    if target is None:
        raise ModelError(
            f"model_type {model_type!r} is not supported; supported: {', '.join(supported())}"
        )
    module, func = target.split(":")
    build = getattr(import_module(f"{__name__}.{module}"), func)

    def checked(cfg: Mapping[str, Any], name: str, source: str) -> Any:
        try:
            _check_remote_code(cfg, model_type)
            return build(cfg, name, source)
        except ModelError as e:
            # say which model, once
            if name and not str(e).startswith(name):
                raise ModelError(f"{name}: {e}") from None
            raise

    return checked
