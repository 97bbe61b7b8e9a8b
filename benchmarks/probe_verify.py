"""kvcap verify for Llama-3.1-8B under vLLM, MLC and llama.cpp on the local GPU, with --find-limit.

    PYTHONPATH=src python3 benchmarks/probe_verify.py [--json FILE] [--model llama-3.1-8b]

Each case is what `kvcap verify MODEL --engine E [options] --find-limit` does, run in one
process one after the other; the text report of each is printed, all JSON goes to --json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

CASES = [
    ("vllm", {}),
    ("vllm", {"gpu_memory_utilization": 0.98}),
    ("mlc", {"mode": "server"}),
    ("mlc", {}),
    ("llamacpp", {}),
]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    ap.add_argument("--model", default="llama-3.1-8b")
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--case", action="append", default=[],
                    help="ENGINE[:NAME=VALUE,...] instead of the default cases (repeatable)")
    args = ap.parse_args()
    from kvcap.commands.common import parse_value
    cases = [(c.partition(":")[0], {k: parse_value(v) for k, _, v in
                                    (kv.partition("=") for kv in c.partition(":")[2].split(",") if kv)})
             for c in args.case] or CASES
    import kvcap
    from kvcap.commands.verify import local_device_spec
    from kvcap.probe import torchdev
    from kvcap.probe.verify import verify
    from kvcap.probe.verify_report import render

    device = torchdev.open_device(args.device)
    model = kvcap.load_model(args.model)
    docs, failed = [], 0
    for engine, options in cases:
        flags = " ".join(f"--set {k}={v}" for k, v in options.items())
        command = f"kvcap verify {args.model} --engine {engine} --device {args.device} {flags} --find-limit".replace("  ", " ")
        print(f"\n$ {command}", flush=True)
        start = time.perf_counter()
        try:
            plan = kvcap.plan(model, local_device_spec(device), engine=engine, **options)
            result = verify(plan, device, find_limit=True)
        except kvcap.KvcapError as e:
            print(f"kvcap: error: {e}")
            failed += 1
            docs.append({"command": command, "error": str(e)})
            continue
        print(render(result))
        print(f"({time.perf_counter() - start:.1f} s)", flush=True)
        docs.append({"command": command, **result.to_json()})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(docs, f, indent=1, default=str)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
