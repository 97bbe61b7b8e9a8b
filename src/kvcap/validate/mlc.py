"""Replay an MLC-LLM case: build the model(s), device and options from it and plan.

End to end uses only what the case states (config.json, options, device); from given also uses
the intermediates backed out of the log (`given.device_total_bytes`, `given.temp_buffer_bytes`).
A C++-era `given.temp_buffer_bytes` is the doubled value MLC budgets ("Temporary buffer" minus
the workspaces), so it is halved back into kvcap's temp_buffer_bytes (the compiled per-function
maximum); the Python eras did not double it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..device import custom_device, get_device
from ..engines import mlc as policy
from ..engines.mlc_era import parse_era
from ..errors import DeviceError, KvcapError
from ..quant import unquantized_for
from . import Skip

MiB = 1 << 20
# When a case states no device memory (and gives none): enough that memory cannot bind, which
# is right exactly when the logged mode was not memory-bound (the comparison shows it if wrong).
AMPLE_MEMORY = 1 << 40
_NEEDS_TEMP = ("total_mib", "temp_buffer_mib")


def replay(case: dict) -> dict:
    era_name = case.get("engine_era") or "current"
    try:
        era = parse_era(era_name)
    except KvcapError as e:
        raise Skip(str(e)) from None
    given = case.get("given") or {}
    observed = case.get("observed") or {}
    if "temp_buffer_bytes" not in given and any(k in observed for k in _NEEDS_TEMP):
        raise Skip("the log's Total/Temporary figures need the compiled temp buffer, which neither config.json "
                   "nor this case gives (no `given.temp_buffer_bytes`); kvcap's estimate (+2–22% on the public logs) "
                   "cannot match a figure printed to the last MB decimal")
    try:
        model, options = _model_and_options(case)
        dev, how = _device(case, None)
        e2e = _predict(model, dev, options)
        if dev.memory_bytes == AMPLE_MEMORY:
            # End to end cannot know a memory the case does not state: only the weights are predicted.
            e2e = {"params_mib": e2e["params_mib"]}
            how = "not stated: end to end predicts the weights only"
        out: dict[str, Any] = {"end_to_end": e2e, "note": f"device memory {how}"}
        if given:
            dev2, how2 = _device(case, given.get("device_total_bytes"))
            out["from_given"] = _predict(model, dev2, _with_temp(options, given, era, 0))
            out["note"] = f"device memory {how} (end to end), {how2} (from given)"
            if "temp_buffer_bytes" in given:
                # The given temp was backed out of a 'Temporary buffer' printed to `mib_decimals`:
                # it is known to ± half a printed unit, and so is every prediction made from it.
                spread: dict[str, float] = {}
                for sign in (-1, 1):
                    other = _predict(model, dev2, _with_temp(options, given, era, sign))
                    _spread(out["from_given"], other, spread, "")
                out["from_given_spread"] = spread
        return out
    except KvcapError as e:
        raise Skip(f"cannot replay: {e}") from None


def _with_temp(options: dict, given: dict, era, sign: int) -> dict:
    opts = dict(options)
    if "temp_buffer_bytes" not in given:
        return opts
    half_unit = 0.5 * 10 ** -era.mib_decimals * MiB     # bytes of the budgeted (logged) temp
    budgeted = float(given["temp_buffer_bytes"]) + sign * half_unit
    # C++ budgets 2 × the compiled per-function maximum; the Python engine budgeted it as is.
    opts["temp_buffer_bytes"] = max(1, round(budgeted if era.python else budgeted / 2))
    return opts


def _spread(base: dict, other: dict, out: dict, prefix: str) -> None:
    for k, v in base.items():
        w = other.get(k)
        if isinstance(v, dict) and isinstance(w, dict):
            _spread(v, w, out, f"{prefix}{k}." if k != "mode_lines" else "")
        elif isinstance(v, (int, float)) and isinstance(w, (int, float)) and not isinstance(v, bool):
            out[prefix + k] = max(out.get(prefix + k, 0.0), abs(float(w) - float(v)))


def _model_and_options(case: dict):
    from ..model import load_model
    m = case.get("model") or {}
    if not isinstance(m.get("hf_config"), dict):
        raise Skip("the case carries no model.hf_config")
    model = load_model(dict(m["hf_config"]))
    options = dict(case.get("options") or {})
    options["quantization"] = _quantization(case.get("weights"), model.dtype)
    options["engine_era"] = case.get("engine_era") or "current"
    extra = []
    for a in m.get("additional_models") or []:
        if not isinstance(a.get("hf_config"), dict):
            raise Skip("an additional model carries no hf_config")
        spec = load_model(dict(a["hf_config"]))
        extra.append((spec, _quantization(a.get("weights"), spec.dtype)))
    if extra:
        options["additional_models"] = extra
    return model, options


def _quantization(weights: dict | None, dtype: str) -> str:
    """An MLC quantization name; a case without one ran the checkpoint unquantized."""
    weights = weights or {}
    if weights.get("quantization"):
        return str(weights["quantization"])
    return unquantized_for(str(weights.get("dtype") or dtype).removeprefix("torch.")).name


def _device(case: dict, given_total: Any):
    d = case.get("device") or {}
    backend = d.get("backend") or "cuda"
    count = (case.get("options") or {}).get("tensor_parallel_shards") or 1
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise DeviceError(f"options.tensor_parallel_shards must be a positive integer, got {count!r}")
    if given_total is not None:
        return custom_device(backend, int(given_total), name=d.get("name") or "", count=count), "given"
    if d.get("total_memory_bytes"):
        return custom_device(backend, int(d["total_memory_bytes"]), name=d.get("name") or "", count=count), "stated"
    if d.get("name"):
        try:
            dev = get_device(d["name"])
            if dev.backend == backend:
                return dataclasses.replace(dev, count=count), f"from the catalog ({dev.key})"
        except KvcapError:
            pass
    return custom_device(backend, AMPLE_MEMORY, name=d.get("name") or "", count=count), "not stated (ample assumed)"


def _predict(model, device, options: dict) -> dict:
    p = policy.plan(model, device, options)
    cfg = p.engine_config
    out: dict[str, Any] = {"params_mib": p.line("params_bytes") / MiB}
    if p.fits:
        out.update({
            "max_num_sequence": cfg["max_num_sequence"],
            "max_total_sequence_length": cfg["max_total_sequence_length"],
            "prefill_chunk_size": cfg["prefill_chunk_size"],
            "total_mib": p.line("estimated_total") / MiB,
            "kv_cache_mib": p.line("estimated_kv_cache") / MiB,
            "temp_buffer_mib": p.line("estimated_temporary") / MiB,
        })
    else:
        out["error"] = p.binding.reason
    modes: dict[str, dict] = {}
    for line in p.ledger:
        mode, _, field = line.name.partition(".")
        if mode in ("local", "interactive", "server") and field:
            modes.setdefault(mode, {})[field] = line.value
    if modes:
        out["mode_lines"] = modes
    return out
