"""kvcap compare MODEL --device D: one row per engine — KV capacity, concurrency, binding limit, knob.

Each engine plans with its own policy (`kvcap.engines.get_engine(name).plan`). The context and
concurrency asked for are translated into each engine's own option names here; an engine whose
policy is missing, or which refuses the model, device or options, shows its one-line reason in its
row instead of stopping the table.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any, Callable

from . import common
from ..errors import KvcapError, OptionsError

HELP = "compare the KV capacity of a model on a device across engines"

ALL_ENGINES = ("mlc", "vllm", "sglang", "llamacpp", "ollama", "mlx")
# Which engines run on which backend (vLLM / SGLang: NVIDIA and AMD GPUs; MLX: Apple GPUs).
ENGINE_BACKENDS = {"vllm": ("cuda", "rocm"), "sglang": ("cuda", "rocm"), "mlx": ("metal",)}

# Per engine: option names to try for the context length (per sequence) and for the number of
# sequences, in the engine's own words; the first one the engine's OPTIONS lists is used.
CONTEXT_NAMES = {
    "mlc": ("max_single_sequence_length", "context_window_size"),
    "vllm": ("max_model_len",),
    "sglang": ("context_length",),
    "llamacpp": ("n_ctx",),        # llama.cpp's n_ctx is the total over all sequences
    "ollama": ("num_ctx", "OLLAMA_CONTEXT_LENGTH"),  # Ollama's num_ctx is per sequence
    "mlx": ("context",),
}
CONCURRENCY_NAMES = {
    "mlc": ("max_num_sequence",),
    "vllm": ("max_num_seqs",),
    "sglang": ("max_running_requests",),
    "llamacpp": ("n_seq_max",),
    "ollama": ("OLLAMA_NUM_PARALLEL", "num_parallel", "n_seq_max"),
    "mlx": ("batch",),
}
FIXED = {"mlc": {"mode": "server"}}          # MLC's server mode sizes a pool for many sequences
TOTAL_CONTEXT = {"llamacpp"}                  # context option counts every sequence's tokens


@dataclass
class Row:
    engine: str
    status: str                        # ok | does_not_fit | refused | unavailable | error
    kv_tokens: int | None = None
    max_concurrency: int | None = None
    binding: str | None = None
    binding_reason: str = ""
    knob: str = ""
    engine_config: dict = field(default_factory=dict)
    reason: str = ""

    def to_json(self) -> dict:
        return {"engine": self.engine, "status": self.status, "kv_tokens": self.kv_tokens,
                "max_concurrency": self.max_concurrency, "binding": self.binding,
                "binding_reason": self.binding_reason, "knob": self.knob,
                "engine_config": self.engine_config, "reason": self.reason}


def default_engines(backend: str) -> list[str]:
    return [e for e in ALL_ENGINES if backend in ENGINE_BACKENDS.get(e, (backend,))]


def engine_options(name: str, known: dict, context: int | None, concurrency: int | None) -> dict[str, Any]:
    """The engine's own options for `context` tokens per sequence and `concurrency` sequences."""
    opts: dict[str, Any] = {k: v for k, v in FIXED.get(name, {}).items() if k in known}
    seqs = concurrency or 1
    if context is not None:
        key = next((k for k in CONTEXT_NAMES.get(name, ()) if k in known), None)
        if key is None:
            raise OptionsError(f"{name} has no context-length option kvcap knows how to set")
        opts[key] = context * seqs if name in TOTAL_CONTEXT else context
    if concurrency is not None:
        key = next((k for k in CONCURRENCY_NAMES.get(name, ()) if k in known), None)
        if key is None:
            raise OptionsError(f"{name} has no concurrency option kvcap knows how to set")
        opts[key] = concurrency
    return opts


def _concurrency(name: str, plan, context: int | None, concurrency: int | None) -> int | None:
    cfg = plan.engine_config
    for key in ("max_concurrency", "max_batch"):
        if isinstance(cfg.get(key), int):
            return cfg[key]
    if context:
        if name in ("llamacpp", "ollama"):
            return (concurrency or 1) if plan.fits else 0  # a fixed allocation: it fits or it does not
        return plan.kv_tokens // context
    return None


def _knob(plan) -> str:
    better = [w for w in plan.what_if if w.kv_tokens is not None and w.kv_tokens > plan.kv_tokens]
    if not better:
        return ""
    best = max(better, key=lambda w: w.kv_tokens)
    return f"{best.knob} → {best.kv_tokens:,} tokens"


def compare_rows(model, device, engines: list[str], context: int | None, concurrency: int | None,
                 get_engine: Callable | None = None) -> list[Row]:
    from importlib.util import find_spec

    from ..engines import ALIASES, ENGINES
    from ..engines import get_engine as _get

    get = get_engine or _get
    rows = []
    for raw in engines:
        name = ALIASES.get(raw.lower(), raw.lower())
        if name not in ENGINES:
            raise OptionsError(f"unknown engine {raw!r}; engines: {', '.join(ALL_ENGINES)}")
        if get_engine is None and find_spec(f"kvcap.engines.{ENGINES[name]}") is None:
            rows.append(Row(name, "unavailable", reason=f"the {name} policy is not in this build of kvcap"))
            continue
        try:
            mod = get(name)
            opts = engine_options(name, dict(getattr(mod, "OPTIONS", {})), context, concurrency)
            plan = mod.plan(model, device, opts)
        except KvcapError as e:
            rows.append(Row(name, "refused", reason=str(e)))
            continue
        except Exception as e:  # a bug in one engine's policy must not take the table down
            rows.append(Row(name, "error", reason=f"internal error in the {name} policy: {type(e).__name__}: {e}"))
            continue
        rows.append(Row(name, "ok" if plan.fits else "does_not_fit", plan.kv_tokens,
                        _concurrency(name, plan, context, concurrency), plan.binding.name, plan.binding.reason,
                        _knob(plan), {k: v for k, v in plan.engine_config.items()}))
    return rows


def add_arguments(p: argparse.ArgumentParser) -> None:
    common.add_model(p)
    common.add_device(p)
    p.add_argument("--engines", help=f"comma-separated engines (default: those that run on the device's backend; "
                                     f"known: {', '.join(ALL_ENGINES)})")
    p.add_argument("--context", help="tokens per sequence, e.g. 8192 or 32k")
    p.add_argument("--concurrency", type=int, help="sequences served together")
    common.add_json(p)


def run(args: argparse.Namespace) -> int:
    from ..units import parse_count

    model = common.model_from_args(args)
    device = common.device_from_args(args)
    context = parse_count(args.context, "--context") if args.context is not None else None
    if args.concurrency is not None and args.concurrency < 1:
        raise OptionsError(f"--concurrency must be at least 1, got {args.concurrency}")
    engines = [e.strip() for e in args.engines.split(",") if e.strip()] if args.engines else default_engines(device.backend)
    if not engines:
        raise OptionsError("--engines is empty")
    rows = compare_rows(model, device, engines, context, args.concurrency)
    if args.json:
        common.emit_json({"model": model.name, "device": {"name": device.name, "backend": device.backend,
                                                           "memory_bytes": device.memory_bytes, "count": device.count},
                          "context": context, "concurrency": args.concurrency, "rows": [r.to_json() for r in rows]})
    else:
        print(render(model.name, device, context, args.concurrency, rows))
    return 0


def render(model_name: str, device, context: int | None, concurrency: int | None, rows: list[Row]) -> str:
    from ..units import fmt_bytes

    head = f"{model_name} on {device.name} ({device.backend}, {fmt_bytes(device.memory_bytes)})"
    if context:
        head += f", context {context:,}"
    if concurrency:
        head += f" × {concurrency} sequences"
    table = [("engine", "KV tokens", "max conc.", "binding", "knob that relaxes it")]
    notes = []
    for r in rows:
        if r.status in ("ok", "does_not_fit"):
            table.append((r.engine, f"{r.kv_tokens:,}" if r.kv_tokens is not None else "—",
                          "—" if r.max_concurrency is None else f"{r.max_concurrency:,}", r.binding or "", r.knob or "—"))
        else:
            table.append((r.engine, "—", "—", r.status, "—"))
            reason = r.reason[len(r.engine) + 2:] if r.reason.startswith(f"{r.engine}: ") else r.reason
            notes.append(f"  {r.engine}: {reason}")
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    lines = [head, ""]
    for i, row in enumerate(table):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    if notes:
        lines += ["", "Not planned:"] + notes
    return "\n".join(lines)
