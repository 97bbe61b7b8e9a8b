"""Family builders: HF config dict -> ModelSpec, one module per family of architectures.

`BUILDERS` maps a `model_type` to the module and function that build it. A model_type not
listed here fails closed with the list of supported ones. Adding a family = a module here and a
line in this table.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any, Callable, Mapping

from ...errors import ModelError

# model_type -> "module:function" (modules are imported only when a model of theirs is built).
BUILDERS: dict[str, str] = {
    "llama": "dense:build",
    "mistral": "dense:build",
    "qwen2": "dense:build",
    "qwen3": "dense:build",
    "phi3": "dense:build",
    "phi3_v": "dense:build",
    "olmo2": "dense:build",
    "granite": "dense:build",
    "internlm2": "dense:build",
    "starcoder2": "dense:build",
    "stablelm": "dense:build",
    "cohere": "dense:build",
    "gemma": "dense:build",
    "minicpm": "dense:build",
    "orion": "dense:build",
    "baichuan": "dense:build",
    "internlm": "dense:build",
}


def supported() -> list[str]:
    return sorted(BUILDERS)


def builder_for(model_type: str) -> Callable[[Mapping[str, Any], str, str], Any]:
    target = BUILDERS.get(model_type)
    if target is None:
        raise ModelError(
            f"model_type {model_type!r} is not supported; supported: {', '.join(supported())}"
        )
    module, func = target.split(":")
    return getattr(import_module(f"{__name__}.{module}"), func)
