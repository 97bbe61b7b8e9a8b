"""Replay vLLM cases (../shared/validation/vllm.jsonl) through kvcap's vLLM policy.

Two predictions per case:
- end to end: kvcap's own estimate of the profiled memory, from the device's total memory;
- from given: the logged 'Available KV cache memory' put in place of the estimate, which leaves
  only vLLM's exact page, group and block arithmetic to judge.
Memory fields are predicted end to end only when the device's cudaMemGetInfo total is known:
from the case, or from a catalog device whose memory is that reading. A case whose 'error' is a
startup status rather than vLLM's own refusal (a table's FAILED, EngineCore's 'failed to start')
is compared on that status: kvcap predicts it when its plan refuses.
"""

from __future__ import annotations

import re
from typing import Any

from ..device import custom_device
from ..engines import vllm
from ..errors import KvcapError
from ..model import load_model

GiB = 1 << 30
PLACEHOLDER_MEMORY = 80 * GiB           # for fields that do not depend on the device's memory
STATUS_ERRORS = ("FAILED", "EngineCore failed to start.")
FIELDS = ("num_gpu_blocks", "kv_cache_tokens", "max_concurrency", "error")


def _skip(reason: str) -> Exception:
    from . import Skip   # the framework imports this module by name; import it lazily
    return Skip(reason)


def replay(case: dict) -> dict:
    version = case.get("engine_version")
    if not version:
        raise _skip("no engine_version: vLLM's sizing rules and defaults follow the release")
    hf_config = (case.get("model") or {}).get("hf_config")
    if not isinstance(hf_config, dict):
        raise _skip("the case carries no model.hf_config")
    try:
        model = load_model(dict(hf_config))
    except KvcapError as e:
        raise _skip(f"model not buildable: {e}") from None
    options = _options(case, str(version))
    total, where = _device_total(case)
    device = custom_device("cuda", total or _nominal(case), name=str((case.get("device") or {}).get("name") or ""),
                           count=options.get("tensor_parallel_size", 1) * options.get("pipeline_parallel_size", 1))
    observed = case.get("observed") or {}
    try:
        e2e_plan = vllm.plan(model, device, options)
    except KvcapError as e:
        raise _skip(f"kvcap refuses this case: {e}") from None
    e2e: dict[str, Any] = {"weights_gib": e2e_plan.memory["weights"] / GiB}
    bars = {"weights_gib": (e2e_plan.ledger_line("weights").error_bar or 0) / GiB}
    if total:
        e2e.update(_fields(e2e_plan, observed))
        e2e["available_kv_cache_gib"] = e2e_plan.line("available_kv_cache_memory") / GiB
        bars.update(_bars(e2e_plan))
    out: dict[str, Any] = {"end_to_end": e2e, "end_to_end_tolerance": bars}
    notes = [] if total else ["device total unknown: memory fields predicted from given only"]
    if where:
        notes.append(where)
    given = (case.get("given") or {}).get("available_kv_cache_bytes")
    if isinstance(given, (int, float)):
        given = int(given)
        center = _fields(vllm.plan(model, device, options, available=given), observed)
        out["from_given"] = center
        tol = ((case.get("tolerance") or {}).get("available_kv_cache_bytes") or {}).get("abs")
        if isinstance(tol, (int, float)) and tol > 0:
            out["from_given_spread"] = _spread(model, device, options, given, int(tol), center, observed)
        if options.get("tensor_parallel_size", 1) * options.get("pipeline_parallel_size", 1) > 1:
            # The logged Available line is one worker's; vLLM takes the smallest worker's blocks
            # (get_kv_cache_configs), so from that line kvcap can only bound the count from above.
            center.pop("error", None)
            out["from_given_bound"] = {name: "upper" for name in FIELDS[:3]}
            notes.append("the given Available line is one worker's and vLLM takes the smallest worker's blocks: "
                         "from given, the counts are upper bounds")
    if notes:
        out["note"] = "; ".join(notes)
    return out


def _options(case: dict, version: str) -> dict[str, Any]:
    options = dict(case.get("options") or {})
    options["engine_version"] = version
    weights = case.get("weights") or {}
    if weights.get("quantization"):
        options["quantization"] = weights["quantization"]
    elif weights.get("dtype"):
        options["dtype"] = weights["dtype"]
    return options


def _fields(p, observed: dict) -> dict[str, Any]:
    out: dict[str, Any] = {name: p.line(name) for name in FIELDS[:3]}
    if p.fits:
        out["error"] = None
    elif observed.get("error") in STATUS_ERRORS:
        out["error"] = observed["error"]
    else:
        out["error"] = first_sentence(p.binding.reason)
    return out


def _bars(p) -> dict[str, float]:
    """The plan's own error bar on the available KV memory, carried to each field it sets
    (blocks, tokens and concurrency scale with the available memory)."""
    line = p.ledger_line("available_kv_cache_memory")
    bar, available = float(line.error_bar or 0), float(line.value)
    out = {"available_kv_cache_gib": bar / GiB}
    if available > 0:
        for name in FIELDS[:3]:
            out[name] = abs(float(p.line(name))) * bar / available
    return out


def first_sentence(text: str) -> str:
    """vLLM's refusal up to its first full stop (the part the cases quote)."""
    m = re.search(r"\)\.(\s|$)|[a-z]\.(\s|$)", text)
    return text[: m.start() + 2] if m else text


def _spread(model, device, options, given: int, tol: int, center: dict, observed: dict) -> dict[str, float]:
    """How far each from-given field moves across the given value's print rounding."""
    out: dict[str, float] = {}
    for delta in (-tol, tol):
        fields = _fields(vllm.plan(model, device, options, available=given + delta), observed)
        for name in FIELDS[:3]:
            out[name] = max(out.get(name, 0.0), abs(float(fields[name]) - float(center[name])))
    return out


# ---- the device's total memory -----------------------------------------------------------------
_PREFIX = re.compile(r"^\s*\d+\s*x\s*", re.I)


def _device_total(case: dict) -> tuple[int | None, str]:
    """(cudaMemGetInfo total, how it was found) — None when neither the case nor a measured
    catalog entry gives it (a catalog's nvidia-smi total is a few hundred MiB too high)."""
    dev = case.get("device") or {}
    if isinstance(dev.get("total_memory_bytes"), (int, float)):
        return int(dev["total_memory_bytes"]), ""
    entry = _catalog(dev.get("name"))
    if entry is not None and "cudaMemGetInfo" in entry.memory_source:
        return entry.memory_bytes, f"device total from the catalog's {entry.key} (a cudaMemGetInfo reading)"
    return None, ""


def _nominal(case: dict) -> int:
    entry = _catalog((case.get("device") or {}).get("name"))
    return entry.memory_bytes if entry is not None else PLACEHOLDER_MEMORY


def _catalog(name: Any):
    if not isinstance(name, str) or not name:
        return None
    from ..device import get_device
    text = _PREFIX.sub("", re.sub(r"\(.*?\)", "", name)).replace("NVIDIA", "").strip()
    # An 'H100' without a size is the 80 GB part: the 94 GB one is always named NVL.
    if re.fullmatch(r"H100", text, re.I):
        text = "H100 80GB"
    try:
        return get_device(text)
    except KvcapError:
        return None
