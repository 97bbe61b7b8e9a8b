"""Replay llama.cpp and Ollama cases (../shared/validation/llamacpp.jsonl) through kvcap's policies.

A case's model is its `hf_config` (kvcap.model.load_model) or its `gguf_metadata`, read with
the GGUF reader's mapping (model.gguf_config) when the family is supported, else with the small
mapping below, which reads only the keys the KV cache needs. The predicted fields carry the
names and the rounding of the log lines: sizes in MiB as llama.cpp prints them (llamacpp_kv.log_mib).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from ..engines import llamacpp, ollama
from ..engines.llamacpp_era import EARLIEST, LATEST, RULES, month
from ..engines.llamacpp_kv import log_mib
from ..engines.llamacpp_options import settings
from ..errors import KvcapError
from ..model.spec import FULL, LINEAR, MLA, NORM, ROUTER, SLIDING, Layer, ModelSpec, Tensor

ANY_MEMORY = 1 << 40   # a device "large enough" when the case does not say and nothing depends on it
_OLLAMA_NAMES = {"n_ctx": "num_ctx", "n_seq_max": "OLLAMA_NUM_PARALLEL", "type_k": "OLLAMA_KV_CACHE_TYPE",
                 "flash_attn": "OLLAMA_FLASH_ATTENTION", "n_gpu_layers": "num_gpu", "n_batch": "num_batch"}


def _skip(reason: str) -> Exception:
    from . import Skip   # the framework is imported lazily (it imports this module by name)
    return Skip(reason)


def replay(case: dict) -> dict:
    model, note = _model(case)
    eras, fork = _eras(case)
    results = []
    for era in eras:
        try:
            results.append(_predict(case, model, era, fork))
        except KvcapError as e:
            raise _skip(f"kvcap refuses this case: {e}") from None
    if any(r != results[0] for r in results):
        raise _skip(f"engine_era {case.get('engine_era')!r} spans llama.cpp builds whose rules give different "
                    f"answers for this case ({', '.join(eras)})")
    out: dict[str, Any] = {"end_to_end": results[0]}
    notes = [n for n in (note, fork and "ik_llama.cpp -mla: latent-only cache (mainline's V-less layout)") if n]
    if notes:
        out["note"] = "; ".join(notes)
    return out


# ---- the era ----------------------------------------------------------------------------------
def _eras(case: dict) -> tuple[list[str], bool]:
    """The llama.cpp eras a case's `engine_era` covers, and whether it is the ik_llama.cpp fork."""
    if case["engine"] == "ollama":
        return [""], False
    era = str(case.get("engine_era") or "")
    fork = era.startswith("ik-fork-")
    era = era.removeprefix("ik-fork-")
    if re.fullmatch(r"\d{4}-\d{2}", era):
        return [era], fork
    if re.fullmatch(r"\d{4}", era):
        first, last = max(f"{era}-01", EARLIEST), min(f"{era}-12", LATEST)
        if month(first) > month(last):
            raise _skip(f"engine_era {era} is outside the llama.cpp builds kvcap knows ({EARLIEST} .. {LATEST})")
        inside = sorted({r.since for r in RULES.values() if month(first) < month(r.since) <= month(last)})
        return [first, *inside, last], fork
    raise _skip(f"no llama.cpp era in the case (engine_era {case.get('engine_era')!r})")


# ---- the prediction ---------------------------------------------------------------------------
def _predict(case: dict, model: ModelSpec, era: str, fork: bool) -> dict:
    observed = case.get("observed") or {}
    options = dict(case.get("options") or {})
    device = _device(case, needs_memory="n_ctx" not in options)
    file_type = (case.get("weights") or {}).get("gguf_file_type")
    if case["engine"] == "ollama":
        version = str(case.get("engine_version") or "").lstrip("~")
        if not version:
            raise _skip("an Ollama case without engine_version: its defaults and runner follow the version")
        opts = {_OLLAMA_NAMES.get(k, k): v for k, v in options.items() if k != "type_v"}
        opts["version"] = version
        if file_type:
            opts["gguf_file_type"] = file_type
        p = ollama.plan(model, device, opts)
    else:
        opts = {**options, "era": era}
        if file_type:
            opts["gguf_file_type"] = file_type
        s = settings(opts, device, file_type_hint=llamacpp.file_type_hint(model))
        if fork:
            s = dataclasses.replace(s, mla_v_less=True)
        p = llamacpp.build(model, device, s, opts, llamacpp.NAME)
    return _fields(p, observed)


def _fields(p, observed: dict) -> dict:
    led = {l.name: l.value for l in p.ledger}
    caches = [k for k in ("kv", "kv_swa") if f"{k}_bytes" in led]
    split = any(k.startswith("swa_") for k in observed)
    base = ["kv"] if split else caches   # without swa_ fields the log's KV line is the whole cache
    out: dict[str, Any] = {"n_ctx": p.engine_config.get("n_ctx")}
    n_seq, n_stream = p.engine_config.get("n_seq_max"), led.get("kv_streams", 1)
    # "%2u/%u seqs" (n_seq_max / n_stream) since the per-sequence streams; "%2u seqs" before
    seqs = f"{n_seq}/{n_stream}" if isinstance(observed.get("kv_seqs"), str) else n_seq
    if "kv_cells" in led:
        out.update(kv_cells=led["kv_cells"], kv_layers=led["kv_layers"], kv_seqs=seqs)
    k = sum(led.get(f"{c}_k_bytes", 0) for c in base)
    v = sum(led.get(f"{c}_v_bytes", 0) for c in base)
    out.update(kv_size_mib=log_mib(k + v), k_mib=log_mib(k), v_mib=log_mib(v))
    if "kv_swa_bytes" in led:
        out.update(swa_kv_cells=led["kv_swa_cells"], swa_kv_layers=led["kv_swa_layers"],
                   swa_kv_size_mib=log_mib(led["kv_swa_bytes"]), swa_k_mib=log_mib(led["kv_swa_k_bytes"]),
                   swa_v_mib=log_mib(led["kv_swa_v_bytes"]), swa_kv_seqs=seqs)
    if "rs_bytes" in led:
        # llama_memory_recurrent: "size = … (%6u cells, %3d layers, %2u seqs), R (f32): …, S (f32): …"
        out.update(rs_cells=led["rs_cells"], rs_size_mib=log_mib(led["rs_bytes"]),
                   r_mib=log_mib(led["rs_k_bytes"]), s_mib=log_mib(led["rs_v_bytes"]))
    return {name: out.get(name) for name in observed}


def _device(case: dict, needs_memory: bool):
    from ..device import custom_device
    d = case.get("device") or {}
    total = d.get("total_memory_bytes")
    if total is None and needs_memory:
        raise _skip("the case gives no device memory, and without -c llama.cpp's context depends on it (--fit)")
    backend = d.get("backend") or "cuda"
    return custom_device(backend, int(total) if total else ANY_MEMORY, name=d.get("name") or "")


# ---- the model --------------------------------------------------------------------------------
def _model(case: dict) -> tuple[ModelSpec, str]:
    from ..model import load_model
    m = case.get("model") or {}
    if isinstance(m.get("hf_config"), dict):
        try:
            return load_model(m["hf_config"]), ""
        except KvcapError as e:
            raise _skip(f"kvcap cannot build the model: {e}") from None
    meta = m.get("gguf_metadata")
    if not isinstance(meta, dict):
        raise _skip("the case has neither hf_config nor gguf_metadata")
    try:
        from ..model import hf
        from ..model.gguf_config import config_from_gguf
        return hf.from_config(config_from_gguf(meta, None, case["id"]), m.get("name") or "", "gguf_metadata"), ""
    except KvcapError as e:
        reason = str(e)
    except ImportError as e:   # a family module the registry names but this tree does not have yet
        reason = f"family module missing: {e.name}"
    try:
        return from_metadata(meta, m.get("name") or case["id"]), f"model from the GGUF keys the KV cache needs ({reason})"
    except KvcapError as e:
        raise _skip(f"kvcap cannot build the model from gguf_metadata: {e}") from None


def from_metadata(meta: dict, name: str) -> ModelSpec:
    """A ModelSpec from `<arch>.*` GGUF keys, read the way llama.cpp's load_hparams reads them."""
    from ..errors import ModelError
    from ..model.config import MAX_DIM
    from ..model.families.common import MAX_LAYERS
    from ..model.gguf_config import ARCH_MODEL_TYPE, SWA_PATTERN
    arch = meta.get("general.architecture")
    if not isinstance(arch, str):
        raise ModelError("no general.architecture")

    def key(k: str, default: Any = ..., minimum: int = 0) -> Any:
        v = meta.get(f"{arch}.{k}", default)
        if v is ...:
            raise ModelError(f"no {arch}.{k}")
        if v is None and default is None:
            return None
        # A case's metadata is JSON: a list, string or huge number here is no count.
        if isinstance(v, bool) or not isinstance(v, int) or not minimum <= v <= MAX_DIM:
            raise ModelError(f"{arch}.{k} must be an integer in [{minimum}, {MAX_DIM}], got {v!r}")
        return v

    n_layer = key("block_count", minimum=1)
    if n_layer > MAX_LAYERS:
        raise ModelError(f"{arch}.block_count {n_layer} is beyond any real model (limit {MAX_LAYERS})")
    n_embd, n_head = key("embedding_length", minimum=1), key("attention.head_count", minimum=1)
    n_head_kv = key("attention.head_count_kv", n_head)
    head_k = key("attention.key_length", n_embd // n_head)
    head_v = key("attention.value_length", head_k)
    kv_lora, rope = key("attention.kv_lora_rank", 0), key("rope.dimension_count", 0)
    window, pattern = key("attention.sliding_window", None), SWA_PATTERN.get(arch)
    n_ff, n_expert = key("feed_forward_length", 4 * n_embd), key("expert_count", 0)
    layers, tensors = [], []
    for il in range(n_layer):
        if kv_lora:
            layers.append(Layer(MLA, kv_lora_rank=kv_lora, qk_rope_head_dim=rope, num_q_heads=n_head))
        elif window and pattern and il % pattern < pattern - 1:   # llama_hparams::set_swa_pattern
            layers.append(Layer(SLIDING, n_head_kv, head_k, head_v, n_head, window=window))
        else:
            layers.append(Layer(FULL, n_head_kv, head_k, head_v, n_head))
        p = f"blk.{il}."
        tensors += [Tensor(p + "attn_q", (n_head * head_k, n_embd)), Tensor(p + "attn_k", (n_head_kv * head_k, n_embd)),
                    Tensor(p + "attn_v", (n_head_kv * head_v, n_embd)), Tensor(p + "attn_output", (n_embd, n_head * head_v)),
                    Tensor(p + "attn_norm", (n_embd,), NORM), Tensor(p + "ffn_norm", (n_embd,), NORM)]
        if n_expert:
            # llama-model.cpp load_tensors (QWEN2MOE/QWEN3MOE): n_ff_exp defaults to n_ff / n_expert_used
            ff = key("expert_feed_forward_length", 0) or n_ff // key("expert_used_count", minimum=1)
            tensors += [Tensor(p + "ffn_gate_inp", (n_expert, n_embd), ROUTER)]
            tensors += [Tensor(p + f"ffn_{w}_exps", (n_expert, ff, n_embd), LINEAR) for w in ("gate", "up", "down")]
        else:
            tensors += [Tensor(p + f"ffn_{w}", (n_ff, n_embd)) for w in ("gate", "up", "down")]
    tensors.append(Tensor("output_norm", (n_embd,), NORM))
    return ModelSpec(
        name=name, model_type=ARCH_MODEL_TYPE.get(arch, arch), source="gguf_metadata (validate's mapping)",
        hidden_size=n_embd, num_hidden_layers=n_layer, num_attention_heads=n_head, num_key_value_heads=n_head_kv,
        head_dim=head_k, vocab_size=0, intermediate_size=n_ff, context_window=key("context_length", None),
        dtype="float16", tie_word_embeddings=False, layers=tuple(layers), tensors=tuple(tensors),
        num_experts=n_expert, experts_per_token=key("expert_used_count", 0),
        notes=("vocabulary size not in the metadata: token embeddings and output matrix not counted",),
    )
