"""llama.cpp's options, by its own names, with the defaults of each frontend and era.

Frontends differ: `llama_context_default_params()` (libllama: what Ollama's CGO runner and most
bindings get) vs `common_params` (llama-cli / llama-server), and llama-server adds its own
`-np` auto rule. Sources: src/llama-context.cpp llama_context_default_params, common/common.h
struct common_params, tools/server/server.cpp main (ec98e2002); ../shared/research/llamacpp.md §2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ..device.spec import DeviceSpec
from ..errors import OptionsError
from ..units import parse_size
from .base import check_options, truth, whole
from .llamacpp_era import LATEST, check_era, has
from .llamacpp_types import FileType, GgmlType, file_type, kv_cache_type

OPTIONS: dict[str, str] = {
    "n_ctx": "-c: context size in cells, all sequences together (0 = the model's training context)",
    "n_seq_max": "-np/--parallel: sequences decoded in parallel",
    "type_k": "-ctk: K cache type (f32 f16 bf16 q8_0 q4_0 q4_1 iq4_nl q5_0 q5_1)",
    "type_v": "-ctv: V cache type (quantized V needs flash attention)",
    "flash_attn": "-fa on|off|auto",
    "kv_unified": "-kvu: one KV stream shared by all sequences",
    "swa_full": "--swa-full: full-size cache for sliding-window layers",
    "n_gpu_layers": "-ngl: layers on the device, counted from the last (n_layer + 1 includes the output)",
    "n_ubatch": "-ub: physical batch size (default 512)",
    "n_batch": "-b: logical batch size (default 2048)",
    "offload_kqv": "false = -nkvo: keep the whole KV cache in host memory",
    "fit": "--fit on|off: shrink -c and -ngl to free device memory (builds from 2025-12, default on)",
    "fit_target": "-fitt: MiB each device keeps free when fitting (default 1024)",
    "fit_ctx": "-fitc: smallest context --fit may choose (default 4096)",
    "era": f"the month the build comes from, YYYY-MM (default {LATEST}); rules that changed follow it",
    "frontend": "llama-server (default), llama-cli, or libllama (the C API defaults, as bindings and Ollama's runner get them)",
    "gguf_file_type": "the GGUF's file type when the model was not read from the file (default Q4_K_M)",
    "gguf_mla": "false: an MLA GGUF converted before PR #12801 (Apr 2025), caching full K/V per head",
    "free_memory": "device memory free at load, as llama.cpp logs it (default: the device's memory)",
}
FRONTENDS = ("llama-server", "llama-cli", "libllama")
# Backends whose ggml device runs FLASH_ATTN_EXT, so `-fa auto` resolves to enabled.
FA_BACKENDS = ("cuda", "rocm", "metal", "vulkan", "cpu")
DEFAULT_FILE_TYPE = "Q4_K_M"


@dataclass(frozen=True)
class Settings:
    era: str
    frontend: str
    n_ctx: int                  # 0 = the training context
    n_ctx_default: bool         # n_ctx was not given by the user
    n_seq_max: int
    kv_unified: bool
    type_k: GgmlType
    type_v: GgmlType
    flash_attn: bool            # resolved (auto -> on where the backend supports it)
    flash_attn_mode: str        # on | off | auto, as given or defaulted
    swa_full: bool
    n_gpu_layers: int | None    # None: the default (every layer and the output)
    n_ubatch: int
    n_batch: int
    offload_kqv: bool
    fit: bool
    fit_target: int             # bytes
    fit_ctx: int
    file_type: FileType
    file_type_default: bool
    gguf_mla: bool
    free_memory: int | None
    notes: tuple[str, ...] = ()
    # Not an option: the MLA layout of a build that differs from mainline of its era (validate
    # sets it for ik_llama.cpp's `-mla`, which cached the latent as K only in 2025-03).
    mla_v_less: bool | None = None


def as_int(name: str, value: Any, minimum: int = 1) -> int:
    # llama.cpp's counts are int32 (common/arg.cpp parses them with std::stoi).
    return whole(name, value, minimum, maximum=1 << 31)


as_bool = truth


def fa_mode(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    text = str(value).lower()
    if text in ("on", "off", "auto"):
        return text
    if text in ("1", "true", "0", "false"):
        return "on" if text in ("1", "true") else "off"
    raise OptionsError(f"flash_attn must be on, off or auto, got {value!r}")


def settings(options: Mapping[str, Any], device: DeviceSpec, file_type_hint: str | None = None,
             engine: str = "llamacpp") -> Settings:
    """Resolve llama.cpp's options: what the user set, else the frontend's default for the era."""
    check_options(engine, options, OPTIONS)
    o = dict(options)
    era = check_era(o.get("era", LATEST))
    frontend = str(o.get("frontend", "llama-server"))
    if frontend not in FRONTENDS:
        raise OptionsError(f"frontend {frontend!r} is not one of {', '.join(FRONTENDS)}")
    lib = frontend == "libllama"
    notes: list[str] = []

    # n_ctx: libllama 512; llama-cli/-server 0 (training context, --fit) since 2025-12, 4096 before
    n_ctx_default = "n_ctx" not in o
    if not n_ctx_default:
        n_ctx = as_int("n_ctx", o["n_ctx"], minimum=0)
    elif lib:
        n_ctx = 512
    elif has(era, "fit"):
        n_ctx = 0
    elif has(era, "cli_ctx_4096"):
        n_ctx = 4096
    else:
        raise OptionsError(f"give n_ctx: the default -c of llama.cpp builds of {era} is not in kvcap's sources")

    # -np: llama-server without -np uses 4 sequences on one unified stream (since Nov 2025)
    auto_np = frontend == "llama-server" and "n_seq_max" not in o and has(era, "server_auto_parallel")
    n_seq_max = 4 if auto_np else as_int("n_seq_max", o.get("n_seq_max", 1))
    kv_unified = as_bool("kv_unified", o["kv_unified"]) if "kv_unified" in o else auto_np
    if auto_np:
        notes.append("llama-server without -np: n_parallel = 4 and kv_unified = true")
    if not has(era, "kv_streams"):
        kv_unified = True   # one cache shared by all sequences before the per-sequence streams

    fa = fa_mode(o.get("flash_attn", "auto" if has(era, "flash_attn_auto") else "off"))
    if fa != "off" and not has(era, "flash_attn"):
        raise OptionsError(f"flash attention does not exist in llama.cpp builds of {era} (added 2024-05)")
    if fa == "auto" and not has(era, "flash_attn_auto"):
        raise OptionsError(f"-fa auto does not exist in llama.cpp builds of {era} (added 2025-09); use on or off")
    flash = fa == "on" or (fa == "auto" and device.backend in FA_BACKENDS)
    type_k = kv_cache_type(o.get("type_k", "f16"), "type_k")
    type_v = kv_cache_type(o.get("type_v", "f16"), "type_v")
    if fa == "auto" and not flash and type_v.quantized:
        raise OptionsError("quantized V cache was requested, but this requires Flash Attention "
                           f"(-fa auto resolves to off on {device.backend})")

    n_batch = as_int("n_batch", o.get("n_batch", 2048))
    n_ubatch = as_int("n_ubatch", o.get("n_ubatch", 512))
    ngl = as_int("n_gpu_layers", o["n_gpu_layers"], minimum=0) if "n_gpu_layers" in o else None
    fit_available = not lib and has(era, "fit")
    fit = as_bool("fit", o.get("fit", fit_available))
    if fit and not fit_available:
        raise OptionsError(f"--fit exists in llama-cli/llama-server builds from 2025-12, not in {frontend} of {era}")
    ft_name = o.get("gguf_file_type", file_type_hint or DEFAULT_FILE_TYPE)
    free = parse_size(o["free_memory"], "free_memory") if "free_memory" in o else None
    return Settings(
        era=era, frontend=frontend, n_ctx=n_ctx, n_ctx_default=n_ctx_default, n_seq_max=n_seq_max,
        kv_unified=kv_unified, type_k=type_k, type_v=type_v, flash_attn=flash, flash_attn_mode=fa,
        swa_full=as_bool("swa_full", o.get("swa_full", lib)), n_gpu_layers=ngl, n_ubatch=n_ubatch,
        n_batch=n_batch, offload_kqv=as_bool("offload_kqv", o.get("offload_kqv", True)), fit=fit,
        fit_target=as_int("fit_target", o.get("fit_target", 1024), minimum=0) << 20,
        fit_ctx=as_int("fit_ctx", o.get("fit_ctx", 4096)), file_type=file_type(ft_name),
        file_type_default="gguf_file_type" not in o and not file_type_hint,
        gguf_mla=as_bool("gguf_mla", o.get("gguf_mla", True)), free_memory=free, notes=tuple(notes),
    )
