"""kvcap inspect MODEL: the ModelSpec as a table — layers by kind, KV per token, state, params."""

from __future__ import annotations

import argparse
from typing import Any

from ..units import fmt_bytes, parse_count
from . import common

HELP = "show what a model's KV cache holds: layers by kind, KV bytes per token, state, parameters"


def add_arguments(p: argparse.ArgumentParser) -> None:
    common.add_model(p)
    p.add_argument("--context", help="sequence length for the per-sequence KV (default: the model's context window)")
    common.add_json(p)


def run(args: argparse.Namespace) -> int:
    from .inspect_summary import summary

    context = parse_count(args.context, "--context") if args.context else None
    doc = summary(common.model_from_args(args), context)
    if args.json:
        common.emit_json(doc)
    else:
        print(render(doc))
    return 0


def _b(n: int | None) -> str:
    return "n/a" if n is None else f"{n:,} B" + (f" ({fmt_bytes(n)})" if n >= 1024 else "")


def _group(g: dict[str, Any]) -> str:
    kind = g["kind"] + (" (MTP)" if g.get("mtp") else "")
    bits = []
    if "num_kv_heads" in g:
        hd = g["head_dim_k"] if g["head_dim_k"] == g["head_dim_v"] else f"{g['head_dim_k']}/{g['head_dim_v']}"
        bits.append(f"{g['num_kv_heads']} KV heads x {hd}")
    if "kv_lora_rank" in g:
        bits.append(f"latent {g['kv_lora_rank']} + rope {g['qk_rope_head_dim']}")
    if "index_head_dim" in g:
        bits.append(f"indexer key {g['index_head_dim']}")
    if "window" in g:
        bits.append(f"window {g['window']:,}" + (f" + {g['sinks']} sinks" if g.get("sinks") else ""))
    if "kv_source" in g:
        bits.append(f"reuses layer {g['kv_source']}'s cache")
    if "state_elems" in g:
        bits.append(f"state {g['state_elems']:,} values")
    per = f"{g['kv_elems_per_token']:,} values/token" if g["kv_elems_per_token"] else "no per-token cache"
    return f"  {g['count']:>4} x {kind:<10} from layer {g['first']:<4} {per:<22} {', '.join(bits)}"


def render(doc: dict[str, Any]) -> str:
    ctx = doc["context_window"]
    out = [f"{doc['name']}  ({doc['model_type']}, family {doc['family']}, {doc['dtype']})",
           f"  source: {doc['source']}",
           f"  hidden {doc['hidden_size']:,}, {doc['num_hidden_layers']} layers, {doc['num_attention_heads']} heads "
           f"/ {doc['num_key_value_heads']} KV heads x {doc['head_dim']}, vocab {doc['vocab_size']:,}, "
           f"context window {'none' if ctx is None else f'{ctx:,}'}", "", "Layers"]
    out += [_group(g) for g in doc["layer_groups"]]
    kv = doc["kv"]
    out += ["", f"KV cache ({kv['layers_with_kv']} layers own one, {kv['elems_per_token']:,} values per token)"]
    if kv["layers_with_kv"]:
        out.append(f"  {'dtype':<10} {'per token':>28} {'one sequence of ' + format(kv['context'], ',') + ' tokens':>38}")
        for dt, b in kv["bytes_per_token"].items():
            out.append(f"  {dt:<10} {_b(b):>28} {_b(kv['sequence_bytes'][dt]):>38}")
        if kv["sequence_bytes"] != kv["sequence_bytes_all_full"]:
            full = kv["sequence_bytes_all_full"]["fp16/bf16"]
            out.append(f"  (windows respected; every layer at full length would be {_b(full)} at fp16)")
    if "mtp_elems_per_token" in kv:
        out.append(f"  MTP blocks: {kv['mtp_elems_per_token']:,} more values per token where an engine caches them")
    if "indexer_elems_per_token" in kv:
        out.append(f"  sparse-attention indexer: {kv['indexer_elems_per_token']:,} more values per token")
    st = doc["state"]
    if st:
        declared = " + ".join(f"{_b(b)} {dt}" for dt, b in st["bytes_per_sequence"].items())
        out += ["", f"Recurrent state ({st['layers']} layers, {st['elems_per_sequence']:,} values per sequence, "
                    "whatever its length)",
                f"  per sequence: {declared} (declared dtypes, else the model's); "
                f"{_b(st['bytes_per_sequence_f32'])} all float32 (llama.cpp)",
                f"  per layer: {', '.join(st['tensors'])}"]
    pr = doc["params"]
    out += ["", f"Parameters: {pr['count']:,}  (" + ", ".join(f"{k} {v:,}" for k, v in pr["by_part"].items()) + ")",
            "  " + ", ".join(f"{_b(b)} {dt}" for dt, b in pr["bytes_by_dtype"].items())]
    if "quantization" in pr:
        q = pr["quantization"]
        out.append(f"  checkpoint quantization: {q.get('quant_method') or q.get('method') or q}")
    if "stored_bytes_by_dtype" in pr:
        out.append("  stored: " + ", ".join(f"{_b(b)} {dt}" for dt, b in pr["stored_bytes_by_dtype"].items()))
    if "moe" in doc:
        m = doc["moe"]
        out.append(f"  MoE: {m['num_experts']} experts, {m['experts_per_token']} active per token, all resident")
    if doc["notes"]:
        out += ["", "Notes"] + [f"  - {n}" for n in doc["notes"]]
    return "\n".join(out)
