"""Ollama's history as far as KV sizing goes: defaults, runners and the llama.cpp each release ships.

Read from Ollama's git history (tags v0.1.18 ... v0.33.0-rc2): envconfig/config.go,
server/routes.go, server/sched.go, llm/server.go, fs/ggml/ggml.go, Makefile.sync, LLAMA_CPP_VERSION.
"""

from __future__ import annotations

import re

from ..errors import OptionsError

Version = tuple[int, int, int]
LATEST = "0.33.0"

_V = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:-rc\d+)?$")


def parse_version(text: object) -> Version:
    m = _V.match(str(text).strip().lstrip("~"))
    if not m:
        raise OptionsError(f"Ollama version {text!r} is not a version: write e.g. 0.24.0")
    v = (int(m.group(1)), int(m.group(2)), int(m.group(3)))
    if v < (0, 1, 18):
        raise OptionsError(f"Ollama {text}: kvcap's rules start at 0.1.18 (its llama.cpp from 2024-01)")
    if v > parse_version_unchecked(LATEST):
        raise OptionsError(f"Ollama {text} is newer than the newest Ollama kvcap knows ({LATEST})")
    return v


def parse_version_unchecked(text: str) -> Version:
    a, b, c = (int(x) for x in text.split("."))
    return a, b, c


def _at(v: Version, table: list[tuple[Version, object]]) -> object:
    """The value of the last row whose version is <= v."""
    out = table[0][1]
    for since, value in table:
        if v >= since:
            out = value
    return out


# The llama.cpp era each release runs. Until v0.5.x llama.cpp was a submodule: its era is the
# release month. From v0.5.8 the vendored commit (Makefile.sync FETCH_HEAD) decides; each era was
# chosen so that kvcap's era rules match what that commit's source does (checked by reading it:
# de4c07f9 has no SWA cache yet, 3cfa9c3f still pads by 32/256, 7f8ef50c pads to 256).
# From v0.30 Ollama launches an upstream llama-server (LLAMA_CPP_VERSION b9452 ... b10488).
LLAMA_CPP_ERA: list[tuple[Version, object]] = [
    ((0, 1, 18), "2024-01"), ((0, 1, 23), "2024-02"), ((0, 1, 28), "2024-03"), ((0, 1, 31), "2024-04"),
    ((0, 1, 33), "2024-05"), ((0, 1, 41), "2024-06"), ((0, 2, 0), "2024-07"), ((0, 3, 3), "2024-08"),
    ((0, 3, 10), "2024-09"), ((0, 3, 13), "2024-10"), ((0, 4, 0), "2024-11"), ((0, 5, 0), "2024-12"),
    ((0, 5, 5), "2025-01"), ((0, 5, 13), "2025-02"),            # d7cfe1ff
    ((0, 6, 6), "2025-04"),                                      # 71e90e88, 2016f07b, e1e8e099, de4c07f9
    ((0, 11, 5), "2025-08"),                                     # e54d41be
    ((0, 12, 4), "2025-09"), ((0, 12, 6), "2025-10"),            # 364a7a6d (b6646), 7049736b, 3cfa9c3f (b6840)
    ((0, 13, 2), "2025-11"),                                     # 7f8ef50c (b7108)
    ((0, 13, 3), "2025-12"),                                     # 17f7f4ba, ec98e2002 (until v0.24)
    ((0, 30, 0), "2026-05"), ((0, 31, 0), "2026-06"), ((0, 32, 0), "2026-07"), ((0, 33, 0), "2026-08"),
]


def llama_cpp_era(v: Version) -> str:
    return str(_at(v, LLAMA_CPP_ERA))


def runner_kind(v: Version, arch: str) -> str:
    """'llama' (CGO libllama runner), 'ollama' (Go ollamarunner) or 'llama-server' (v0.30+)."""
    if v >= (0, 30, 0):
        return "llama-server"   # PR #16031: llama-server only for GGML models
    return "ollama" if arch in ollama_engine_archs(v) else "llama"


# fs/ggml/ggml.go KV.OllamaEngineRequired, by the release that added each architecture.
_ENGINE_ARCHS: list[tuple[Version, tuple[str, ...]]] = [
    ((0, 6, 0), ("gemma3",)),
    ((0, 7, 0), ("mistral3", "llama4", "mllama", "qwen25vl")),
    ((0, 11, 0), ("gemma3n", "gptoss", "gpt-oss")),
    ((0, 12, 0), ("qwen3",)),
    ((0, 13, 0), ("qwen3moe", "qwen3vl", "qwen3vlmoe", "deepseekocr", "deepseek2")),
    ((0, 15, 0), ("bert", "nomic-bert", "olmo3", "glm4moelite", "lfm2")),
    ((0, 17, 0), ("qwen3next", "glmocr")),
    ((0, 20, 0), ("gemma4", "nemotron_h", "nemotron_h_moe", "qwen35", "qwen35moe", "lfm2moe")),
    ((0, 24, 0), ("laguna", "nemotron_h_omni")),
]


def ollama_engine_archs(v: Version) -> set[str]:
    return {a for since, archs in _ENGINE_ARCHS if v >= since for a in archs}


# fs/ggml/ggml.go GGML.FlashAttention: architectures with flash attention on by default
# (first: gptoss, PR #11996, 2025-08; the v0.24 list).
FA_DEFAULT_ARCHS = ("bert", "gemma3", "gemma4", "glm4moelite", "glmocr", "gptoss", "gpt-oss", "lfm2", "lfm2moe",
                    "mistral3", "nemotron_h", "nemotron_h_moe", "nemotron_h_omni", "olmo3", "qwen3", "qwen3moe",
                    "qwen35", "qwen35moe", "qwen3next", "qwen3vl", "qwen3vlmoe")

# server/sched.go load: architectures forced to num_parallel 1 (the v0.24 list)
SINGLE_PARALLEL_ARCHS = ("mllama", "qwen3vl", "qwen3vlmoe", "qwen35", "qwen35moe", "qwen3next", "lfm2", "lfm2moe",
                         "nemotron_h", "nemotron_h_moe", "nemotron_h_omni")

# HF model_type -> GGUF general.architecture, for the names Ollama's tables use.
GGUF_ARCH = {
    "gemma3_text": "gemma3", "gemma3n_text": "gemma3n", "gemma4_text": "gemma4", "qwen2_5_vl": "qwen25vl",
    "gpt_oss": "gptoss", "qwen3_moe": "qwen3moe", "qwen3_vl": "qwen3vl", "qwen3_vl_moe": "qwen3vlmoe",
    "deepseek_v2": "deepseek2", "deepseek_v3": "deepseek2", "nomic_bert": "nomic-bert", "qwen3_next": "qwen3next",
    "qwen3_5": "qwen35", "qwen3_5_text": "qwen35", "qwen3_5_moe": "qwen35moe", "qwen3_5_moe_text": "qwen35moe",
    "lfm2_moe": "lfm2moe", "llama4_text": "llama4",
}


def default_num_ctx(v: Version, vram: int) -> tuple[int, str]:
    """num_ctx when neither the request nor OLLAMA_CONTEXT_LENGTH sets it, and why."""
    if v >= (0, 15, 5):
        # server/routes.go Serve: VRAM tiers (47/23 GiB thresholds, "vram-based default context")
        gib = 1 << 30
        if vram >= 47 * gib:
            return 262144, "VRAM >= 47 GiB"
        if vram >= 23 * gib:
            return 32768, "VRAM >= 23 GiB"
        return 4096, "VRAM < 23 GiB"
    if v >= (0, 6, 7):
        return 4096, "OLLAMA_CONTEXT_LENGTH default 4096 (v0.6.7 - v0.15.4)"
    return 2048, "api.DefaultOptions num_ctx 2048 (until v0.6.6)"


def default_parallel(v: Version) -> tuple[int | None, str]:
    """(fixed default, why); None = auto: the largest of (default_parallel, 1) that fits."""
    if v >= (0, 10, 0):
        return 1, "OLLAMA_NUM_PARALLEL default 1 (since v0.10.0)"
    if v >= (0, 6, 7):
        return None, "auto: 2 if it fits, else 1 (v0.6.7 - v0.9.x, server/sched.go defaultParallel)"
    if v >= (0, 2, 0):
        return None, "auto: 4 if it fits, else 1 (v0.2.0 - v0.6.6, server/sched.go)"
    return 1, "one sequence (no OLLAMA_NUM_PARALLEL before v0.2.0)"


def auto_parallel(v: Version) -> int:
    return 2 if v >= (0, 6, 7) else 4


def go_cache_padding(v: Version, flash_attn: bool) -> int:
    """ml/backend/ggml/ggml.go Backend.CacheConfig: 256 with FA, else 32; 256 always from v0.13.2."""
    return 256 if flash_attn or v >= (0, 13, 2) else 32
