"""Encoder-only models (BERT and kin): refused, because they generate nothing and keep no KV
cache (llama.cpp `llama_model::create_memory` returns no memory for them; vLLM sizes none).
"""

from __future__ import annotations

from typing import Any, Mapping

from ...errors import ModelError
from .. import config as C


def build(cfg: Mapping[str, Any], name: str, source: str):
    raise ModelError(
        f"{name}: {C.get_str(cfg, 'model_type')} is an encoder-only model; encoder-only models have no KV cache"
    )
