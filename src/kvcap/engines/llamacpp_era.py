"""llama.cpp's rules that changed over time, keyed by the month a build comes from ("era").

llama.cpp has no stable version number that users quote; logs and bug reports give a build
number or a date. kvcap keys each changed rule by the month its pull request merged (builds of
that month or later follow the new rule) and lets `era=YYYY-MM` pick the builds of a period.
Sources: ../shared/research/llamacpp.md §2 and the vendored llama.cpp snapshots in Ollama's
history (`Makefile.sync` FETCH_HEAD per release).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import OptionsError

# The newest builds the research covers (b10488, launched by Ollama v0.33, 2026-08).
LATEST = "2026-08"
# kvcap's rules reach back to the builds that padded n_ctx (the 32-cell padding, early 2024).
EARLIEST = "2024-01"


@dataclass(frozen=True)
class Rule:
    since: str        # first month whose builds follow the rule
    what: str
    source: str


RULES: dict[str, Rule] = {
    "flash_attn": Rule("2024-05", "flash attention exists (-fa); KV padding 256 with it, 32 without",
                       "PR #5021; src/llama.cpp llama_kv_cache_get_padding"),
    "swa_cache": Rule("2025-05", "sliding-window layers get their own, smaller cache",
                      "PR #13194; src/llama-kv-cache-unified-iswa.cpp ctor"),
    "kv_streams": Rule("2025-08", "without -kvu each sequence gets its own stream of n_ctx/n_seq_max cells",
                       "PR #14363 (kv_unified); src/llama-model.cpp create_memory (n_ctx_per_stream)"),
    "flash_attn_auto": Rule("2025-09", "-fa defaults to auto (on where the device supports it)",
                            "PR #15434; common/common.h flash_attn_type"),
    "pad_256": Rule("2025-11", "n_ctx always padded to 256; n_ctx_seq = pad256(n_ctx / n_seq_max)",
                    "src/llama-context.cpp llama_context::llama_context (ref PR #17046)"),
    "swa_pad_256": Rule("2025-11", "SWA cache size padded to 256 after the min()",
                        "src/llama-kv-cache-iswa.cpp llama_kv_cache_iswa (issue #17037)"),
    "server_auto_parallel": Rule("2025-11", "llama-server without -np: n_parallel = 4 and kv_unified = true",
                                 "PR #16736; tools/server/server.cpp main"),
    "cli_ctx_4096": Rule("2024-11", "llama-cli/llama-server default -c 4096", "PR #10136; common/common.h"),
    "fit": Rule("2025-12", "-c defaults to 0 (the training context) and --fit (default on) shrinks it to free memory",
                "common/common.h common_params (n_ctx 0, fit_params true); src/llama.cpp llama_params_fit_impl"),
    "mla_cache": Rule("2025-04", "MLA models cache the compressed latent (K 576 + V 512) instead of full K/V per head",
                      "PR #12801 (MLA GGUF keys key_length_mla / value_length_mla)"),
    "mla_v_less": Rule("2026-01", "MLA caches the 576-wide latent as K only; V is not stored",
                       "PR #19067 (V-less cache)"),
    "swa_f16": Rule("2026-04", "the SWA part of the cache stays F16 whatever -ctk/-ctv say",
                    "PR #21277 (do not quantize SWA KV cache)"),
}

_ERA = re.compile(r"^(\d{4})-(\d{2})$")


def month(era: str) -> int:
    """'2025-11' -> a month count that orders eras."""
    m = _ERA.match(str(era))
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise OptionsError(f"era {era!r} is not a month: write YYYY-MM, e.g. 2025-12")
    return int(m.group(1)) * 12 + int(m.group(2)) - 1


def check_era(era: object) -> str:
    text = str(era)
    if month(text) < month(EARLIEST):
        raise OptionsError(f"era {text}: kvcap's llama.cpp rules start at {EARLIEST} (builds that pad n_ctx)")
    if month(text) > month(LATEST):
        raise OptionsError(f"era {text} is newer than the newest llama.cpp kvcap knows ({LATEST})")
    return text


def has(era: str, rule: str) -> bool:
    """Whether builds of `era` follow `rule`."""
    return month(era) >= month(RULES[rule].since)
