"""The interface advise needs of each engine (engines.py implements it), and shared helpers.

A Choice is one weight quantization or KV dtype as options of one engine; Served says how many
sequences of the target context one replica holds, read from the engine's Plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from ..errors import ModelError
from ..model.spec import ModelSpec
from ..plan import INSUFFICIENT, Plan

LEVELS = (16, 8, 4)


@dataclass(frozen=True)
class Choice:
    """One weight quantization or KV dtype, as options of one engine."""

    label: str                       # what the user reads: "bf16", "fp8", "Q4_K_M", "q8_0 KV"
    bits: float                      # for ranking "least quantization" and for the lower bound
    options: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""                   # cost: a quality note, a checkpoint it needs

    @property
    def quantized(self) -> bool:
        return self.bits < 16


@dataclass(frozen=True)
class Served:
    """How many sequences of the target context one replica holds."""

    concurrency: int                 # 0: not even one
    exact: bool = True               # False: only "the K asked for" is known (llama.cpp, Ollama)
    lacks: str = ""                  # why it holds fewer than asked
    over_cap: bool = False           # MLC on Metal past the 32,768-token cap (set explicitly)


def _bits(value: Any, where: str) -> float:
    # The config's own number: a string or list here is a corrupt config (float() would raise).
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 64:
        raise ModelError(f"config field '{where}' must be a number of bits, got {value!r}")
    return float(value)


def _ckpt_bits(model: ModelSpec) -> float | None:
    """Bits per weight of an already-quantized checkpoint (None: unquantized)."""
    q = dict(model.quantization or {})
    cfg = model.config or {}
    qc = cfg.get("quantization_config") if isinstance(cfg, Mapping) else None
    if isinstance(qc, Mapping):
        q = {**qc, **q}
    mlx_q = cfg.get("quantization") if isinstance(cfg, Mapping) else None
    if isinstance(mlx_q, Mapping) and mlx_q.get("bits"):
        return _bits(mlx_q["bits"], "quantization.bits")
    if not q:
        return None
    if q.get("bits") or q.get("w_bit"):
        return _bits(q.get("bits") or q.get("w_bit"), "quantization_config.bits")
    method = str(q.get("quant_method") or q.get("method") or q.get("format") or "").lower()
    if "fp8" in method or "int8" in method:
        return 8.0
    if method:
        return 4.0
    return None


class Adapter:
    """The defaults; each engine below overrides what differs."""

    name = ""
    backends: tuple[str, ...] = ()
    reads_device_name = False        # defaults that depend on the GPU's name (vLLM, SGLang)
    multi_gpu = False                # splits one model over several GPUs of a host
    multi_node = ""                  # how it spans nodes, "" where it does not
    kv_monotone = True               # a smaller KV dtype never holds fewer tokens
    data_parallel = "run one server per replica behind a load balancer"

    # ---- the search space ---------------------------------------------------------------
    def weights(self, model: ModelSpec) -> dict[int, Choice]:
        return {16: Choice(model.dtype, 16)}

    def kv(self, model: ModelSpec) -> dict[int, Choice]:
        return {16: Choice("auto", 16)}

    def native_weight(self, name: str, model: ModelSpec) -> Choice | None:
        return None

    def native_kv(self, name: str) -> Choice | None:
        return None

    def layout(self, tp: int, pp: int) -> dict[str, Any] | None:
        """Options for tp × pp devices per replica (None: this engine cannot)."""
        return {} if tp * pp == 1 else None

    # ---- a target and what a plan says about it -------------------------------------------
    def target(self, model: ModelSpec, context: int, concurrency: int) -> dict[str, Any]:
        raise NotImplementedError

    def served(self, plan: Plan, model: ModelSpec, context: int, concurrency: int) -> Served:
        raise NotImplementedError

    def target_for_capacity(self, context: int, sequences: int | None) -> dict[str, Any]:
        """Options that ask this engine for as much KV as it gives at `sequences` × `context`."""
        raise NotImplementedError

    # ---- reading a plan, for what-ifs ---------------------------------------------------------
    def shape(self, plan: Plan) -> tuple[int, int | None]:
        """(tokens per sequence, sequences) the plan is for; None sequences: a shared pool."""
        raise NotImplementedError

    def default_weight_bits(self, model: ModelSpec) -> float:
        bits = _ckpt_bits(model)
        return bits if bits is not None else 16.0

    def near_memory(self, plan: Plan) -> bool:
        """Memory binds or nearly binds (within ~10 %)."""
        return plan.binding.name in ("memory", INSUFFICIENT)

    def tp_key(self) -> str | None:
        """The option that sets tensor parallelism (None: the device count alone splits layers)."""
        return None

    def pin(self, served: Served, context: int, concurrency: int) -> dict[str, Any]:
        """Options that make the engine itself use an answer it would not infer (MLC past its cap)."""
        return {}


def _failed(plan: Plan) -> Served | None:
    if plan.binding.name == INSUFFICIENT or not plan.fits:
        return Served(0, True, plan.binding.reason)
    return None


def _gguf_weights(model: ModelSpec) -> dict[int, Choice]:
    q = model.quantization or {}
    read = q.get("gguf_file_type") or (q.get("file_type") if q.get("format") == "gguf" else None)
    if read:  # a GGUF file fixes its own type
        return {int(min(16, _gguf_bits(str(read)))): Choice(str(read), _gguf_bits(str(read)), {})}
    return {16: Choice("F16", 16, {"gguf_file_type": "F16"}),
            8: Choice("Q8_0", 8.5, {"gguf_file_type": "Q8_0"}, "8-bit GGUF: near-lossless"),
            4: Choice("Q4_K_M", 4.89, {"gguf_file_type": "Q4_K_M"}, "4-bit GGUF: some quality loss")}


def _gguf_bits(name: str) -> float:
    from ..engines.llamacpp_types import FILE_TYPES
    ft = FILE_TYPES.get(name.upper())
    return float(ft.bits) if ft is not None else 16.0


def _line(plan: Plan, name: str, default: Any) -> Any:
    try:
        return plan.line(name)
    except KeyError:
        return default


def _all_layers(plan: Plan, model: ModelSpec, context: int, concurrency: int, ctx_key: str) -> Served:
    """llama.cpp and Ollama size exactly the cells asked for: a plan says yes or no for these
    `concurrency` sequences, not how many fit (exact=False either way)."""
    bad = _failed(plan)
    if bad:
        return Served(0, False, bad.lacks)
    from ..engines.llamacpp_kv import n_layer
    layers = n_layer(model)
    ngl = plan.engine_config.get("n_gpu_layers")
    if ngl is not None and int(ngl) <= layers:
        return Served(0, False, f"only {ngl} of {layers + 1} layers fit on the device; the rest would run on the CPU")
    per_seq = int(plan.engine_config.get(ctx_key) or context)
    if per_seq < context:
        return Served(0, False, f"{per_seq:,} tokens per sequence, {context:,} asked")
    return Served(concurrency, False)


