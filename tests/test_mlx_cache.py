"""mlx-lm's cache arrays, worked by hand: 256-token steps, rotating caches, quantized bytes, weights."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kvcap.engines.mlx_cache import (kvcache_capacity, largest_chunk_scores, plain_arrays, prefill_chunks,
                                     quantized_arrays, rotating_sizes, simulate_kvcache)
from kvcap.engines.mlx_weights import Quant, _arrays, page_round
from kvcap.model.spec import EMBED, LINEAR, NORM


def test_prefill_chunks_leave_the_last_token_to_the_decode_step():
    # 5000 tokens: while more than one remains, chunks of min(2048, remaining - 1); then one token
    assert prefill_chunks(5000, 2048) == [2048, 2048, 903, 1]
    assert prefill_chunks(1, 2048) == [1]
    assert prefill_chunks(2, 2048) == [1, 1]


def test_kvcache_grows_in_steps_of_256():
    assert kvcache_capacity(1, 2048) == 256
    assert kvcache_capacity(256, 2048) == 256
    assert kvcache_capacity(257, 2048) == 512
    # 2048 + 2048 + ceil(903 / 256) x 256 = 2048 + 2048 + 1024 = 5120, the last token fits
    assert kvcache_capacity(5000, 2048) == 5120


def test_a_chunk_size_off_the_step_cuts_before_growing():
    # --prefill-step-size 1000, 1300 tokens: chunk 1000 -> 1024; chunk 299 does not fit 1024: cut to
    # the 1000 tokens held, then grow by ceil(299 / 256) x 256 = 512 -> 1512; the last token fits
    assert kvcache_capacity(1300, 1000) == 1512


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=200_000), st.integers(min_value=1, max_value=32).map(lambda k: k * 256))
def test_closed_form_matches_the_simulation_for_step_multiples(context, step):
    assert kvcache_capacity(context, step) == simulate_kvcache(context, step) == -(-context // 256) * 256


def test_rotating_cache_sizes():
    # 10 tokens, max 4096: a 9-token chunk, then the last token grows the arrays by min(256, 4096 - 9)
    assert rotating_sizes(10, 2048, 4096) == (265, 265)
    # 5000 tokens: 2048, 2048 (4096), then keep 4095 + 903 = 4998; the last token trims to 4096
    assert rotating_sizes(5000, 2048, 4096) == (4998, 4096)
    # a long prompt peaks at max_size - 1 + prefill_step_size
    assert rotating_sizes(100_000, 2048, 4096) == (4095 + 2048, 4096)
    # a short window: decode growth stops at max_size
    assert rotating_sizes(200, 2048, 128) == (199, 128)


def test_quantized_kv_bytes():
    # B=1, 8 KV heads, 256 tokens, head dim 128, 4 bits, groups of 64, fp16 scales and biases:
    # words: 128 x 4 / 32 = 16 uint32 per row -> 8 x 256 x 16 x 4 = 131,072 B
    # scales and biases: 128 / 64 = 2 per row -> 8 x 256 x 2 x 2 = 8,192 B each
    q = quantized_arrays(1, 8, 256, 128, 128, 2, 4, 64)
    assert q.k_bytes == (131072, 8192, 8192) and q.v_bytes == q.k_bytes
    plain = plain_arrays("KVCache", 1, 8, 256, 128, 128, 2)
    assert plain.k_bytes == (8 * 256 * 128 * 2,)
    assert q.total / plain.total == (16 * 4 + 2 * 2 * 2) / (128 * 2)  # 72 / 256
    # 8 bits: 32 words per row
    assert quantized_arrays(1, 1, 1, 128, 128, 2, 8, 32).k_bytes == (128, 8, 8)


def test_mlx_weight_arrays():
    q4 = Quant(4, 64)
    # a 4096 x 4096 Linear at 4 bits: 4096 x 4096 / 2 = 8 MiB words, 4096 x 64 groups x 2 B scales and biases
    assert _arrays(4096 * 4096, (4096, 4096), LINEAR, q4, 2) == (8 << 20, 512 << 10, 512 << 10)
    # an input dim that does not divide by the group size stays unquantized (nn.quantize's predicate)
    assert _arrays(4096 * 100, (4096, 100), LINEAR, q4, 2) == (4096 * 100 * 2,)
    assert _arrays(4096, (4096,), NORM, q4, 2) == (8192,)
    assert _arrays(32000 * 4096, (32000, 4096), EMBED, Quant(4, 32, "mxfp4"), 2) == (32000 * 2048, 32000 * 128)
    # allocations above one 16 KiB page are rounded up to whole pages
    assert page_round(8192) == 8192 and page_round(20000) == 32768 and page_round(16384) == 16384


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=50_000), st.integers(min_value=1, max_value=5000),
       st.integers(min_value=1, max_value=60_000))
def test_largest_chunk_scores_matches_the_chunks(context, step, kv_limit):
    done, best = 0, 0
    for n in prefill_chunks(context, step):
        done += n
        best = max(best, n * min(done, kv_limit))
    assert largest_chunk_scores(context, step, kv_limit) == best
