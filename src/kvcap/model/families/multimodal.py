"""Multimodal wrappers (`text_config` + `vision_config`): the language model's layers and KV
come from its own family builder; the vision tower and projector add resident weights only.

A `text_config` may leave fields to its config class's defaults (Gemma 3 27B's omits vocab_size
and max_position_embeddings; LLaVA's omits every size). Those defaults are filled from the
transformers classes named below and listed in the spec's notes; a field with no known default
fails as missing.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from ...errors import ModelError
from .. import config as C
from ..spec import ModelSpec
from . import builder_for, family_of
from . import towers

# wrapper model_type -> (text model_type when text_config names none, default vision tower type)
WRAPPERS: dict[str, tuple[str, str]] = {
    "llava": ("llama", "clip_vision_model"),
    "gemma3": ("gemma3_text", "siglip_vision_model"),
    "gemma3n": ("gemma3n_text", "gemma3n_vision"),   # MobileNet-V5 tower + audio: refused below
    "gemma4": ("gemma4_text", "gemma4_vision"),
    "llama4": ("llama4_text", "llama4_vision_model"),
    "qwen3_5": ("qwen3_5_text", "qwen3_5"),
    "qwen3_5_moe": ("qwen3_5_moe_text", "qwen3_5_moe"),
    "mistral3": ("mistral", "pixtral"),
    "ministral3": ("ministral3", "pixtral"),   # MLC's preset names the wrapper by its text type
}
# Shape fields of text config classes, used only where a wrapper's text_config omits them.
TEXT_DEFAULTS: dict[str, dict[str, Any]] = {
    # transformers configuration_llama.py LlamaConfig
    "llama": dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                  num_attention_heads=32, max_position_embeddings=2048),
    # configuration_gemma3.py Gemma3TextConfig
    "gemma3_text": dict(vocab_size=262208, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
                        num_attention_heads=8, num_key_value_heads=4, head_dim=256, max_position_embeddings=131072,
                        sliding_window=4096),
    # configuration_llama4.py Llama4TextConfig
    "llama4_text": dict(vocab_size=202048, hidden_size=5120, intermediate_size=8192, num_hidden_layers=48,
                        num_attention_heads=40, num_key_value_heads=8, head_dim=128, max_position_embeddings=131072),
}
# Top-level fields a text_config inherits when it has none of its own.
_INHERITED = ("torch_dtype", "dtype", "tie_word_embeddings")


def build(cfg: Mapping[str, Any], name: str, source: str) -> ModelSpec:
    wrapper = C.get_str(cfg, "model_type")
    if wrapper == "ministral3" and "text_config" not in cfg:
        from .dense import build as build_dense
        return build_dense(cfg, name, source)
    text_type, tower_type = WRAPPERS[wrapper]
    text_cfg = C.get_dict(cfg, "text_config")
    if not text_cfg:
        raise ModelError(f"{name}: a {wrapper} config needs a text_config (the language model)")
    text_type = C.get_str(text_cfg, "model_type") or text_type
    if text_type in WRAPPERS and text_type != "ministral3":
        raise ModelError(f"{name}: text_config of model_type {text_type!r} is itself a wrapper")
    # what cannot be sized is refused before anything is built
    if cfg.get("audio_config"):
        raise ModelError(f"{name}: the audio tower of {wrapper} is not supported (its weights cannot be sized)")
    vc = cfg.get("vision_config")
    if vc is not None and not isinstance(vc, dict):
        raise ModelError("config field 'vision_config' must be an object")
    towers.check((vc or {}).get("model_type") or tower_type)
    defaults = TEXT_DEFAULTS.get(text_type, {})
    filled = sorted(k for k in defaults if k not in text_cfg)
    merged = {**defaults, **{k: cfg[k] for k in _INHERITED if k in cfg and k not in text_cfg}, **text_cfg,
              "model_type": text_type}
    text = builder_for(text_type)(merged, name, source)

    notes = list(text.notes)
    if filled:
        notes.append(f"text_config leaves {', '.join(filled)} to the {text_type} defaults")
    if vc is None:
        if wrapper != "llama4":
            raise ModelError(f"{name}: a {wrapper} config needs a vision_config to size its vision tower")
        notes.append("vision_config absent: the vision tower takes Llama4VisionConfig's defaults")
        vc = {}
    vision = towers.tower(vc, tower_type) + towers.projector(wrapper, cfg, vc, text.hidden_size)
    return dataclasses.replace(
        text, name=name, model_type=wrapper, architecture=_arch(cfg) or text.architecture,
        family=family_of(wrapper), tensors=text.tensors + tuple(vision), config=cfg, notes=tuple(notes),
    )


def _arch(cfg: Mapping[str, Any]) -> str:
    archs = cfg.get("architectures")
    return archs[0] if isinstance(archs, list) and archs and isinstance(archs[0], str) else ""
