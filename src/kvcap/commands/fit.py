"""kvcap fit MODEL --context N [--concurrency K] …: every configuration that serves the target, ranked."""

from __future__ import annotations

import argparse

from . import common

HELP = "find the configurations (engine, device, quantization, GPUs) that serve K sequences of N tokens"


def add_arguments(p: argparse.ArgumentParser) -> None:
    common.add_model(p)
    p.add_argument("--context", "-c", required=True, help="tokens per sequence, e.g. 32768 or 32k")
    p.add_argument("--concurrency", "-k", default="1", help="sequences served at once (default 1)")
    p.add_argument("--engine", "-e", nargs="+", action="extend", metavar="E",
                   help="engines to search (default: all): mlc vllm llamacpp ollama sglang mlx")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--devices", "-d", nargs="+", action="extend", metavar="D", help="catalog devices to search")
    g.add_argument("--catalog", action="store_true", help="search the whole device catalog (the default)")
    p.add_argument("--quant", nargs="+", action="extend", metavar="Q",
                   help="weight quantizations: 16, 8, 4 (each engine's own scheme) or an engine's name (q4f16_1, Q5_K_M, fp8)")
    p.add_argument("--kv-dtype", nargs="+", action="extend", metavar="D",
                   help="KV cache dtypes: 16, 8, 4 or an engine's name (fp8_e5m2, q4_1)")
    p.add_argument("--max-gpus", type=int, default=8, help="GPUs per node (default 8)")
    p.add_argument("--nodes", type=int, default=1, help="nodes (default 1); vLLM and SGLang span them")
    p.add_argument("--top", type=int, default=10, help="answers settled exactly, best first (default 10)")
    p.add_argument("--all", dest="complete", action="store_true",
                   help="every configuration that serves, larger devices included (slower)")
    p.add_argument("--allow-long-context", action="store_true",
                   help="allow --context above the model's window (you override it, e.g. RoPE scaling)")
    p.add_argument("--launch", nargs="?", const=1, type=int, metavar="N",
                   help="also print the commands that start the first N answers (default 1)")
    p.add_argument("--model-ref", help="path or id the engine should load, in the launch commands")
    common.add_json(p)


def run(args: argparse.Namespace) -> int:
    from ..advise.fit import fit
    from ..advise.report import fit_json, fit_text, launches_for
    from ..units import parse_count

    context = parse_count(args.context, "--context")
    concurrency = parse_count(args.concurrency, "--concurrency")
    model = common.model_from_args(args)
    devices = None
    if args.devices:
        from ..device import get_device
        devices = [get_device(d) for d in args.devices]
    r = fit(model, context, concurrency, engines=args.engine, devices=devices, quant=args.quant,
            kv_dtype=args.kv_dtype, max_gpus=args.max_gpus, nodes=args.nodes,
            allow_long_context=args.allow_long_context, top=args.top, complete=args.complete)
    launches = launches_for(r, args.launch, args.model_ref) if args.launch else None
    if args.json:
        common.emit_json(fit_json(r, launches))
    else:
        print(fit_text(r, launches))
    return 0 if r.feasible else 1
