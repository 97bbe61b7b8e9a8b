"""vLLM page sizes, groups and the logged numbers, one hand-worked example per layer kind."""

from __future__ import annotations

import pytest

from kvcap.engines.vllm_era import era
from kvcap.engines.vllm_layers import LayerSetup, layer_specs, resolve_block_size
from kvcap.engines.vllm_pages import (FULL, MAMBA, SLIDING, blocks_per_request, estimate_max_model_len,
                                      group_layers, max_memory_per_request, num_blocks, pp_partition, report)
from kvcap.errors import OptionsError
from kvcap.model.spec import FULL as M_FULL, MLA as M_MLA, RECURRENT, SLIDING as M_SLIDING
from kvcap.model.spec import Layer, ModelSpec, StateTensor

GiB = 1 << 30


def model(layers, heads=32, dtype="bfloat16") -> ModelSpec:
    return ModelSpec(name="t", model_type="t", source="test", hidden_size=4096, num_hidden_layers=len(layers),
                     num_attention_heads=heads, num_key_value_heads=8, head_dim=128, vocab_size=32000,
                     intermediate_size=11008, context_window=131072, dtype=dtype, tie_word_embeddings=False,
                     layers=tuple(layers), tensors=())


def setup(version="0.11.0", tp=1, block=16, kv="auto", hybrid=True, backend="FLASHMLA") -> LayerSetup:
    return LayerSetup(tp=tp, block_size=block, kv_cache_dtype=kv, model_dtype_bytes=2, hybrid_allocator=hybrid,
                      mla_backend=backend, era=era(version))


def full(kv=8, d=128) -> Layer:
    return Layer(M_FULL, num_kv_heads=kv, head_dim_k=d, head_dim_v=d, num_q_heads=32)


def layout_of(m, s):
    return group_layers(layer_specs(m, s), s.era)


def test_full_attention_llama3_8b():
    # 32 layers x 8 KV heads x (128 + 128) x 2 B = 4096 B a token a layer; 16-token pages of 64 KiB;
    # one block index across the 32 layers costs 2 MiB, so 10 GiB hold 5120 blocks = 81920 tokens.
    lay = layout_of(model([full()] * 32), setup())
    assert lay.mode == "uniform" and lay.page == 16 * 4096 == 65536
    assert lay.bytes_per_block == 65536 * 32 == 2 * 1024 * 1024
    blocks = num_blocks(10 * GiB, lay)
    assert blocks == 5120
    tokens, conc = report(lay, blocks, 8192, 2048, era("0.11.0"))
    assert tokens == 5120 * 16 and conc == 5120 / (8192 // 16)
    # The fit check's need: ceil(8192 / 16) pages x 64 KiB x 32 layers = 1 GiB.
    assert max_memory_per_request(lay, 8192, 2048, "layers") == 512 * 65536 * 32 == GiB


def test_fp8_halves_the_page():
    lay = layout_of(model([full()] * 32), setup(kv="fp8"))
    assert lay.page == 16 * 8 * 256 * 1


def test_tensor_parallel_divides_then_replicates_kv_heads():
    # 8 KV heads: TP=2 keeps 4 a rank; TP=8 and TP=16 both keep one (vLLM replicates).
    per_token = {tp: layout_of(model([full()] * 32), setup(tp=tp)).page // 16 for tp in (1, 2, 8, 16)}
    assert per_token == {1: 8 * 256 * 2, 2: 4 * 256 * 2, 8: 1 * 256 * 2, 16: 1 * 256 * 2}


def gpt_oss_like():
    # 24 layers alternating a 128-token sliding window and full attention; 8 KV heads of 64.
    sl = Layer(M_SLIDING, num_kv_heads=8, head_dim_k=64, head_dim_v=64, num_q_heads=64, window=128)
    fl = Layer(M_FULL, num_kv_heads=8, head_dim_k=64, head_dim_v=64, num_q_heads=64)
    return model([sl, fl] * 12, heads=64)


def test_sliding_window_with_hybrid_allocator():
    lay = layout_of(gpt_oss_like(), setup())
    # Page: 16 x 8 x 128 x 2 = 32 KiB for both kinds; 12 + 12 layers -> 2 groups of 12 sharing
    # 12 pools, so a block index costs 12 pages.
    assert lay.mode == "hybrid" and len(lay.groups) == 2 and lay.group_size == 12
    assert {g.spec.kind for g in lay.groups} == {SLIDING, FULL}
    assert lay.page == 32768 and lay.bytes_per_block == 32768 * 12
    blocks = num_blocks(GiB, lay)
    assert blocks == GiB // (32768 * 12) == 2730
    # One 8192-token request: full 8192/16 = 512 pages; sliding min(127 + 2048, 8192) = 2175
    # tokens -> ceil(2175/16) + 1 = 137 pages; 649 pages a request.
    assert blocks_per_request(lay, 8192, 2048) == 512 + 137
    tokens, conc = report(lay, blocks, 8192, 2048, era("0.11.0"))
    assert tokens == 2730 // 2 * 16 == 21840        # 0.9-0.20: num_blocks // groups x block
    assert conc == pytest.approx(2730 / 649)
    tokens21, _ = report(lay, blocks, 8192, 2048, era("0.21.0"))
    assert tokens21 == int(2730 / 649 * 8192)        # 0.21+: concurrency x max_model_len


def test_sliding_window_stored_full_without_hybrid_allocator():
    lay = layout_of(gpt_oss_like(), setup(hybrid=False))
    assert lay.mode == "uniform" and lay.bytes_per_block == 32768 * 24
    blocks = num_blocks(GiB, lay)
    assert blocks == 1365
    assert report(lay, blocks, 8192, 2048, era("0.11.0")) == (1365 * 16, 1365 / 512)


def deepseek_v2_lite():
    mla = Layer(M_MLA, num_kv_heads=16, head_dim_k=192, head_dim_v=128, num_q_heads=16, kv_lora_rank=512,
                qk_rope_head_dim=64)
    return model([mla] * 27, heads=16)


def test_mla_latent_block_64_and_the_case_15871_need():
    s = setup(version="0.8.3", tp=2)
    assert resolve_block_size(deepseek_v2_lite(), s) == 64          # FlashMLA forces 64
    lay = layout_of(deepseek_v2_lite(), s)
    # One latent of 512 + 64 at 2 B, whole on every TP rank: 1152 B a token a layer.
    assert lay.page == 64 * 1152
    need = max_memory_per_request(lay, 32768, 8192, "layers")
    assert need == 32768 * 27 * 1152 == 1_019_215_872               # vLLM printed "0.95 GiB"
    assert f"{need / GiB:.2f}" == "0.95"
    # With the logged 0.93 GiB the longest request that fits is 501 blocks of 64 tokens.
    est = estimate_max_model_len(lambda n: max_memory_per_request(lay, n, 8192, "layers"), 998_579_896, 32768)
    assert est == (998_579_896 // (64 * 1152 * 27)) * 64 == 32064


def test_mla_block_by_backend():
    assert resolve_block_size(deepseek_v2_lite(), setup(backend="CUTLASS_MLA")) == 128
    assert resolve_block_size(deepseek_v2_lite(), setup(backend="TRITON_MLA", block=16)) == 16
    assert layout_of(deepseek_v2_lite(), setup(kv="fp8_ds_mla")).page == 64 * 656


def qwen35_27b():
    # 64 layers: every 4th full attention (4 KV heads of 256), the rest Gated DeltaNet with a
    # bf16 conv state (128*16*2 + 128*48 = 10240 channels x 3) and an fp32 state (48 x 128 x 128).
    attn = Layer(M_FULL, num_kv_heads=4, head_dim_k=256, head_dim_v=256, num_q_heads=24)
    gdn = Layer(RECURRENT, state=(StateTensor("conv", (10240, 3)), StateTensor("ssm", (48, 128, 128), "float32")))
    return model(([gdn] * 3 + [attn]) * 16, heads=24)


def test_mamba_hybrid_block_size_and_case_40691_lines():
    s = setup(version="0.19.0")
    mamba = 10240 * 3 * 2 + 48 * 128 * 128 * 4                      # 3,207,168 B a sequence a layer
    assert mamba == 3_207_168
    # Attention: 4 x 512 x 2 = 4096 B a token; the block is raised to 16 x ceil(mamba / (16 x 4096)).
    assert resolve_block_size(qwen35_27b(), s) == 16 * 49 == 784
    lay = layout_of(qwen35_27b(), s)
    assert lay.page == 784 * 4096 == 3_211_264                       # mamba page padded up to it
    assert all(spec.page_size_bytes == lay.page for spec in lay.specs.values())
    # 16 attention + 48 mamba layers: groups of 16 -> 1 + 3 groups, 16 pools.
    assert len(lay.groups) == 4 and lay.group_size == 16
    assert sorted(g.spec.kind for g in lay.groups) == [FULL, MAMBA, MAMBA, MAMBA]
    # vllm#40691 logged 290,864 tokens and 33.04x at 32,768: that is 1487 blocks.
    blocks = num_blocks(1487 * lay.bytes_per_block + lay.bytes_per_block - 1, lay)
    assert blocks == 1487
    tokens, conc = report(lay, blocks, 32768, 16384, era("0.19.0"))
    assert tokens == 1487 // 4 * 784 == 290_864
    assert blocks_per_request(lay, 32768, 16384) == 42 + 3            # ceil(32768/784) + one per mamba group
    assert f"{conc:.2f}" == "33.04"


def test_recurrent_needs_a_hybrid_era():
    with pytest.raises(OptionsError, match="0.10.1"):
        layer_specs(qwen35_27b(), setup(version="0.9.2"))


def test_group_size_rule_changed_in_0_18():
    layers = [full()] * 10 + [Layer(M_SLIDING, num_kv_heads=8, head_dim_k=128, head_dim_v=128, window=4096)] * 14
    old = layout_of(model(layers), setup(version="0.17.0"))
    new = layout_of(model(layers), setup(version="0.18.0"))
    # 0.17: groups of the smaller count (10): 1 full + 2 sliding groups of 7.
    assert [len(g.layers) for g in old.groups] == [10, 7, 7] and old.group_size == 10
    # 0.18: 14 < 1.5 x 10, so groups of 14: the full group is padded.
    assert [len(g.layers) for g in new.groups] == [10, 14] and new.group_size == 14


def test_uniform_type_when_pages_differ():
    lay = layout_of(model([full(kv=8)] * 2 + [full(kv=4)] * 2), setup(version="0.11.0"))
    assert lay.mode == "uniform_type"
    assert lay.bytes_per_block == 16 * (2 * 8 * 256 * 2 + 2 * 4 * 256 * 2)
    with pytest.raises(OptionsError, match="0.11"):
        layout_of(model([full(kv=8)] * 2 + [full(kv=4)] * 2), setup(version="0.10.1"))


def test_pipeline_partition_gives_extra_layers_before_the_last_stage():
    assert [len(r) for r in pp_partition(33, 2)] == [17, 16]
    assert [len(r) for r in pp_partition(62, 4)] == [15, 16, 16, 15]
    assert [len(r) for r in pp_partition(32, 2, [20, 12])] == [20, 12]
    with pytest.raises(OptionsError):
        pp_partition(32, 2, [20, 13])


def test_pipeline_stage_with_more_layers_gets_fewer_blocks():
    lay = layout_of(model([full()] * 33), setup())
    stages = [lay.project(set(r)) for r in pp_partition(33, 2)]
    blocks = [num_blocks(4 * GiB, s) for s in stages]
    assert blocks == [4 * GiB // (65536 * 17), 4 * GiB // (65536 * 16)]
    assert min(blocks) == blocks[0]


def test_chunked_local_attention_llama4_pattern():
    # Llama-4-like: three 8192-token chunked-local layers to one full layer, 48 layers, 8 KV heads.
    local = Layer("chunked", num_kv_heads=8, head_dim_k=128, head_dim_v=128, num_q_heads=40, window=8192)
    lay = layout_of(model(([local] * 3 + [full()]) * 12, heads=40), setup(version="0.11.0"))
    # 36 local + 12 full layers: groups of 12 -> 3 local groups + 1 full, 12 pools of 64 KiB pages.
    assert len(lay.groups) == 4 and lay.group_size == 12 and lay.bytes_per_block == 65536 * 12
    # At 131072 tokens and 8192 batched: full 8192 pages; each local group
    # ceil(min(8192 + 8192, 131072) / 16) = 1024 pages.
    assert blocks_per_request(lay, 131072, 8192) == 8192 + 3 * 1024
    blocks = num_blocks(100 * GiB, lay)
    tokens, conc = report(lay, blocks, 131072, 8192, era("0.21.0"))
    assert conc == blocks / (8192 + 3 * 1024) and tokens == int(conc * 131072)
    # Without the hybrid manager every layer pays for the whole request.
    flat = layout_of(model(([local] * 3 + [full()]) * 12, heads=40), setup(version="0.11.0", hybrid=False))
    assert flat.mode == "uniform" and blocks_per_request(flat, 131072, 8192) == 8192


def test_mamba_cache_mode_align_keeps_two_states():
    s = LayerSetup(tp=1, block_size=16, kv_cache_dtype="auto", model_dtype_bytes=2, hybrid_allocator=True,
                   mla_backend="FLASHMLA", era=era("0.19.0"), mamba_cache_mode="align")
    lay = layout_of(qwen35_27b(), s)
    # 42 attention pages + 2 pages for each of the 3 mamba groups.
    assert blocks_per_request(lay, 32768, 16384) == 42 + 3 * 2
