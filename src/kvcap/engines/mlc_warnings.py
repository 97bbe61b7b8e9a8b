"""Plain-words warnings for an MLC plan: what the estimate leaves out, and what is assumed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..model.spec import MLA
from . import mlc_estimate as E
from .base import rule

if TYPE_CHECKING:  # pragma: no cover
    from .mlc_report import Context


def warnings(ctx: "Context", r: E.ModeResult) -> list[str]:
    out: list[str] = []
    dev, o = ctx.engine_device, ctx.options
    if not r.fits:
        out.append(r.error)
    metal = rule("mlc", "metal", "kv_token_cap")
    if dev.backend == "metal" and metal is not None and o.era.metal_cap and not ctx.estimate.rnn:
        if dev.cap == metal.value:
            out.append(
                f"On Metal, MLC-LLM caps the KV cache at {metal.value:,} tokens after the memory budget, whatever "
                "the memory (cpp/serve/config.cc, PR #1943). The cap counts tokens, so a smaller per-token KV "
                "(KV quantization) does not lift it; it helps only where memory binds. A max_total_seq_length "
                "you set yourself is not capped.")
        else:
            out.append(f"MLC-LLM itself caps Metal at {metal.value:,} tokens; this plan "
                       + ("drops that cap (no_cap)." if dev.cap is None else f"uses cap {dev.cap:,} instead."))
    if any(m.temp_estimated for m in ctx.models):
        out.append("The compiled temporary buffer is estimated (marked ~); `mlc_llm compile` prints the real one "
                   "('Temporary buffer'): pass it as temp_buffer_bytes (--temp-buffer) for MLC's exact numbers.")
    for m in ctx.models:
        if m.defaults_used:
            out.append(f"{m.spec.name}: compile-time values assumed from mlc_llm gen_config defaults: "
                       f"{'; '.join(m.defaults_used)}. A prebuilt library may differ (compile_* options).")
        if m.scheme.model_dtype == "float32":
            out.append(f"{m.scheme.name} keeps the KV cache in float32; MLC's estimate assumes 2 bytes, so the "
                       "real KV cache is twice what it budgets.")
        if m.spec.layers and m.spec.layers[0].kind == MLA:
            out.append(f"{m.spec.name}: MLC budgets K and V for the MLA latent, twice what the cache stores.")
        if m.sliding_window_size != -1 and not o.era.interactive_sliding_cap and ctx.mode == "interactive":
            out.append("Since #3248 (2025-06) interactive mode gives a sliding-window model the whole budget, "
                       "though one sequence only ever holds the window plus sinks.")
    if dev.backend == "cuda" and not o.era.python:
        out.append("On CUDA with FlashInfer (the default build) MLC also allocates a 768 MiB float workspace it "
                   "does not budget; CUDA context and cuBLAS memory are not budgeted either.")
    if ctx.models[0].tp > ctx.device.count:
        out.append(f"tensor_parallel_shards={ctx.models[0].tp} needs {ctx.models[0].tp} GPUs; the device lists "
                   f"{ctx.device.count}: this is the plan per GPU, had the host that many.")
    if ctx.models[0].tp > 1 or ctx.models[0].pp > 1:
        out.append("Under tensor or pipeline parallelism MLC replicates embeddings, lm_head and norms on every "
                   "GPU; pipeline stages split the weight bytes evenly in its estimate.")
    if o.quantization_defaulted:
        out.append("No quantization given: planned with q4f16_1, the scheme of MLC's prebuilt models (--quant).")
    if o.era.python:
        out.append(f"Replaying the Python estimator of era {o.era.name} (util {o.era.default_utilization}, temp "
                   "buffer not doubled).")
    return out
