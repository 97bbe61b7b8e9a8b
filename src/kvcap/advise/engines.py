"""What advise must know of each engine to change one thing and plan again.

For every engine: the backends its kvcap policy models, the option that carries the weight
quantization and the KV dtype (in the engine's own names), how tensor/pipeline parallelism is
asked for, whether it runs across nodes, the options that ask for "K sequences of N tokens",
and how to read from its Plan how many such sequences one replica holds (adapter.py has the
interface). Levels are bits: 16 = unquantized, 8, 4.
"""

from __future__ import annotations

import math
from typing import Any

from ..model.spec import ModelSpec
from ..plan import INSUFFICIENT, Plan
from .adapter import (LEVELS, Adapter, Choice, Served, _all_layers, _ckpt_bits, _failed, _gguf_bits, _gguf_weights,
                      _line)

__all__ = ["ADAPTERS", "LEVELS", "Adapter", "Choice", "Served", "adapter"]


class MLC(Adapter):
    name = "mlc"
    backends = ("cuda", "rocm", "metal", "vulkan", "opencl", "webgpu")
    multi_gpu = True

    def weights(self, model: ModelSpec) -> dict[int, Choice]:
        # MLC compiles its own weights; q0f16 and q4f16_1 are its prebuilt schemes.
        return {16: Choice("q0f16", 16, {"quantization": "q0f16"}),
                4: Choice("q4f16_1", 4.5, {"quantization": "q4f16_1"}, "4-bit group quantization: some quality loss")}

    def native_weight(self, name: str, model: ModelSpec) -> Choice | None:
        from ..quant import SCHEMES, ALIASES
        key = ALIASES.get(name.lower(), name.lower())
        s = SCHEMES.get(key)
        if s is None:
            return None
        return Choice(s.name, float(s.quantize_bits or 16), {"quantization": s.name},
                      "" if not s.quantize_bits else f"{s.quantize_bits}-bit MLC quantization")

    def kv(self, model: ModelSpec) -> dict[int, Choice]:
        # MLC's KV cache holds the model dtype of the scheme (paged_kv_cache.cc); no KV knob.
        return {16: Choice("model dtype", 16)}

    def layout(self, tp: int, pp: int) -> dict[str, Any] | None:
        if pp != 1:
            return None
        return {"tensor_parallel_shards": tp} if tp > 1 else {}

    def target(self, model: ModelSpec, context: int, concurrency: int) -> dict[str, Any]:
        return {"mode": "server", "max_num_sequence": concurrency, "context_window_size": context}

    def served(self, plan: Plan, model: ModelSpec, context: int, concurrency: int) -> Served:
        bad = _failed(plan)
        if bad:
            return bad
        single = int(plan.engine_config.get("max_single_sequence_length") or 0)
        if single and single < context:
            return Served(0, True, f"the model library's context window is {single:,} tokens (compile-time "
                          "context_window_size); recompile with a larger one")
        memory = _line(plan, "capacity_memory", plan.kv_tokens)
        capped = _line(plan, "capacity_after_device_cap", memory)
        c = min(concurrency, int(memory) // context)
        lacks = "" if c >= concurrency else (f"memory holds {int(memory):,} KV tokens, {context * concurrency:,} "
                                              "needed")
        return Served(c, True, lacks, over_cap=c * context > capped)

    def target_for_capacity(self, context: int, sequences: int | None) -> dict[str, Any]:
        if sequences == 1:
            return {"mode": "interactive"}
        return {"mode": "server", **({"max_num_sequence": sequences} if sequences else {})}

    def shape(self, plan: Plan) -> tuple[int, int | None]:
        cfg = plan.engine_config
        return int(cfg.get("max_single_sequence_length") or plan.kv_tokens), int(cfg.get("max_num_sequence") or 1)

    def default_weight_bits(self, model: ModelSpec) -> float:
        return 4.5                      # q4f16_1, what kvcap plans MLC with by default

    def near_memory(self, plan: Plan) -> bool:
        memory = _line(plan, "capacity_memory", None)
        return super().near_memory(plan) or (memory is not None and plan.kv_tokens > 0
                                             and memory < 1.1 * plan.kv_tokens)

    def tp_key(self) -> str | None:
        return "tensor_parallel_shards"

    def pin(self, served: Served, context: int, concurrency: int) -> dict[str, Any]:
        # MLC caps an inferred KV size on Metal, never one set explicitly (cpp/serve/config.cc).
        if served.over_cap:
            return {"max_total_sequence_length": min(served.concurrency, concurrency) * context}
        return {}


class VLLM(Adapter):
    name = "vllm"
    backends = ("cuda", "rocm")
    reads_device_name = True
    multi_gpu = True
    multi_node = ("Ray (--distributed-executor-backend ray) or vLLM's own launcher (--nnodes/--node-rank/"
                  "--master-addr): tensor parallel inside a node over NVLink, pipeline parallel across nodes "
                  "over InfiniBand/RoCE")
    data_parallel = "vllm serve --data-parallel-size R (or one server per replica behind a load balancer)"

    def weights(self, model: ModelSpec) -> dict[int, Choice]:
        bits = _ckpt_bits(model)
        if bits is not None:
            return {int(min(16, bits)): Choice("checkpoint's", bits)}
        return {16: Choice(model.dtype, 16),
                8: Choice("fp8", 8, {"quantization": "fp8"}, "fp8 weights quantized on load: small quality loss"),
                4: Choice("awq", 4, {"quantization": "awq"},
                          "needs an AWQ 4-bit checkpoint of the model (vLLM does not make one); some quality loss")}

    def native_weight(self, name: str, model: ModelSpec) -> Choice | None:
        from ..engines.vllm_memory import QUANTIZATIONS
        n = name.lower()
        if n not in QUANTIZATIONS:
            return None
        bits = 8 if n == "fp8" else 4
        return Choice(n, bits, {"quantization": n}, "" if n == "fp8" else f"needs a {n} checkpoint")

    def kv(self, model: ModelSpec) -> dict[int, Choice]:
        return {16: Choice("auto", 16), 8: Choice("fp8", 8, {"kv_cache_dtype": "fp8"}, "fp8 KV cache: small quality loss")}

    def native_kv(self, name: str) -> Choice | None:
        from ..engines.vllm_layers import KV_CACHE_DTYPES
        if name not in KV_CACHE_DTYPES:
            return None
        return Choice(name, 16 if KV_CACHE_DTYPES[name] in (None, 2) else 8, {"kv_cache_dtype": name})

    def layout(self, tp: int, pp: int) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        if tp > 1:
            out["tensor_parallel_size"] = tp
        if pp > 1:
            out["pipeline_parallel_size"] = pp
        return out

    def target(self, model: ModelSpec, context: int, concurrency: int) -> dict[str, Any]:
        # max_num_seqs defaults to 256 or 1024 (vllm_options); ask for more only when needed.
        return {"max_model_len": context, **({"max_num_seqs": concurrency} if concurrency > 256 else {})}

    def served(self, plan: Plan, model: ModelSpec, context: int, concurrency: int) -> Served:
        bad = _failed(plan)
        if bad:
            return bad
        c = int(math.floor(float(_line(plan, "max_concurrency", 0))))
        c = min(c, int(plan.engine_config.get("max_num_seqs") or c))
        lacks = "" if c >= concurrency else (f"{plan.kv_tokens:,} KV tokens hold {c} requests of {context:,} tokens "
                                              "(vLLM's 'Maximum concurrency')")
        return Served(c, True, lacks)

    def target_for_capacity(self, context: int, sequences: int | None) -> dict[str, Any]:
        return {"max_model_len": context}

    def shape(self, plan: Plan) -> tuple[int, int | None]:
        return int(plan.engine_config.get("max_model_len") or plan.kv_tokens), None

    def tp_key(self) -> str | None:
        return "tensor_parallel_size"


class SGLang(Adapter):
    name = "sglang"
    backends = ("cuda", "rocm")
    reads_device_name = True
    multi_gpu = True
    multi_node = ("--nnodes/--node-rank/--dist-init-addr: tensor parallel spans the nodes, so they need a fast "
                  "interconnect (InfiniBand/RoCE)")
    data_parallel = "--dp-size R (or one server per replica behind a load balancer)"

    def weights(self, model: ModelSpec) -> dict[int, Choice]:
        bits = _ckpt_bits(model)
        return {int(min(16, bits or 16)): Choice("checkpoint's" if bits else model.dtype, bits or 16)}

    def kv(self, model: ModelSpec) -> dict[int, Choice]:
        return {16: Choice("auto", 16), 8: Choice("fp8_e4m3", 8, {"kv_cache_dtype": "fp8_e4m3"},
                                                  "fp8 KV cache: small quality loss")}

    def native_kv(self, name: str) -> Choice | None:
        if name not in ("auto", "fp8_e5m2", "fp8_e4m3", "bf16", "bfloat16"):
            return None
        return Choice(name, 8 if name.startswith("fp8") else 16, {"kv_cache_dtype": name})

    def layout(self, tp: int, pp: int) -> dict[str, Any] | None:
        if pp != 1:  # kvcap's SGLang policy models pipeline size 1 only
            return None
        return {"tp_size": tp} if tp > 1 else {}

    def target(self, model: ModelSpec, context: int, concurrency: int) -> dict[str, Any]:
        return {"context_length": context}

    def served(self, plan: Plan, model: ModelSpec, context: int, concurrency: int) -> Served:
        bad = _failed(plan)
        if bad:
            return bad
        # A request reserves its tokens in the pool (page size 1): the pool over the context.
        c = plan.kv_tokens // context
        running = plan.engine_config.get("max_running_requests")
        if running:
            c = min(c, int(running))
        lacks = "" if c >= concurrency else f"the pool's {plan.kv_tokens:,} tokens hold {c} requests of {context:,}"
        return Served(c, True, lacks)

    def target_for_capacity(self, context: int, sequences: int | None) -> dict[str, Any]:
        return {"context_length": context}

    def shape(self, plan: Plan) -> tuple[int, int | None]:
        return int(plan.engine_config.get("context_len") or plan.kv_tokens), None

    def tp_key(self) -> str | None:
        return "tp_size"


class LlamaCpp(Adapter):
    name = "llamacpp"
    backends = ("cuda", "rocm", "metal", "vulkan", "cpu")
    multi_gpu = True                 # -sm layer: layers (and their KV) spread over the GPUs

    def weights(self, model: ModelSpec) -> dict[int, Choice]:
        return _gguf_weights(model)

    def native_weight(self, name: str, model: ModelSpec) -> Choice | None:
        from ..engines.llamacpp_types import FILE_TYPES
        if name.upper() not in FILE_TYPES:
            return None
        return Choice(name.upper(), _gguf_bits(name), {"gguf_file_type": name.upper()})

    def kv(self, model: ModelSpec) -> dict[int, Choice]:
        return {16: Choice("f16", 16),
                8: Choice("q8_0", 8.5, {"type_k": "q8_0", "type_v": "q8_0"}, "q8_0 KV cache: near-lossless"),
                4: Choice("q4_0", 4.5, {"type_k": "q4_0", "type_v": "q4_0"}, "q4_0 KV cache: noticeable quality loss")}

    def native_kv(self, name: str) -> Choice | None:
        from ..engines.llamacpp_types import KV_CACHE_TYPES
        if name.lower() not in KV_CACHE_TYPES:
            return None
        bits = {"f32": 32, "f16": 16, "bf16": 16, "q8_0": 8.5}.get(name.lower(), 4.5)
        return Choice(name.lower(), bits, {"type_k": name.lower(), "type_v": name.lower()})

    def layout(self, tp: int, pp: int) -> dict[str, Any] | None:
        return {} if pp == 1 else None  # the device count carries the layer split

    def target(self, model: ModelSpec, context: int, concurrency: int) -> dict[str, Any]:
        # --fit off: kvcap wants to know whether everything fits on the device, not what --fit trims.
        return {"n_ctx": context * concurrency, "n_seq_max": concurrency, "fit": "off"}

    def served(self, plan: Plan, model: ModelSpec, context: int, concurrency: int) -> Served:
        return _all_layers(plan, model, context, concurrency, "n_ctx_seq")

    def target_for_capacity(self, context: int, sequences: int | None) -> dict[str, Any]:
        s = sequences or 1
        return {"n_ctx": context * s, "n_seq_max": s}

    def shape(self, plan: Plan) -> tuple[int, int | None]:
        cfg = plan.engine_config
        return int(cfg.get("n_ctx_seq") or cfg.get("n_ctx") or plan.kv_tokens), int(cfg.get("n_seq_max") or 1)

    def default_weight_bits(self, model: ModelSpec) -> float:
        from ..engines.llamacpp import file_type_hint
        return _gguf_bits(file_type_hint(model) or "Q4_K_M")

    def near_memory(self, plan: Plan) -> bool:
        from ..engines.llamacpp_kv import n_layer
        ngl = plan.engine_config.get("n_gpu_layers")
        if ngl is not None and int(ngl) <= n_layer(plan.model):
            return True                  # layers left on the CPU: memory binds
        m = plan.memory
        used = sum(int(m.get(k, 0)) for k in ("weights", "kv_cache", "compute"))
        total = plan.device.memory_bytes * plan.device.count
        return super().near_memory(plan) or used >= 0.9 * total


class Ollama(LlamaCpp):
    name = "ollama"
    backends = ("cuda", "rocm", "metal", "vulkan", "cpu")

    def kv(self, model: ModelSpec) -> dict[int, Choice]:
        # Quantized KV types need flash attention (envconfig OLLAMA_KV_CACHE_TYPE).
        return {16: Choice("f16", 16),
                8: Choice("q8_0", 8.5, {"OLLAMA_KV_CACHE_TYPE": "q8_0", "OLLAMA_FLASH_ATTENTION": True},
                          "q8_0 KV cache: near-lossless"),
                4: Choice("q4_0", 4.5, {"OLLAMA_KV_CACHE_TYPE": "q4_0", "OLLAMA_FLASH_ATTENTION": True},
                          "q4_0 KV cache: noticeable quality loss")}

    def native_kv(self, name: str) -> Choice | None:
        if name.lower() not in ("f16", "q8_0", "q4_0"):
            return None
        c = self.kv(None)  # type: ignore[arg-type]
        return {"f16": c[16], "q8_0": c[8], "q4_0": c[4]}[name.lower()]

    def target(self, model: ModelSpec, context: int, concurrency: int) -> dict[str, Any]:
        return {"num_ctx": context, "OLLAMA_NUM_PARALLEL": concurrency}

    def served(self, plan: Plan, model: ModelSpec, context: int, concurrency: int) -> Served:
        return _all_layers(plan, model, context, concurrency, "num_ctx")

    def target_for_capacity(self, context: int, sequences: int | None) -> dict[str, Any]:
        return {"num_ctx": context, "OLLAMA_NUM_PARALLEL": sequences or 1}

    def shape(self, plan: Plan) -> tuple[int, int | None]:
        cfg = plan.engine_config
        return int(cfg.get("num_ctx") or plan.kv_tokens), int(cfg.get("num_parallel") or 1)


class MLX(Adapter):
    name = "mlx"
    backends = ("metal",)
    # mlx.py prices a quantized cache with what attention dequantizes on the way: at long contexts
    # a 4-bit cache can hold fewer tokens than the plain one, so KV dtypes are not ordered.
    kv_monotone = False

    def weights(self, model: ModelSpec) -> dict[int, Choice]:
        bits = _ckpt_bits(model)
        if bits is not None:
            return {int(min(16, bits)): Choice("checkpoint's", bits)}
        return {16: Choice(model.dtype, 16),
                8: Choice("8-bit", 8.5, {"q_bits": 8}, "mlx_lm.convert -q --q-bits 8: near-lossless"),
                4: Choice("4-bit", 4.5, {"q_bits": 4}, "mlx_lm.convert -q --q-bits 4: some quality loss")}

    def kv(self, model: ModelSpec) -> dict[int, Choice]:
        return {16: Choice("model dtype", 16),
                8: Choice("8-bit KV", 8.5, {"kv_bits": 8}, "--kv-bits 8 (mlx_lm.generate only): small quality loss"),
                4: Choice("4-bit KV", 4.5, {"kv_bits": 4}, "--kv-bits 4 (mlx_lm.generate only): quality loss")}

    def target(self, model: ModelSpec, context: int, concurrency: int) -> dict[str, Any]:
        return {"context": context, "batch": concurrency}

    def served(self, plan: Plan, model: ModelSpec, context: int, concurrency: int) -> Served:
        # mlx.py reports max_batch, the most sequences of this context inside the working set,
        # whether or not the batch asked for fits.
        c = int(plan.engine_config.get("max_batch") or 0)
        if _failed(plan) or plan.binding.name == "fits_but_will_page":
            return Served(min(c, concurrency - 1), True, plan.binding.reason)
        lacks = "" if c >= concurrency else f"the working set holds {c} sequences of {context:,} tokens"
        return Served(c, True, lacks)

    def target_for_capacity(self, context: int, sequences: int | None) -> dict[str, Any]:
        return {"batch": sequences or 1}

    def shape(self, plan: Plan) -> tuple[int, int | None]:
        cfg = plan.engine_config
        return int(cfg.get("context") or plan.kv_tokens), int(cfg.get("batch") or 1)

    def near_memory(self, plan: Plan) -> bool:
        m = plan.memory
        used = sum(int(m.get(k, 0)) for k in ("weights", "kv_cache", "activations"))
        return (plan.binding.name in ("memory", INSUFFICIENT, "fits_but_will_page", "max_buffer_length")
                or used >= 0.9 * int(m.get("working_set") or plan.device.memory_bytes))


ADAPTERS: dict[str, Adapter] = {a.name: a for a in (MLC(), VLLM(), SGLang(), LlamaCpp(), Ollama(), MLX())}


def adapter(engine: str) -> Adapter:
    from ..engines import get_engine
    from ..errors import OptionsError
    mod = get_engine(engine)            # refuses unknown engines, naming the supported ones
    if mod.NAME not in ADAPTERS:
        raise OptionsError(f"kvcap advise does not know engine {mod.NAME!r} yet; it knows {', '.join(ADAPTERS)}")
    return ADAPTERS[mod.NAME]
