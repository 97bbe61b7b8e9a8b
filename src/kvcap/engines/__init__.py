"""Engine policies: one module per engine, each `plan(model, device, options) -> Plan`.

A module here exposes:
  NAME            the engine's name as users type it
  OPTIONS         {option name: one-line help} — the engine's own option names
  plan(model: ModelSpec, device: DeviceSpec, options: Mapping[str, Any]) -> Plan
Unknown option names are refused with the list of the engine's options (base.check_options).
"""

from __future__ import annotations

import sys
from importlib import import_module
from types import ModuleType

from ..errors import OptionsError

# name -> module (imported only when used). Aliases map to the same module.
ENGINES: dict[str, str] = {
    "mlc": "mlc",
    "vllm": "vllm",
    "llamacpp": "llamacpp",
    "ollama": "ollama",
    "sglang": "sglang",
    "mlx": "mlx",
}
ALIASES = {"mlc-llm": "mlc", "mlc_llm": "mlc", "llama.cpp": "llamacpp", "llama-cpp": "llamacpp",
           "mlx-lm": "mlx", "mlx_lm": "mlx"}


def available() -> list[str]:
    """Engines whose policy module is present."""
    from importlib.util import find_spec
    return [n for n, m in ENGINES.items() if find_spec(f"{__name__}.{m}") is not None]


def get_engine(name: str) -> ModuleType:
    if not isinstance(name, str):
        raise OptionsError(f"an engine is given by name, got {name!r}; supported: {', '.join(available())}")
    key = ALIASES.get(name.lower(), name.lower())
    loaded = sys.modules.get(f"{__name__}.{ENGINES.get(key, '')}")
    if loaded is not None:  # already imported: skip the file-system search of available()
        return loaded
    if key not in ENGINES or key not in available():
        raise OptionsError(f"unknown engine {name!r}; supported: {', '.join(available())}")
    return import_module(f"{__name__}.{ENGINES[key]}")
