"""kvcap plan MODEL --device D --engine E: the engine's KV capacity, its ledger and what-ifs."""

from __future__ import annotations

import argparse

from . import common

HELP = "plan the KV cache of a model on a device under an engine"

# Flags for the engines' most used options: flag -> option name (the engine's own word).
# Anything else goes through --set NAME=VALUE; each engine refuses names it does not have.
OPTION_FLAGS: dict[str, tuple[str, type, str]] = {
    "--mode": ("mode", str, "MLC: local | interactive | server (default local)"),
    "--quant": ("quantization", str, "weight quantization, e.g. q4f16_1 (MLC), or the checkpoint's"),
    "--gpu-memory-utilization": ("gpu_memory_utilization", float, "fraction of device memory the engine budgets"),
    "--max-num-sequence": ("max_num_sequence", int, "MLC: max batch size"),
    "--max-total-sequence-length": ("max_total_sequence_length", int, "MLC: KV capacity in tokens"),
    "--prefill-chunk-size": ("prefill_chunk_size", int, "MLC: prefill chunk"),
    "--context-window-size": ("context_window_size", int, "MLC: max single sequence length"),
    "--sliding-window-size": ("sliding_window_size", int, "MLC: sliding window (compile time)"),
    "--tensor-parallel-shards": ("tensor_parallel_shards", int, "MLC: tensor-parallel shards"),
    "--pipeline-parallel-stages": ("pipeline_parallel_stages", int, "MLC: pipeline stages"),
    "--temp-buffer": ("temp_buffer_bytes", str, "MLC: compiled temp buffer (before MLC's x2), e.g. 300MiB"),
    "--cap": ("cap", int, "replace the engine's device KV cap (tokens)"),
    "--max-model-len": ("max_model_len", int, "vLLM: max model length"),
    "--kv-cache-dtype": ("kv_cache_dtype", str, "vLLM/SGLang: KV cache dtype"),
    "--tensor-parallel-size": ("tensor_parallel_size", int, "vLLM: tensor-parallel size"),
    "--ctx-size": ("n_ctx", int, "llama.cpp: -c"),
    "--parallel": ("n_seq_max", int, "llama.cpp: -np"),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    common.add_model(p)
    common.add_device(p)
    p.add_argument("--engine", "-e", default="mlc", help="mlc (default), vllm, llamacpp, ollama, sglang, mlx")
    g = p.add_argument_group("engine options")
    for flag, (dest, typ, text) in OPTION_FLAGS.items():
        g.add_argument(flag, dest=f"opt_{dest}", metavar=dest.upper(), type=typ, help=text)
    g.add_argument("--no-cap", dest="opt_no_cap", action="store_true", default=None,
                   help="drop the engine's device KV cap (a what-if: the engine itself keeps it)")
    common.add_set(p)
    common.add_json(p)
    # kvcap advise (advise/report.py plan_extras): ranked what-ifs, and the launch command.
    p.add_argument("--launch", action="store_true", help="also print the command that starts the engine as planned")
    p.add_argument("--model-ref", help="with --launch: the path or id the engine should load")
    p.add_argument("--no-advise", action="store_true", help="skip the ranked what-ifs")
    p.add_argument("--calibration", metavar="FILE",
                   help="a `kvcap probe` calibration: adds the capacity under the measured cap as a what-if "
                        "(picked up automatically for --device local)")


def options_from_args(args: argparse.Namespace) -> dict:
    opts = {k[4:]: v for k, v in vars(args).items() if k.startswith("opt_") and v is not None}
    opts.update(common.set_options(args.set))
    return opts


def run(args: argparse.Namespace) -> int:
    from .. import plan as make_plan
    from ..report import text

    model = common.model_from_args(args)
    device = common.device_from_args(args)
    p = make_plan(model, device, engine=args.engine, **options_from_args(args))
    if args.calibration or device.key == "local":   # a probe's calibration file applies
        from ..calibrate import apply
        p = apply(p, args.calibration)
    from ..advise.report import plan_extras
    extra_text, extra_json = plan_extras(p, not args.no_advise, args.launch, args.model_ref)
    if args.json:
        common.emit_json({**p.to_json(), **extra_json})
    else:
        print(text.render(p) + ("\n\n" + extra_text if extra_text else ""))
    return 0 if p.fits else 1
