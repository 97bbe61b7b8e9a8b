"""Every catalog model's tensor list against an independent count.

The expected numbers were counted by building each config with transformers 5.24 on torch's
meta device (`<Arch>ForCausalLM._from_config`, the multimodal wrapper class where the config
names one) and summing its parameters; Kimi K2 was counted as DeepseekV3ForCausalLM (its
architecture), MLC's ministral3 preset as Mistral3ForConditionalGeneration, MLC's phi-msft
presets as PhiForCausalLM. transformers builds no MTP block and keeps some tensors as buffers
(DeepSeek's e_score_correction_bias, Gemma 4's layer_scalar), so those are left out here.
Models transformers cannot build (remote code only) are checked by their published sizes in
test_families*.py.
"""

import pytest

from kvcap.model import catalog, hf

BUFFERS = ("e_score_correction_bias", "layer_scalar", "std_bias", "std_scale")
COUNTED = {
    "01-ai/Yi-1.5-34B": 34_388_917_248,
    "allenai/OLMo-2-1124-7B-Instruct": 7_298_617_344,
    "deepseek-ai/DeepSeek-R1": 671_026_404_352,
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B": 32_763_876_352,
    "deepseek-ai/DeepSeek-V2-Lite": 15_706_484_224,
    "deepseek-ai/DeepSeek-V3": 671_026_404_352,
    "deepseek-ai/DeepSeek-V3.1": 671_026_404_352,
    "deepseek-ai/DeepSeek-V3.2": 671_877_929_216,
    "google/gemma-2-27b-it": 27_227_128_320,
    "google/gemma-2-2b-it": 2_614_341_888,
    "google/gemma-2-9b-it": 9_241_705_984,
    "google/gemma-3-1b-it": 999_885_952,
    "google/gemma-3-27b-it": 27_432_406_640,
    "google/gemma-4-26B-A4B": 25_805_933_872,
    "google/gemma-4-26B-A4B-it": 25_805_933_872,
    "HuggingFaceTB/SmolLM2-1.7B": 1_711_376_384,
    "ibm-granite/granite-3.3-8b-instruct": 8_170_864_640,
    "meta-llama/Llama-3.1-70B-Instruct": 70_553_706_496,
    "meta-llama/Llama-3.1-8B-Instruct": 8_030_261_248,
    "meta-llama/Llama-3.2-1B-Instruct": 1_235_814_400,
    "meta-llama/Llama-3.2-3B-Instruct": 3_212_749_824,
    "meta-llama/Llama-3.3-70B-Instruct": 70_553_706_496,
    "meta-llama/Llama-4-Maverick-17B-128E-Instruct": 401_167_027_200,
    "meta-llama/Llama-4-Scout-17B-16E-Instruct": 108_225_039_360,
    "meta-llama/Meta-Llama-3.1-405B": 405_853_388_800,
    "meta-llama/Meta-Llama-3.1-405B-Instruct-FP8": 405_853_388_800,
    "microsoft/Phi-3-mini-128k-instruct": 3_821_079_552,
    "microsoft/Phi-3-mini-4k-instruct": 3_821_079_552,
    "microsoft/Phi-3.5-mini-instruct": 3_821_079_552,
    "microsoft/Phi-3.5-MoE-instruct": 41_873_153_344,
    "microsoft/Phi-4-mini-instruct": 3_836_021_760,
    "mistralai/Mistral-7B-Instruct-v0.1": 7_241_732_096,
    "mistralai/Mistral-7B-Instruct-v0.3": 7_248_023_552,
    "mistralai/Mixtral-8x22B-Instruct-v0.1": 140_630_071_296,
    "mistralai/Mixtral-8x22B-v0.1": 140_620_634_112,
    "mistralai/Mixtral-8x7B-Instruct-v0.1": 46_702_792_704,
    "moonshotai/Kimi-K2-Instruct": 1_026_408_209_408,
    "nvidia/Nemotron-H-56B-Base-8K": 56_324_350_464,
    "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16": 31_577_937_344,
    "openai/gpt-oss-120b": 116_829_156_672,
    "openai/gpt-oss-20b": 20_914_757_184,
    "mlc:aya-23": 8_028_033_024,
    "mlc:codellama_13b": 13_016_028_160,
    "mlc:codellama_34b": 33_744_232_448,
    "mlc:codellama_7b": 6_738_546_688,
    "mlc:gemma2_27b": 27_227_128_320,
    "mlc:gemma2_2b": 2_614_341_888,
    "mlc:gemma2_2b-jpn": 2_614_341_888,
    "mlc:gemma2_9b": 9_241_705_984,
    "mlc:gemma3_1b_it": 999_885_952,
    "mlc:gemma_2b": 2_506_172_416,
    "mlc:gpt2": 124_439_808,
    "mlc:gpt2_medium": 354_823_168,
    "mlc:gpt_bigcode": 1_124_886_528,
    "mlc:gpt_j": 6_050_882_784,
    "mlc:llama2_13b": 13_015_864_320,
    "mlc:llama2_70b": 68_976_648_192,
    "mlc:llama2_7b": 6_738_415_616,
    "mlc:llama3_1_70b": 70_553_706_496,
    "mlc:llama3_1_8b": 8_030_261_248,
    "mlc:llama3_2_1b": 1_235_814_400,
    "mlc:llama3_2_3b": 3_212_749_824,
    "mlc:llava": 7_063_427_072,
    "mlc:ministral3_3b_2512": 3_849_090_048,
    "mlc:mistral_7b": 7_241_732_096,
    "mlc:mistral_7b_v03": 7_248_023_552,
    "mlc:Mixtral-8x7B-v0.1": 46_702_792_704,
    "mlc:olmo2_13b": 13_716_198_400,
    "mlc:olmo2_32b": 32_234_279_936,
    "mlc:olmo2_7b": 7_298_617_344,
    "mlc:phi-1_5": 1_418_270_720,
    "mlc:phi-2": 2_779_683_840,
    "mlc:phi-3_5": 3_821_079_552,
    "mlc:phi-4": 3_836_021_760,
    "mlc:qwen2": 1_525_663_744,
    "mlc:qwen2.5_3b": 3_085_938_688,
    "mlc:qwen2_0_5b": 494_032_768,
    "mlc:qwen2_1_5b": 1_543_714_304,
    "mlc:qwen2_7b": 7_615_616_512,
    "mlc:qwen2moe": 14_315_784_192,
    "mlc:qwen3_0.6b": 596_049_920,
    "mlc:qwen3_1.7b": 1_720_574_976,
    "mlc:redpajama_3b_v1": 2_775_864_320,
    "mlc:smollm2_135m": 134_515_008,
    "mlc:smollm2_360m": 361_821_120,
    "mlc:smollm_135m": 134_515_008,
    "mlc:smollm_1_7b": 1_711_376_384,
    "mlc:smollm_360m": 361_821_120,
    "mlc:stablelm": 2_795_443_200,
    "mlc:stablelm-2-zephyr-1_6b": 1_644_515_328,
    "mlc:starcoder2": 7_173_923_840,
    "mlc:tinyllama_1b_chat_v0.4": 1_100_060_672,
    "mlc:tinyllama_1b_chat_v1.0": 1_100_048_384,
    "Qwen/Qwen2.5-0.5B": 494_032_768,
    "Qwen/Qwen2.5-1.5B": 1_543_714_304,
    "Qwen/Qwen2.5-1.5B-Instruct": 1_543_714_304,
    "Qwen/Qwen2.5-14B": 14_770_033_664,
    "Qwen/Qwen2.5-32B": 32_763_876_352,
    "Qwen/Qwen2.5-3B": 3_085_938_688,
    "Qwen/Qwen2.5-3B-Instruct": 3_085_938_688,
    "Qwen/Qwen2.5-72B": 72_706_203_648,
    "Qwen/Qwen2.5-7B": 7_615_616_512,
    "Qwen/Qwen2.5-7B-Instruct": 7_615_616_512,
    "Qwen/Qwen3-0.6B": 596_049_920,
    "Qwen/Qwen3-1.7B": 1_720_574_976,
    "Qwen/Qwen3-14B": 14_768_307_200,
    "Qwen/Qwen3-235B-A22B": 235_093_634_560,
    "Qwen/Qwen3-30B-A3B": 30_532_122_624,
    "Qwen/Qwen3-32B": 32_762_123_264,
    "Qwen/Qwen3-4B": 4_022_468_096,
    "Qwen/Qwen3-8B": 8_190_735_360,
    "Qwen/Qwen3-Coder-480B-A35B-Instruct": 480_154_875_392,
    "Qwen/Qwen3-Next-80B-A3B-Thinking": 79_674_391_296,
    "Qwen/Qwen3.5-122B-A10B": 122_562_817_776,
    "Qwen/Qwen3.5-27B": 27_356_728_560,
    "Qwen/Qwen3.5-35B-A3B": 35_107_181_936,
    "Qwen/Qwen3.5-397B-A17B": 396_802_360_816,
    "Qwen/Qwen3.6-35B-A3B": 35_107_181_936,
}


def _entry(key):
    source, name = ("mlc-preset", key[4:]) if key.startswith("mlc:") else ("hf", key)
    return next(e for e in catalog.entries() if e.source == source and e.key == name)


@pytest.mark.parametrize("key", sorted(COUNTED))
def test_parameter_count_matches_transformers(key):
    e = _entry(key)
    spec = hf.from_config(e.config(), e.key, "test")
    params = sum(t.numel for t in spec.tensors if t.part != "mtp" and not t.name.endswith(BUFFERS))
    assert params == COUNTED[key]


def test_deepseek_v3_with_its_mtp_block_is_the_published_685b():
    spec = hf.from_config(_entry("deepseek-ai/DeepSeek-V3").config(), "v3", "test")
    mtp = sum(t.numel for t in spec.tensors if t.part == "mtp")
    # one MTP block: a full MoE decoder layer plus its embedding, head, eh_proj and norms
    h, vocab = 7168, 129280
    layer_attn = 7168 * 1536 + 1536 + 1536 * 128 * 192 + 7168 * 576 + 512 + 512 * 128 * 256 + 128 * 128 * 7168
    layer_moe = 256 * 3 * 7168 * 2048 + 3 * 7168 * 2048 + 256 * 7168 + 256
    wrapper = 2 * vocab * h + 3 * h + 2 * h * h
    assert mtp == layer_attn + layer_moe + 2 * h + wrapper
    assert round(spec.num_params / 1e9) == 684
