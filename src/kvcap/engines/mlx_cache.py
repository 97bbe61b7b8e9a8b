"""mlx-lm's KV caches as arrays: how many tokens each layer's K and V arrays hold, and their bytes.

Sources (ml-explore/mlx-lm @ d78bf58, mlx_lm/models/cache.py):
- `KVCache.update_and_fetch`: when a chunk of n tokens does not fit, the arrays are first cut to
  the tokens held (if that is not a multiple of `step`) and then grown by ceil(n / 256) · 256
  tokens (`step = 256`). One array per layer for K, one for V: [B, kv_heads, capacity, head_dim].
- `RotatingKVCache`: a multi-token chunk is concatenated after keeping `keep` + the last
  max_size − 1 tokens (`_update_concat`: "the largest size is max_size + S − 1"); single tokens
  grow the arrays by min(256, max_size − offset) up to max_size (`_update_in_place`).
- `QuantizedKVCache`: the same 256-token growth; each of K and V is three arrays — uint32 words
  packing 32 / bits values, and a scale and a bias per `group_size` values in the activation dtype.
- mlx_lm/generate.py `generate_step`: the prompt is prefilled in chunks of `prefill_step_size`
  (2048) while more than one token remains, then the last token goes through the decode step;
  `maybe_quantize_kv_cache` converts a KVCache once its offset reaches `quantized_kv_start`.
"""

from __future__ import annotations

from dataclasses import dataclass

STEP = 256


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def prefill_chunks(context: int, prefill_step: int) -> list[int]:
    """Token counts fed to the model for a prompt of `context` tokens (generate_step)."""
    chunks, done = [], 0
    while context - done > 1:
        n = min(prefill_step, context - done - 1)
        chunks.append(n)
        done += n
    if context >= 1:
        chunks.append(1)
    return chunks


def kvcache_capacity(context: int, prefill_step: int) -> int:
    """Tokens a `KVCache` (or `QuantizedKVCache`) layer array holds after `context` tokens."""
    if prefill_step % STEP == 0:
        # Every chunk but the last starts at a multiple of 256, so growth never cuts first.
        return _ceil(context, STEP) * STEP
    return simulate_kvcache(context, prefill_step)


def _chunk_runs(context: int, prefill_step: int) -> list[tuple[int, int]]:
    """prefill_chunks as (tokens, how many chunks in a row): k full chunks, the rest, the last token.
    A 2^40-token context is ~5e8 chunks: they are walked as runs, never listed."""
    if context < 1:
        return []
    k, r = divmod(context - 1, prefill_step)
    return [(n, c) for n, c in ((prefill_step, k), (r, 1), (1, 1)) if n and c]


def simulate_kvcache(context: int, prefill_step: int) -> int:
    """`KVCache.update_and_fetch` chunk by chunk."""
    cap = offset = 0
    for n, count in _chunk_runs(context, prefill_step):
        seen: dict[tuple[int, int], tuple[int, int, int]] = {}
        i = 0
        while i < count:
            # (cap − offset, offset mod 256) fixes what every later chunk of this size does: once
            # it repeats, whole periods are skipped (the cap grows by the same amount each one).
            state = (cap - offset, offset % STEP)
            if state in seen and count - i > 1:
                j, cap_j, offset_j = seen.pop(state)
                periods = (count - i) // (i - j)
                cap += periods * (cap - cap_j)
                offset += periods * (offset - offset_j)
                i += periods * (i - j)
                seen.clear()
                continue
            seen[state] = (i, cap, offset)
            if offset + n > cap:
                if offset % STEP:
                    cap = offset  # cut to the tokens held before growing
                cap += _ceil(n, STEP) * STEP
            offset += n
            i += 1
    return cap


def rotating_sizes(context: int, prefill_step: int, max_size: int) -> tuple[int, int]:
    """(peak, final) tokens a `RotatingKVCache` layer array holds while and after `context` tokens.

    Follows `_update_concat` (chunks of more than one token) and `_update_in_place` (one token)
    step by step; only the array length matters here, not the order of its tokens.
    """
    size = offset = idx = peak = 0
    started = False
    for n, count in _chunk_runs(context, prefill_step):
        for i in range(count):
            before = size
            size, offset, idx, started = _rotating_step(n, size, offset, idx, started, max_size)
            peak = max(peak, size)
            if size == before and offset > max_size and i + 1 < count:
                # A fixed point: each further chunk of n tokens leaves the array's length as it
                # is (only offset moves, and past max_size it no longer steers a branch).
                offset += n * (count - i - 1)
                break
    return peak, size


def _rotating_step(n: int, size: int, offset: int, idx: int, started: bool,
                   max_size: int) -> tuple[int, int, int, bool]:
    """One chunk of `n` tokens through `RotatingKVCache` (its array length, not its contents)."""
    if n > 1:
        if not started:
            size = n
        else:
            if not (idx == size or idx < offset):
                size = idx  # _temporal_order slices off the unused end
            trim = size - max_size + 1
            if trim > 0:
                size -= trim
            size += n
        offset += n
        idx = size
    else:
        if not started or (offset >= size and size < max_size):
            size += min(STEP, max_size - offset)
            idx = offset
        if size > max_size:
            size = idx = max_size
        if idx == max_size:
            idx = 0
        offset += 1
        idx += 1
    return size, offset, idx, True


def largest_chunk_scores(context: int, prefill_step: int, kv_limit: int) -> int:
    """max over prompt chunks of (chunk tokens × keys attended), the keys capped at `kv_limit`.

    The chunks are k full ones of `prefill_step`, then the rest r of the context − 1 tokens, then
    one token (prefill_chunks); keys grow with each chunk, so only the last of each size matters.
    """
    if context < 1:
        return 0
    k, r = divmod(context - 1, prefill_step)
    best = min(context, kv_limit)                      # the last, single token
    if k:
        best = max(best, prefill_step * min(k * prefill_step, kv_limit))
    if r:
        best = max(best, r * min(context - 1, kv_limit))
    return best


@dataclass(frozen=True)
class LayerArrays:
    """One layer's cache as mlx-lm allocates it at the peak: K and V arrays, bytes each."""

    kind: str                     # "KVCache", "RotatingKVCache", "QuantizedKVCache"
    tokens: int                   # capacity of each array in tokens
    k_bytes: tuple[int, ...]      # bytes of each array holding K (1, or 3 when quantized)
    v_bytes: tuple[int, ...]

    @property
    def total(self) -> int:
        return sum(self.k_bytes) + sum(self.v_bytes)

    @property
    def largest(self) -> int:
        return max(self.k_bytes + self.v_bytes)


def plain_arrays(kind: str, batch: int, heads: int, tokens: int, dk: int, dv: int, dtype_bytes: int) -> LayerArrays:
    return LayerArrays(kind, tokens, (batch * heads * tokens * dk * dtype_bytes,),
                       (batch * heads * tokens * dv * dtype_bytes,))


def quantized_arrays(batch: int, heads: int, tokens: int, dk: int, dv: int, dtype_bytes: int, bits: int,
                     group: int) -> LayerArrays:
    def three(d: int) -> tuple[int, int, int]:
        rows = batch * heads * tokens
        return rows * (d * bits // 32) * 4, rows * (d // group) * dtype_bytes, rows * (d // group) * dtype_bytes
    return LayerArrays("QuantizedKVCache", tokens, three(dk), three(dv))
