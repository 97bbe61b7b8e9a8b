"""llama.cpp's KV arithmetic, worked by hand: padding, streams, block sizes, SWA, MLA, recurrent state."""

from __future__ import annotations

import pytest

from kvcap.engines.llamacpp_kv import Cparams, log_mib, memory_module, resolve_cells, swa_cells
from kvcap.engines.llamacpp_types import GGML_TYPES, KV_CACHE_TYPES, file_type, kv_cache_type
from kvcap.errors import ModelError, OptionsError
from kvcap.model.spec import FULL, MLA, RECURRENT, SLIDING, Layer, ModelSpec, StateTensor

MiB = 1 << 20
F16, Q8, Q4 = GGML_TYPES["f16"], GGML_TYPES["q8_0"], GGML_TYPES["q4_0"]


def spec(layers, model_type="llama", n_ctx_train=32768, name="test") -> ModelSpec:
    first = next((l for l in layers if l.num_kv_heads), layers[0])
    return ModelSpec(name=name, model_type=model_type, source="test", hidden_size=4096,
                     num_hidden_layers=sum(1 for l in layers if not l.is_mtp), num_attention_heads=32,
                     num_key_value_heads=first.num_kv_heads or 1, head_dim=first.head_dim_k or 128, vocab_size=32000,
                     intermediate_size=11008, context_window=n_ctx_train, dtype="float16", tie_word_embeddings=False,
                     layers=tuple(layers), tensors=())


def cp(n_ctx, n_seq=1, unified=False, fa=True, tk=F16, tv=F16, swa_full=False, era="2025-12", n_ubatch=512, **kw):
    total, seq = resolve_cells(n_ctx, n_seq, unified, fa, era)
    return Cparams(total, seq, n_seq, unified, n_ubatch, fa, tk, tv, swa_full, era, **kw)


# ---- n_ctx padding and streams ---------------------------------------------------------------
def test_padding_to_256_since_late_2025():
    # GGML_PAD(1000, 256) = 4 x 256
    assert resolve_cells(1000, 1, True, False, "2025-12") == (1024, 1024)
    # unified: 3 sequences share the one padded stream
    assert resolve_cells(1024, 3, True, True, "2025-12") == (1024, 1024)


def test_per_stream_rounding_grows_the_total():
    # 1024 / 3 = 341 (integer division) -> GGML_PAD(341, 256) = 512 per stream -> 3 x 512 = 1536
    assert resolve_cells(1024, 3, False, True, "2025-12") == (1536, 512)
    # 4 streams: 1024 / 4 = 256, already a multiple of 256 -> 1024 cells
    assert resolve_cells(1024, 4, False, True, "2025-12") == (1024, 256)


def test_old_builds_pad_by_32_without_flash_attention():
    # 30016 = 938 x 32 was accepted as is without FA (#13661); with FA GGML_PAD(30016, 256) = 118 x 256
    assert resolve_cells(30016, 1, True, False, "2025-02") == (30016, 30016)
    assert resolve_cells(30016, 1, True, True, "2025-02") == (30208, 30208)
    # one cache for all sequences before the per-sequence streams
    assert resolve_cells(1000, 3, True, False, "2025-02") == (1024, 1024)


def test_streams_era_rounds_each_stream_up():
    # Aug-Nov 2025: ceil(1000 / 3) = 334 -> GGML_PAD(334, 32) = 352 per stream -> 1056 cells
    assert resolve_cells(1000, 3, False, False, "2025-09") == (1056, 352)
    # the same request in Dec 2025: GGML_PAD(1000, 256) = 1024 -> 1024 // 3 = 341 -> 512 -> 1536
    assert resolve_cells(1000, 3, False, False, "2025-12") == (1536, 512)


def test_too_many_sequences_leave_no_cells():
    with pytest.raises(OptionsError, match="n_ctx_seq"):
        resolve_cells(256, 512, False, True, "2025-12")


# ---- types and rows ---------------------------------------------------------------------------
def test_row_bytes_with_block_scales():
    # 8 KV heads x 128 = 1024 elements: f16 2 B each; q8_0 32 blocks of 34 B; q4_0 32 blocks of 18 B
    assert F16.row_bytes(1024) == 2048
    assert Q8.row_bytes(1024) == 32 * 34 == 1088
    assert Q4.row_bytes(1024) == 32 * 18 == 576
    assert GGML_TYPES["q5_1"].row_bytes(64) == 2 * 24
    assert GGML_TYPES["q4_k"].row_bytes(4096) == 16 * 144


def test_block_table_matches_the_gguf_package():
    from gguf.constants import GGML_QUANT_SIZES
    for t, (block, size) in GGML_QUANT_SIZES.items():
        name = t.name.lower()
        if name in GGML_TYPES and name != "q8_1":   # gguf-py's q8_1 (40 B) predates the f16 d/s pair
            assert (GGML_TYPES[name].block, GGML_TYPES[name].size) == (block, size), name
    assert GGML_TYPES["q8_1"].size == 2 + 2 + 32


def test_cache_types_are_llamas_nine():
    assert set(KV_CACHE_TYPES) == {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1"}
    with pytest.raises(OptionsError, match="unsupported cache type 'q4_k'"):
        kv_cache_type("q4_k", "type_k")


def test_quantized_cache_refuses_a_head_dim_not_whole_blocks():
    m = spec([Layer(FULL, 32, 80, 80, 32)] * 2)   # phi-2: head dim 80 = 2.5 q8_0 blocks
    with pytest.raises(OptionsError, match="block size 32 does not divide n_embd_head_k=80"):
        memory_module(m, cp(4096, tk=Q8))
    memory_module(m, cp(4096))   # f16 is fine


def test_quantized_v_needs_flash_attention():
    m = spec([Layer(FULL, 8, 128, 128, 32)] * 2)
    with pytest.raises(OptionsError, match="flash_attn"):
        memory_module(m, cp(4096, fa=False, tv=Q8))


def test_plain_cache_bytes():
    # Llama-3.1-8B shape: 32 layers x 8 KV heads x 128, f16, 8192 cells:
    # K = 32 x 1024 x 2 B x 8192 = 512 MiB, V the same
    m = spec([Layer(FULL, 8, 128, 128, 32)] * 32)
    (kv,) = memory_module(m, cp(8192))
    assert (kv.cells, len(kv.rows), kv.k_bytes, kv.v_bytes) == (8192, 32, 512 * MiB, 512 * MiB)
    (q8,) = memory_module(m, cp(8192, tk=Q8, tv=Q8))
    assert q8.k_bytes == 32 * 1088 * 8192 == 272 * MiB


def test_v_padded_to_widest_without_flash_attention():
    layers = [Layer(FULL, 8, 128, 128, 32), Layer(FULL, 4, 256, 256, 32)]   # V widths 1024 and 1024
    m = spec(layers + [Layer(FULL, 2, 128, 128, 32)])                     # and one of 256
    (kv,) = memory_module(m, cp(256, fa=False))
    assert [v for _, _, v in kv.rows] == [1024, 1024, 1024]
    (kv,) = memory_module(m, cp(256, fa=True))
    assert [v for _, _, v in kv.rows] == [1024, 1024, 256]


# ---- SWA --------------------------------------------------------------------------------------
def gemma3_270m() -> ModelSpec:
    # 18 layers, every 6th global (set_swa_pattern(6)), window 512, 1 KV head of 256
    layers = [Layer(FULL if i % 6 == 5 else SLIDING, 1, 256, 256, 4, window=None if i % 6 == 5 else 512)
              for i in range(18)]
    return spec(layers, model_type="gemma3_text")


def test_swa_cache_three_streams():
    # unsloth #7530: -c 1024 -np 3 -> 512 cells per stream; SWA min(512, 512 + 512) = 512
    m = gemma3_270m()
    base, swa = memory_module(m, cp(1024, 3))
    assert (base.cells, base.n_stream, len(base.rows)) == (512, 3, 3)
    assert (swa.cells, swa.n_stream, len(swa.rows)) == (512, 3, 15)
    # 18 layers x 1536 cells x (256 + 256) x 2 B = 27 MiB, as the maintainer measured
    assert base.total + swa.total == 18 * 1536 * 1024 == 27 * MiB


def test_swa_size_with_the_server_default():
    # llama-server's np = 4, unified: GGML_PAD(min(32768, 512 x 4 + 512), 256) = 2560
    c = cp(32768, 4, unified=True)
    assert swa_cells(c, 512) == 2560
    assert swa_cells(cp(32768, 4, unified=True, swa_full=True), 512) == 32768
    # a window that does not end on 256: 1000 + 512 = 1512 -> 1536
    assert swa_cells(cp(32768), 1000) == 1536
    # before Nov 2025 the padding was inside the min and by 32 without FA: min(32768, GGML_PAD(1512, 32))
    assert swa_cells(cp(32768, fa=False, era="2025-09"), 1000) == 1536
    assert swa_cells(cp(1504, fa=False, era="2025-09"), 1000) == 1504


def test_swa_part_stays_f16_since_april_2026():
    m = gemma3_270m()
    base, swa = memory_module(m, cp(4096, tk=Q8, tv=Q8, era="2026-04"))
    assert (base.type_k.name, swa.type_k.name) == ("q8_0", "f16")
    base, swa = memory_module(m, cp(4096, tk=Q8, tv=Q8, era="2026-03"))
    assert swa.type_k.name == "q8_0"


def test_no_separate_swa_cache_before_may_2025():
    (kv,) = memory_module(gemma3_270m(), cp(4096, fa=False, era="2025-04"))
    assert (kv.cells, len(kv.rows)) == (4096, 18)


def test_phi3_window_is_ignored_and_unknown_arch_refused():
    layers = [Layer(SLIDING, 32, 96, 96, 32, window=2047)] * 4
    (kv,) = memory_module(spec(layers, model_type="phi3"), cp(4096))
    assert kv.cells == 4096 and len(kv.rows) == 4
    with pytest.raises(ModelError, match="sliding window"):
        memory_module(spec(layers, model_type="somethingnew"), cp(4096))


# ---- MLA ----------------------------------------------------------------------------------------
def deepseek_r1(n=61) -> ModelSpec:
    return spec([Layer(MLA, 128, 192, 128, 128, kv_lora_rank=512, qk_rope_head_dim=64)] * n, model_type="deepseek_v3")


@pytest.mark.parametrize("era, gguf_mla, per_token", [
    ("2025-06", True, (576 + 512) * 2),      # K 576 + V 512, f16: 2176 B per layer per token
    ("2026-02", True, 576 * 2),              # V-less: K only (PR #19067)
    ("2025-06", False, (128 * 192 + 128 * 128) * 2),   # pre-MLA GGUF: 81920 B, 47x larger
])
def test_mla_layouts(era, gguf_mla, per_token):
    (kv,) = memory_module(deepseek_r1(), cp(32768, era=era, gguf_mla=gguf_mla))
    assert kv.total == per_token * 61 * 32768
    # DeepSeek-R1 @ 32k: 4.05 GiB, 2.14 GiB, 152.5 GiB (research §2.7)
    assert round(kv.total / (1 << 30), 2) == {2176: 4.05, 1152: 2.14, 81920: 152.5}[per_token]


def test_mla_latent_in_q8_0_is_the_ik_fork_number():
    # 576 / 32 = 18 blocks x 34 B = 612 B per layer per cell; x 61 x 32768 = 1166.625 MiB,
    # which "%.2f" prints 1166.62 (ik_llama.cpp #259)
    (kv,) = memory_module(deepseek_r1(), cp(32768, tk=Q8, era="2025-03", mla_v_less=True))
    assert kv.total == 612 * 61 * 32768
    assert log_mib(kv.total) == 1166.62


# ---- sharing, MTP, recurrent ------------------------------------------------------------------
def test_gemma3n_shared_layers_and_mtp_hold_no_kv():
    own = [Layer(FULL, 2, 256, 256, 8)] * 20
    shared = [Layer(FULL, 2, 256, 256, 8, kv_source=19)] * 10
    (kv,) = memory_module(spec(own + shared), cp(4096))
    assert len(kv.rows) == 20
    mtp = [Layer(FULL, 2, 256, 256, 8, is_mtp=True)]
    (kv,) = memory_module(spec(own + mtp), cp(4096))
    assert len(kv.rows) == 20


def qwen35_like(n_rec=48, n_attn=16) -> ModelSpec:
    # gated delta net: conv state 3 x (6144 + 2 x 16 x 128), SSM state 128 x 6144 (48 value heads x 128)
    state = (StateTensor("conv", (3, 6144 + 2 * 16 * 128)), StateTensor("ssm", (48, 128, 128)))
    layers = []
    for i in range(n_rec + n_attn):
        layers.append(Layer(FULL, 4, 256, 256, 24) if i % 4 == 3 else Layer(RECURRENT, state=state))
    return spec(layers, model_type="qwen3_next")


def test_recurrent_state_is_f32_per_sequence():
    # PR #23792, 2 sequences: S = 48 x 2 x 128 x 6144 x 4 B = 288 MiB; R = 48 x 2 x 3 x 10240 x 4 B = 11.25 MiB
    kv, rs = memory_module(qwen35_like(), cp(4096, 2, unified=True))
    assert rs.cells == 2 and rs.type_k.name == "f32"
    assert rs.v_bytes == 288 * MiB
    assert rs.k_bytes == 48 * 2 * 3 * 10240 * 4 == int(11.25 * MiB)
    # independent of n_ctx
    assert memory_module(qwen35_like(), cp(65536, 2, unified=True))[1].total == rs.total
    # the attention layers: 16 x 4 heads x 256 x 2 (K, V) x 2 B = 64 KiB per cell
    assert kv.total == 16 * 4 * 256 * 2 * 2 * 4096


def test_hybrid_attention_cache_follows_the_dec_2025_source():
    # create_memory passes cparams.n_ctx (not n_ctx_seq) to the hybrid's attention cache,
    # so per-sequence streams each get the whole n_ctx
    kv, _ = memory_module(qwen35_like(), cp(4096, 2, unified=False))
    assert (kv.cells, kv.n_stream) == (4096, 2)


def test_log_mib_prints_like_llama_cpp():
    assert log_mib(27 * MiB) == 27.0
    assert log_mib(1223295590) == round(1223295590 / MiB, 2)


def test_file_types():
    assert file_type("MOSTLY_Q4_K_M").name == "Q4_K_M"
    assert file_type("f16").exact
    with pytest.raises(OptionsError, match="unknown GGUF file type"):
        file_type("Q9_K")


def test_builds_before_april_2025_cache_mla_per_head():
    (kv,) = memory_module(deepseek_r1(2), cp(4096, era="2025-03"))
    assert kv.total == (128 * 192 + 128 * 128) * 2 * 2 * 4096


def test_mtp_blocks_are_layers_only_where_the_gguf_keeps_them():
    from kvcap.engines.llamacpp_kv import n_layer
    layers = [Layer(FULL, 8, 128, 128, 32)] * 4 + [Layer(FULL, 8, 128, 128, 32, is_mtp=True)]
    assert n_layer(spec(layers, model_type="glm4_moe")) == 5      # GLM-4.5: blk.N includes the NextN block
    assert n_layer(spec(layers, model_type="deepseek_v3")) == 4   # DeepSeek's converter drops it
