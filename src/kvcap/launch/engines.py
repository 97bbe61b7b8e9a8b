"""Per engine: the command line that starts it with a plan's configuration.

Every value comes from the Plan (engine_config: what the engine will use; options: what the
user set), so the command reproduces the plan. Flags are the engines' own spellings (checked
against engines/data/flags by launch/__init__.py before anything is printed). Options kvcap
models but an engine has no flag for are said in a note, never dropped silently.
"""

from __future__ import annotations

from typing import Any, Mapping

from ..plan import Plan
from .types import Command, Parts

HEAD = "HEAD_NODE_IP"       # placeholder the user replaces: the first node's address


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def mlc(plan: Plan, model: str, nodes: int, replicas: int, flags: Mapping[str, Any]) -> Parts:
    cfg, o = plan.engine_config, plan.options
    over: list[tuple[str, Any]] = []
    if cfg.get("max_history_size") is not None:          # RNN models
        over.append(("max_history_size", cfg["max_history_size"]))
    else:
        over += [("max_num_sequence", cfg.get("max_num_sequence")),
                 ("max_total_seq_length", cfg.get("max_total_sequence_length")),
                 ("prefill_chunk_size", cfg.get("prefill_chunk_size"))]
    if cfg.get("gpu_memory_utilization") is not None:
        over.append(("gpu_memory_utilization", cfg["gpu_memory_utilization"]))
    if "context_window_size" in o or "max_single_sequence_length" in o:
        over.append(("context_window_size", cfg.get("max_single_sequence_length")))
    for k in ("sliding_window_size", "attention_sink_size", "tensor_parallel_shards", "pipeline_parallel_stages"):
        if o.get(k) not in (None, 1) or (k in o and k.startswith("sliding")):
            over.append((k, o[k]))
    text = ";".join(f"{k}={_fmt(v)}" for k, v in over if v is not None)
    argv = ["mlc_llm", "serve", model, "--mode", plan.mode or "local", "--device", plan.device.backend,
            "--overrides", text]
    notes = [f"MODEL: the folder (or HF:// URL) of the model compiled with {o.get('quantization', 'q4f16_1')} "
             "(mlc_llm convert_weight + gen_config + compile)",
             "max_total_seq_length is set explicitly, so MLC uses it as given: it neither infers nor caps it"]
    if o.get("no_cap") or o.get("cap") is not None:
        notes.append("the plan lifts or replaces MLC's device cap (a kvcap what-if); the explicit "
                     "max_total_seq_length above is how MLC gets that size")
    if nodes > 1:
        notes.append("mlc_llm serve runs on one host; tensor_parallel_shards splits over its GPUs only")
    if replicas > 1:
        notes.append(f"{replicas} replicas: run this on {replicas} hosts (or GPU sets) behind a load balancer")
    return Parts((Command(tuple(argv), program="mlc_llm serve"),), notes=tuple(notes))


VLLM_ENV = {"flashinfer_sampler": "VLLM_USE_FLASHINFER_SAMPLER", "estimate_cudagraphs":
            "VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS", "pp_layer_partition": "VLLM_PP_LAYER_PARTITION"}
VLLM_FLAGS = {"quantization": "--quantization", "max_num_seqs": "--max-num-seqs", "max_num_batched_tokens":
              "--max-num-batched-tokens", "kv_cache_memory_bytes": "--kv-cache-memory-bytes", "block_size":
              "--block-size", "dtype": "--dtype", "cpu_offload_gb": "--cpu-offload-gb", "swap_space": "--swap-space",
              "num_gpu_blocks_override": "--num-gpu-blocks-override", "attention_backend": "--attention-backend"}
VLLM_BOOLS = {"enforce_eager": "--enforce-eager", "enable_chunked_prefill": "--enable-chunked-prefill",
              "disable_hybrid_kv_cache_manager": "--disable-hybrid-kv-cache-manager"}


def vllm(plan: Plan, model: str, nodes: int, replicas: int, flags: Mapping[str, Any]) -> Parts:
    cfg, o = plan.engine_config, plan.options
    argv = ["vllm", "serve", model, "--max-model-len", _fmt(cfg["max_model_len"]),
            "--gpu-memory-utilization", _fmt(cfg["gpu_memory_utilization"])]
    if cfg.get("kv_cache_dtype", "auto") != "auto":
        argv += ["--kv-cache-dtype", cfg["kv_cache_dtype"]]
    if int(cfg.get("tensor_parallel_size", 1)) > 1:
        argv += ["--tensor-parallel-size", _fmt(cfg["tensor_parallel_size"])]
    if int(cfg.get("pipeline_parallel_size", 1)) > 1:
        argv += ["--pipeline-parallel-size", _fmt(cfg["pipeline_parallel_size"])]
    for k, flag in VLLM_FLAGS.items():
        if o.get(k) is not None:
            argv += [flag, _fmt(o[k])]
    for k, flag in VLLM_BOOLS.items():
        if o.get(k) is not None:
            argv.append(flag if o[k] else "--no-" + flag[2:])
    env = {VLLM_ENV[k]: ("1" if o[k] is True else "0" if o[k] is False else _fmt(o[k]))
           for k in VLLM_ENV if o.get(k) is not None}
    notes = []
    if o.get("usage_context") == "llm":
        notes.append("planned for the LLM class (usage_context=llm); `vllm serve` uses the serve defaults")
    if replicas > 1 and nodes == 1:
        argv += ["--data-parallel-size", str(replicas)]
    elif replicas > 1:
        notes.append(f"{replicas} replicas over {nodes} nodes: one `vllm serve` per replica behind a load balancer")
    cmds: list[Command] = []
    if nodes > 1 and replicas == 1:
        if "--nnodes" in flags:
            for r in range(nodes):
                cmds.append(Command(tuple(argv + ["--nnodes", str(nodes), "--node-rank", str(r),
                                                  "--master-addr", HEAD]), env, "vllm serve", f"node {r}"))
            notes.append(f"{HEAD}: the address of node 0; the nodes need a fast interconnect (InfiniBand/RoCE) "
                         "for pipeline parallel")
        else:
            cmds.append(Command(tuple(argv + ["--distributed-executor-backend", "ray"]), env, "vllm serve", "node 0"))
            notes.append(f"first a Ray cluster: `ray start --head` on node 0, `ray start --address={HEAD}:6379` "
                         "on the others")
    else:
        cmds.append(Command(tuple(argv), env, "vllm serve"))
    return Parts(tuple(cmds), notes=tuple(notes))


SGLANG_FLAGS = {"page_size": "--page-size", "max_total_tokens": "--max-total-tokens", "max_running_requests":
                "--max-running-requests", "chunked_prefill_size": "--chunked-prefill-size", "max_prefill_tokens":
                "--max-prefill-tokens", "cuda_graph_max_bs": "--cuda-graph-max-bs", "dtype": "--dtype",
                "swa_full_tokens_ratio": "--swa-full-tokens-ratio", "pp_size": "--pp-size"}


def sglang(plan: Plan, model: str, nodes: int, replicas: int, flags: Mapping[str, Any]) -> Parts:
    cfg, o = plan.engine_config, plan.options
    argv = ["python", "-m", "sglang.launch_server", "--model-path", model,
            "--context-length", _fmt(cfg["context_len"]), "--mem-fraction-static", _fmt(cfg["mem_fraction_static"])]
    if int(cfg.get("tp_size", 1)) > 1:
        argv += ["--tp-size", _fmt(cfg["tp_size"])]
    if cfg.get("kv_cache_dtype", "auto") != "auto":
        argv += ["--kv-cache-dtype", cfg["kv_cache_dtype"]]
    for k, flag in SGLANG_FLAGS.items():
        if o.get(k) is not None and flag in flags:
            argv += [flag, _fmt(o[k])]
    notes = []
    if o.get("disable_cuda_graph"):
        argv.append("--disable-cuda-graph")
    for k in ("startup_overhead", "weights_memory"):
        if o.get(k) is not None:
            notes.append(f"{k} is kvcap's input for the estimate, not an SGLang flag")
    if replicas > 1 and nodes == 1:
        argv += ["--dp-size", str(replicas)]
    elif replicas > 1:
        notes.append(f"{replicas} replicas over {nodes} nodes: one server per replica behind a load balancer")
    if nodes > 1 and replicas == 1:
        cmds = tuple(Command(tuple(argv + ["--nnodes", str(nodes), "--node-rank", str(r), "--dist-init-addr",
                                           f"{HEAD}:5000"]), program="python -m sglang.launch_server",
                             where=f"node {r}") for r in range(nodes))
        notes.append(f"{HEAD}: the address of node 0; tensor parallel spans the nodes (InfiniBand/RoCE)")
    else:
        cmds = (Command(tuple(argv), program="python -m sglang.launch_server"),)
    return Parts(cmds, notes=tuple(notes))


def llamacpp(plan: Plan, model: str, nodes: int, replicas: int, flags: Mapping[str, Any]) -> Parts:
    cfg, o = plan.engine_config, plan.options
    fa = o.get("flash_attn")
    fa = fa if fa in ("on", "off", "auto") else ("on" if cfg.get("flash_attn") else "off")
    argv = ["llama-server", "-m", model, "-c", _fmt(cfg["n_ctx"]), "-np", _fmt(cfg["n_seq_max"]),
            "-ctk", _fmt(cfg["type_k"]), "-ctv", _fmt(cfg["type_v"]), "-fa", fa, "-ngl", _fmt(cfg["n_gpu_layers"])]
    if cfg.get("kv_unified"):
        argv.append("-kvu")
    if cfg.get("swa_full"):
        argv.append("--swa-full")
    if o.get("n_batch") is not None:
        argv += ["-b", _fmt(cfg.get("n_batch", o["n_batch"]))]
    if o.get("n_ubatch") is not None:
        argv += ["-ub", _fmt(cfg.get("n_ubatch", o["n_ubatch"]))]
    if cfg.get("offload_kqv") is False:
        argv.append("-nkvo")
    if cfg.get("fit") is False:
        argv += ["--fit", "off"]
    if o.get("fit_target") is not None:
        argv += ["-fitt", _fmt(o["fit_target"])]
    if o.get("fit_ctx") is not None:
        argv += ["-fitc", _fmt(o["fit_ctx"])]
    if plan.device.count > 1:
        argv += ["-sm", "layer"]
    notes = [f"MODEL: the .gguf file ({o.get('gguf_file_type') or 'the file type planned'})"]
    if o.get("frontend") == "libllama":
        notes.append("planned with the C API's defaults (libllama); these llama-server flags set the same context")
    if o.get("era"):
        notes.append(f"planned for a build of {o['era']}; flags checked against llama.cpp {flags.get('_version', '')}")
    if replicas > 1:
        notes.append(f"{replicas} replicas: one llama-server each behind a load balancer")
    return Parts((Command(tuple(argv), program="llama-server"),), notes=tuple(notes))


def ollama(plan: Plan, model: str, nodes: int, replicas: int, flags: Mapping[str, Any]) -> Parts:
    cfg, o = plan.engine_config, plan.options
    env = {"OLLAMA_CONTEXT_LENGTH": _fmt(cfg["num_ctx"]), "OLLAMA_NUM_PARALLEL": _fmt(cfg.get("num_parallel", 1))}
    kv = o.get("OLLAMA_KV_CACHE_TYPE") or cfg.get("type_k")
    if kv and kv != "f16":
        env["OLLAMA_KV_CACHE_TYPE"] = _fmt(kv)
    fa = o.get("OLLAMA_FLASH_ATTENTION")
    if fa is not None or (kv and kv != "f16"):
        env["OLLAMA_FLASH_ATTENTION"] = "1" if (fa is None or fa in (True, "1", "true", "True")) else "0"
    if o.get("OLLAMA_GPU_OVERHEAD") is not None:
        env["OLLAMA_GPU_OVERHEAD"] = _fmt(o["OLLAMA_GPU_OVERHEAD"])
    params: dict[str, Any] = {"num_ctx": cfg["num_ctx"]}
    for k in ("num_batch", "num_gpu"):
        if o.get(k) is not None:
            params[k] = o[k]
    name = f"{model.split('/')[-1].split(':')[0].lower()}-kvcap"
    modelfile = f"FROM {model}\n" + "".join(f"PARAMETER {k} {_fmt(v)}\n" for k, v in params.items())
    cmds = (Command(("ollama", "serve"), env, "ollama serve", "the server"),
            Command(("ollama", "create", name, "-f", "Modelfile"), program="ollama create",
                    where="optional: num_ctx per model instead of OLLAMA_CONTEXT_LENGTH"))
    notes = ["MODEL: an Ollama model name (ollama pull) or hf.co/<user>/<repo>-GGUF:<quant>",
             f'or per request: {{"model": "{model}", "options": {{"num_ctx": {cfg["num_ctx"]}}}}} (API)']
    if replicas > 1:
        notes.append(f"{replicas} replicas: one `ollama serve` per host behind a load balancer")
    return Parts(cmds, env_checked=True, files={"Modelfile": modelfile}, options=params, notes=tuple(notes))


def mlx(plan: Plan, model: str, nodes: int, replicas: int, flags: Mapping[str, Any]) -> Parts:
    cfg, o = plan.engine_config, plan.options
    cmds: list[Command] = []
    path = model
    if o.get("q_bits") is not None or o.get("q_group_size") is not None:
        path = f"./{model.split('/')[-1]}-{o.get('q_bits', 4)}bit-mlx"
        conv = ["mlx_lm.convert", "--hf-path", model, "--mlx-path", path, "-q", "--q-bits", _fmt(o.get("q_bits", 4))]
        if o.get("q_group_size") is not None:
            conv += ["--q-group-size", _fmt(o["q_group_size"])]
        cmds.append(Command(tuple(conv), program="mlx_lm.convert", where="once, to quantize the weights"))
    server = ["mlx_lm.server", "--model", path, "--decode-concurrency", _fmt(cfg.get("batch") or 1),
              "--prefill-step-size", _fmt(cfg.get("prefill_step_size") or 2048)]
    cmds.append(Command(tuple(server), program="mlx_lm.server"))
    notes = [f"mlx_lm.server has no context flag: each request's prompt + max_tokens must stay within "
             f"{cfg.get('context') or 0:,} tokens"]
    missing = [f"--{k.replace('_', '-')}" for k in ("max_kv_size", "kv_bits") if cfg.get(k) is not None]
    if missing:
        notes.append(f"mlx_lm.server has no {' or '.join(missing)} flag (mlx_lm.generate has): the planned KV cache "
                     "needs mlx_lm.generate (one sequence) or the Python API")
        if int(cfg.get("batch") or 1) == 1:
            gen = ["mlx_lm.generate", "--model", path]
            if cfg.get("max_kv_size") is not None:
                gen += ["--max-kv-size", _fmt(cfg["max_kv_size"])]
            if cfg.get("kv_bits") is not None:
                gen += ["--kv-bits", _fmt(cfg["kv_bits"]), "--kv-group-size", _fmt(cfg.get("kv_group_size") or 64)]
                if o.get("quantized_kv_start") is not None:
                    gen += ["--quantized-kv-start", _fmt(o["quantized_kv_start"])]
            cmds.append(Command(tuple(gen), program="mlx_lm.generate", where="one sequence, with the planned KV cache"))
    if o.get("memory_limit") is not None:
        notes.append("memory_limit has no flag: mx.set_memory_limit() in Python")
    if replicas > 1:
        notes.append(f"{replicas} replicas: one Mac each, behind a load balancer")
    return Parts(tuple(cmds), notes=tuple(notes))


BUILDERS = {"mlc": mlc, "vllm": vllm, "sglang": sglang, "llamacpp": llamacpp, "ollama": ollama, "mlx": mlx}
