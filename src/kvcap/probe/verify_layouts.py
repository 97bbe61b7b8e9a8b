"""What each engine allocates, read off a Plan: which memory lines are weights, KV cache,
workspaces, or no allocation at all, and the KV cache's buffers in that engine's layout.

No torch here: this is bookkeeping. An unknown memory line is refused (fail closed) rather
than guessed, naming the lines this file knows for that engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import ProbeError
from ..model.spec import ModelSpec
from ..plan import Plan
from .kernels import LLAMACPP, MLC, VLLM

# Roles of a plan's memory lines.
WEIGHTS = "weights"          # allocated as the model's tensors
KV = "kv"                    # allocated in the engine's KV layout from its engine_config
WORKSPACE = "workspace"      # allocated as one buffer of that many bytes
NON_TORCH = "non_torch"      # not allocated: memory outside torch (context, cuBLAS), measured
SUM = "sum"                  # not allocated: a total or budget of other lines
HOST = "host"                # not allocated: lives in host memory
UNUSED = "unused"            # not allocated: device memory the engine's budget leaves free

ROLES: dict[str, dict[str, str]] = {
    # engines/mlc_report.py:_memory (cpp/serve/config.cc:EstimateMemoryUsageOnMode terms)
    "mlc": {"params": WEIGHTS, "kv_cache": KV, "temp_buffer": WORKSPACE, "kv_aux_workspace": WORKSPACE,
            "model_workspace": WORKSPACE, "logit_processor_workspace": WORKSPACE, "total": SUM, "budget": SUM},
    # engines/vllm.py (v1/worker/gpu_worker.py:determine_available_memory terms)
    "vllm": {"weights": WEIGHTS, "kv_cache": KV, "activation_peak": WORKSPACE, "cudagraph": WORKSPACE,
             "non_torch": NON_TORCH, "unbudgeted": UNUSED},
    # engines/llamacpp.py (llama_context: model buffers, KV buffer, compute buffer)
    "llamacpp": {"weights": WEIGHTS, "kv_cache": KV, "compute": WORKSPACE, "host_weights": HOST,
                 "host_kv_cache": HOST, "total": SUM},
}
KV_LAYOUT = {"mlc": MLC, "vllm": VLLM, "llamacpp": LLAMACPP}


def roles(plan: Plan) -> dict[str, str]:
    """{memory line: role} for every line of the plan; ProbeError on any line not known."""
    table = ROLES.get(plan.engine)
    if table is None:
        raise ProbeError(f"verify supports engines {', '.join(ROLES)}, not {plan.engine!r}")
    unknown = sorted(set(plan.memory) - set(table))
    if unknown:
        raise ProbeError(f"verify does not know what {plan.engine}'s memory line(s) {', '.join(unknown)} "
                         f"allocate; it knows {', '.join(table)}")
    return {name: table[name] for name in plan.memory}


@dataclass(frozen=True)
class KVShape:
    """The KV cache as the engine allocates it: `buffers` buffers of `pages` pages each, every
    page holding K and V of `num_kv_heads` x `head_dim` for `page` tokens; `layers_per_buffer`
    layers share one buffer (llama.cpp keeps every layer in one backend buffer)."""

    layout: str
    num_layers: int
    pages: int                   # per layer
    page: int
    num_kv_heads: int
    head_dim: int
    itemsize: int
    layers_per_buffer: int = 1
    tokens: int = 0              # the capacity the engine config states
    batch: int = 1               # sequences decoded at once (the planned batch)
    prefill_chunk: int = 0       # tokens of one prefill chunk
    rule: str = ""

    @property
    def layer_bytes(self) -> int:
        return self.pages * 2 * self.num_kv_heads * self.page * self.head_dim * self.itemsize

    @property
    def total_bytes(self) -> int:
        return self.layer_bytes * self.num_layers


def _uniform(model: ModelSpec, engine: str):
    if not model.is_uniform_attention:
        raise ProbeError(f"verify runs uniform full-attention models (Llama, Qwen, Mistral …); "
                         f"{model.name} has layers {model.layer_kinds()}")
    first = model.layers[0]
    if first.head_dim_k != first.head_dim_v:
        raise ProbeError(f"{model.name}: K and V head dims differ; the probe's kernel needs them equal")
    return first


def _itemsize(dtype: str, what: str) -> int:
    d = (dtype or "").lower()
    if d in ("auto", "f16", "float16", "fp16", "bf16", "bfloat16", "half", ""):
        return 2
    raise ProbeError(f"verify runs 16-bit KV caches; {what} is {dtype!r}")


def _int(cfg: Mapping[str, Any], *names: str, default: int | None = None) -> int:
    for n in names:
        if cfg.get(n) is not None:
            return int(cfg[n])
    if default is None:
        raise ProbeError(f"the plan's engine_config has none of {', '.join(names)}")
    return default


def kv_shape(plan: Plan, tokens: int | None = None) -> KVShape:
    """The plan's KV cache (or the same engine's cache at `tokens` capacity, for --find-limit)."""
    model, cfg = plan.model, plan.engine_config
    layer = _uniform(model, plan.engine)
    n_layers = len(model.layers)
    if plan.engine == "mlc":
        total = tokens if tokens is not None else _int(cfg, "max_total_sequence_length")
        # TVM paged_kv_cache.cc (PagedAttentionKVCacheObj constructor): ceil(capacity / 16) + 1
        # pages, one buffer per layer of [pages, 2, kv_heads, 16, head_dim] in the model dtype.
        pages = -(-total // 16) + 1
        return KVShape(MLC, n_layers, pages, 16, layer.num_kv_heads, layer.head_dim_k, 2, tokens=total,
                       batch=_int(cfg, "max_num_sequence", default=1),
                       prefill_chunk=_int(cfg, "prefill_chunk_size", default=min(total, 2048)),
                       rule="TVM paged_kv_cache.cc: ceil(T/16)+1 pages per layer")
    if plan.engine == "vllm":
        block = _int(cfg, "block_size", default=16)
        blocks = tokens // block if tokens is not None else _int(cfg, "num_gpu_blocks", default=plan.kv_tokens // block)
        size = _itemsize(str(cfg.get("kv_cache_dtype", "auto")), "kv_cache_dtype")
        return KVShape(VLLM, n_layers, blocks, block, layer.num_kv_heads, layer.head_dim_k, size, tokens=blocks * block,
                       batch=_int(cfg, "max_num_seqs", default=1),
                       prefill_chunk=_int(cfg, "max_num_batched_tokens", default=min(blocks * block, 2048)),
                       rule="gpu_model_runner: one [2, blocks, 16, H, D] tensor per layer")
    if plan.engine == "llamacpp":
        n_ctx = tokens if tokens is not None else _int(cfg, "n_ctx")
        if n_ctx % 16:
            raise ProbeError(f"n_ctx {n_ctx} is not a multiple of 16")
        for key in ("type_k", "type_v"):
            _itemsize(str(cfg.get(key, "f16")), key)
        # llama-kv-cache.cpp: K and V [n_ctx, H*D] per layer, all layers in one backend buffer.
        return KVShape(LLAMACPP, n_layers, n_ctx // 16, 16, layer.num_kv_heads, layer.head_dim_k, 2,
                       layers_per_buffer=n_layers, tokens=n_ctx, batch=_int(cfg, "n_seq_max", default=1),
                       prefill_chunk=_int(cfg, "n_ubatch", default=512),
                       rule="llama-kv-cache.cpp: K, V [n_ctx, H*D] per layer in one buffer")
    raise ProbeError(f"verify supports engines {', '.join(ROLES)}, not {plan.engine!r}")


def token_step(plan: Plan) -> int:
    """The granularity of the engine's KV capacity, in tokens (for --find-limit)."""
    if plan.engine == "vllm":
        return _int(plan.engine_config, "block_size", default=16)
    if plan.engine == "llamacpp":
        return 256    # llama.cpp pads n_ctx to 256 (llama_context, research/llamacpp.md §2.1)
    return 1
