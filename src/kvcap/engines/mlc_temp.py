"""An estimate of MLC's compiled temporary buffer, which config.json does not carry.

MLC compiles every Relax function of a model with static memory planning and records, per
function, the bytes of all constant-size storage it plans (compiler_pass/estimate_memory_usage.py:
_MemoryEstimator), with dynamic dimensions bounded by the compile-time limits
(interface/compile.py:_get_variable_bounds: seq_len = prefill_chunk_size, batch_size =
max_batch_size). `InferForKVCache` takes the largest of those (then doubles it in the C++ engine).
The largest is the prefill of one chunk, so the estimate is the live activations of one decoder
layer for `prefill_chunk_size` tokens, plus the chunk's logits where they are constant-size,
plus a fixed part. How the constants were fitted, and the residuals, are in
docs/mlc-temp-buffer.md; a user who knows the real value passes temp_buffer_bytes instead.
"""

from __future__ import annotations

from dataclasses import dataclass

# Hidden-size buffers live beside the MLP and attention activations of one layer (residual,
# norm output, attention output, MLP output): the fitted count (docs/mlc-temp-buffer.md).
HIDDEN_BUFFERS = 4
# Storage the planner keeps whatever the chunk (rope tables, sampler and index buffers): fitted.
FIXED_BYTES = 32 << 20
# On the public logs the compiled value is 0.82–0.98 of the estimate: at most 22% above it (the
# 128-token chunk, where the fixed part dominates), never below.
ERROR_BAR = "fit on 7 real MLC logs (5 libraries): the compiled value was 82–98% of this estimate"
# ± this share of the estimate covers every public log (it errs high): the widest, mlc-2026,
# compiled 0.817 × the estimate, needs 0.183 (docs/mlc-temp-buffer.md, "Fit and residuals").
ERROR_FRACTION = 0.19

# MLC model families whose lm_head (or tied embedding) has the symbolic dimension "vocab_size":
# their logits have no constant size, so MLC's estimator does not count them. Every other family
# declares `config.vocab_size`, and the prefill logits (f16 and their f32 copy) are counted.
# (python/mlc_llm/model/*/…_model.py: nn.Linear(hidden, "vocab_size") / Embedding("vocab_size", …))
SYMBOLIC_LM_HEAD = frozenset({"llama", "mistral", "mixtral", "phi3", "phi3_v", "gpt2", "gpt_bigcode",
                              "orion", "nemotron", "llama4", "llava"})
SYMBOLIC_EMBEDDING = frozenset({"llama", "mistral", "mixtral", "gpt2", "gpt_bigcode", "gpt_neox", "orion",
                                "nemotron", "llama4", "llava", "cohere", "gemma", "gemma2", "gemma3",
                                "gemma3_text"})


@dataclass(frozen=True)
class TempShape:
    """What the estimate reads from one model, per tensor-parallel shard."""

    model_type: str
    hidden: int
    q_width: int            # q heads per shard × head_dim
    kv_width: int           # kv heads per shard × head_dim
    intermediate: int       # MLP intermediate per shard
    vocab: int
    tied: bool
    act_bytes: int          # activation dtype bytes (the model dtype of the quantization)
    prefill_chunk_size: int
    max_batch_size: int


def logits_counted(model_type: str, tied: bool) -> bool:
    """Whether MLC's memory estimator sees a constant-size logits tensor for this family."""
    return model_type not in (SYMBOLIC_EMBEDDING if tied else SYMBOLIC_LM_HEAD)


def estimate(s: TempShape) -> tuple[int, str]:
    """(bytes of the largest function's planned storage, the formula in words)."""
    tokens = max(s.prefill_chunk_size, s.max_batch_size)
    per_token = s.act_bytes * (3 * s.intermediate + s.q_width + 2 * s.kv_width + HIDDEN_BUFFERS * s.hidden)
    words = (f"max(prefill_chunk_size, max_batch_size) {tokens} × {s.act_bytes} B × (3·intermediate "
             f"{s.intermediate} + q {s.q_width} + 2·kv {s.kv_width} + {HIDDEN_BUFFERS}·hidden {s.hidden})")
    total = tokens * per_token
    if logits_counted(s.model_type, s.tied):
        # batch_verify/batch_prefill: logits for every chunk token; an untied lm_head yields the
        # model dtype and `astype("float32")` copies it, a tied one multiplies straight to f32.
        logit_bytes = 4 if s.tied else s.act_bytes + 4
        total += tokens * s.vocab * logit_bytes
        words += f" + {tokens} × vocab {s.vocab} × {logit_bytes} B (logits)"
    words += " + 32 MiB fixed"
    return total + FIXED_BYTES, words
