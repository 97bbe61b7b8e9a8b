"""What would buy a llama.cpp plan more context: a smaller KV type, a smaller SWA cache, more memory."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

from ..device.spec import DeviceSpec
from ..errors import KvcapError
from ..model.spec import CHUNKED, SLIDING, ModelSpec
from ..plan import INSUFFICIENT, MEMORY, Plan, WhatIf
from .llamacpp_era import has
from .llamacpp_kv import swa_mode

Planner = Callable[[ModelSpec, DeviceSpec, Mapping[str, Any]], Plan]


def what_ifs(base: Plan, planner: Planner, options: Mapping[str, Any]) -> tuple[WhatIf, ...]:
    model, device, cfg = base.model, base.device, base.engine_config
    era = str(options.get("era", "")) or None
    tries: list[tuple[str, str, dict, DeviceSpec]] = []
    if base.binding.name in (MEMORY, INSUFFICIENT):
        fa_ok = era is None or has(era, "flash_attn")
        for t in ("q8_0", "q4_0"):
            if cfg.get("type_k") == "f16" and fa_ok:
                tries.append((f"{t} KV cache", f"-ctk {t} -ctv {t} -fa on",
                              {"type_k": t, "type_v": t, "flash_attn": "on"}, device))
        tries.append(("twice the device memory", "a larger device",
                      {}, dataclasses.replace(device, memory_bytes=device.memory_bytes * 2)))
    if cfg.get("swa_full") and _has_swa(model):
        tries.append(("a window-sized SWA cache", "--swa-full off (llama_context_params.swa_full = false)",
                      {"swa_full": False}, device))
    out = []
    for change, knob, extra, dev in tries:
        try:
            p = planner(model, dev, {**options, **extra})
        except KvcapError:
            continue
        gain = p.kv_tokens / base.kv_tokens if base.kv_tokens else None
        out.append(WhatIf(change, knob, dict(p.engine_config), p.binding.name, p.kv_tokens, gain))
    return tuple(out)


def _has_swa(model: ModelSpec) -> bool:
    try:
        return any(l.kind in (SLIDING, CHUNKED) for l in model.layers) and swa_mode(model) == "swa"
    except KvcapError:
        return False
