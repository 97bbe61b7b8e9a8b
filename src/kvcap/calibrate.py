"""A measured calibration (`kvcap probe`) applied to a plan, as a what-if.

The engine's own rule stays the prediction of what the engine will do (MLC keeps its hand-set
Metal cap whatever was measured); the calibration adds one line: the capacity this device would
give if the cap followed the measurement instead of the hand-set number.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from .plan import DEVICE_CAP, Plan, WhatIf
from .probe.calibration import Calibration, default_path, load_calibration

KV_ELEMENT_BYTES = 2  # MLC stores KV in the model's 16-bit dtype (cpp/serve/config.cc: the "*4")


def find_calibration(plan: Plan, path: str | None) -> Calibration | None:
    """The file given, else (for `--device local`) the one `kvcap probe` saved for this device."""
    if path:
        return load_calibration(path)
    if plan.device.key == "local":
        # The probe names its file after the device as torch/NVML name it, without our suffix.
        auto = default_path(plan.device.name.removesuffix(" (local)"))
        if Path(auto).is_file():
            return load_calibration(auto)
    return None


def per_buffer_token_bytes(plan: Plan) -> int:
    """Bytes one token adds to the engine's largest single KV buffer: MLC allocates one buffer
    per layer (TVM paged_kv_cache.cc), so one layer's K and V for this shard."""
    tp = int(plan.options.get("tensor_parallel_shards") or 1)
    per_layer = max((l.kv_elems_per_token for l in plan.model.layers), default=0)
    return max(1, per_layer * KV_ELEMENT_BYTES // tp)


def calibrated_what_if(plan: Plan, cal: Calibration) -> WhatIf | None:
    """For a plan bound by a hand-set device cap: the capacity under the measured one."""
    if plan.engine != "mlc" or plan.binding.name != DEVICE_CAP:
        return None
    from . import plan as make_plan
    token_bytes = per_buffer_token_bytes(plan)
    cap = cal.kv_token_cap(token_bytes)
    if cap is None:
        # No cliff: the measurement vouches for buffers up to what it measured.
        cap = cal.measured_up_to_bytes // token_bytes
        how = f"no cliff measured up to {cal.measured_up_to_bytes / 2**30:.0f} GiB of one buffer"
    else:
        how = f"cliff measured past {cal.max_ok_bytes / 2**30:.1f} GiB of one buffer"
    options = {k: v for k, v in plan.options.items() if k not in ("cap", "no_cap")}
    other = make_plan(plan.model, plan.device, engine=plan.engine, **options, cap=cap)
    gain = other.kv_tokens / plan.kv_tokens if plan.kv_tokens else None
    return WhatIf(f"with the cap this device measured ({how}; {cal.device_name}, {cal.date}): {cap:,} tokens",
                  f'--overrides "max_total_seq_length={other.kv_tokens}" (MLC keeps its own cap unless you set this)',
                  other.engine_config, other.binding.name, other.kv_tokens, gain)


def apply(plan: Plan, path: str | None) -> Plan:
    cal = find_calibration(plan, path)
    if cal is None:
        return plan
    extra = calibrated_what_if(plan, cal)
    note = f"calibration {cal.path or 'file'}: {cal.verdict()}"
    return dataclasses.replace(plan, what_if=plan.what_if + ((extra,) if extra else ()),
                               warnings=plan.warnings + (note,))
