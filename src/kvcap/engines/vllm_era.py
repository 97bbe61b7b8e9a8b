"""Which vLLM rules apply at which version.

vLLM changed its KV-cache sizing many times; `--set engine_version=0.11.0` picks the rules of
that release. Every boundary below was read in the released wheels (pip download --no-deps,
read only) unless its comment says it comes from the research notes
(../shared/research/vllm.md) alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import OptionsError

# The newest release whose rules kvcap encodes and whose source was read for them.
DEFAULT_VERSION = "0.21.0"
# Oldest and newest releases kvcap models. Before 0.6.4 the V0 profiler measured memory in ways
# (torch.cuda.max_memory_allocated only, or mem_get_info without empty_cache) that the
# estimate here does not reproduce; after 0.33 nothing has been read.
OLDEST = (0, 6, 4)
NEWEST = (0, 33, 99)

_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


def parse_version(text: str) -> tuple[int, int, int]:
    """'0.11.0' -> (0, 11, 0); '~0.7.x' -> (0, 7, 0); '~0.9.2/0.10.0' -> (0, 9, 2) (the first named)."""
    m = _VERSION.search(str(text))
    if not m:
        raise OptionsError(f"engine_version {text!r} is not a vLLM version: write e.g. 0.11.0")
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


@dataclass(frozen=True)
class Era:
    """The rules of one vLLM release, as booleans and small values."""

    version: tuple[int, int, int]
    text: str

    def at_least(self, *v: int) -> bool:
        return self.version >= tuple(v) + (0,) * (3 - len(v))

    @property
    def v1(self) -> bool:
        # V1 is the default engine from 0.8.0 (engine/arg_utils.py: _is_v1_supported_oracle);
        # V0's code was removed in 0.11.0.
        return self.at_least(0, 8)

    @property
    def engine(self) -> str:
        return "V1" if self.v1 else "V0"

    @property
    def default_utilization(self) -> float:
        # config/cache.py: CacheConfig.gpu_memory_utilization = Field(default=0.92) from 0.20.0.
        return 0.92 if self.at_least(0, 20) else 0.90

    @property
    def cudagraph_estimate_default(self) -> bool:
        # envs.py: VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS, added in 0.18.0 off, True in the
        # 0.20.0 wheel; before 0.18 graphs were captured after the KV cache and not budgeted.
        return self.at_least(0, 20)

    @property
    def cudagraph_estimate_exists(self) -> bool:
        return self.at_least(0, 18)

    @property
    def hybrid_allocator(self) -> bool:
        # The hybrid KV cache manager (sliding/local/mamba groups) is in 0.9.2, absent in 0.8.5,
        # where sliding-window layers were always stored as full attention.
        return self.at_least(0, 9)

    @property
    def mamba_hybrid(self) -> bool:
        # model_executor/models/config.py: HybridAttentionMambaModelConfig (present in 0.10.1.1).
        return self.at_least(0, 10, 1)

    @property
    def uniform_type_specs(self) -> bool:
        # v1/kv_cache_interface.py: UniformTypeKVCacheSpecs appears in 0.11.0.
        return self.at_least(0, 11)

    @property
    def unify_page_size(self) -> bool:
        # v1/core/kv_cache_utils.py: unify_kv_cache_spec_page_size appears in 0.14.0.
        return self.at_least(0, 14)

    @property
    def group_size_rule(self) -> str:
        # _get_kv_cache_groups_uniform_page_size: from 0.18 the largest per-type layer count is
        # the group size when it is below 1.5 x the smallest ("min_or_close_max").
        return "min_or_close_max" if self.at_least(0, 18) else "min"

    @property
    def needed_memory_rule(self) -> str:
        """How the 'enough memory for one request' check sums the need.

        'layers' (<= 0.13): per worker, the sum over that worker's layer specs;
        'global_groups' (0.14-0.16): the whole model's groups with padding against the smallest
        worker's memory (the PP regression of PR #29431, fixed by PR #33698);
        'worker_groups' (>= 0.17): groups projected to each worker (_project_kv_cache_groups_to_worker).
        """
        if self.at_least(0, 17):
            return "worker_groups"
        if self.at_least(0, 14):
            return "global_groups"
        return "layers"

    @property
    def tokens_line(self) -> str:
        """How 'GPU KV cache size: N tokens' is computed (v1/core/kv_cache_utils.py)."""
        if not self.v1:
            return "v0"                  # N * block_size, N = '# GPU blocks'
        if self.at_least(0, 21):
            return "concurrency"         # _report_kv_cache_config: int(max_concurrency * max_model_len)
        if self.at_least(0, 9):
            return "groups"              # num_blocks // len(groups) * min_block_size
        return "blocks"                  # 0.8.x _get_kv_cache_config_uniform_type: num_blocks * block_size

    @property
    def concurrency_line(self) -> str:
        # 0.8.x and V0: tokens / max_model_len; 0.9+: num_blocks / blocks one request needs
        # (get_max_concurrency_for_kv_cache_config).
        return "blocks_per_request" if self.at_least(0, 9) else "tokens_over_len"

    @property
    def one_line_report(self) -> bool:
        # 'GPU KV cache size: N tokens, Maximum concurrency for ...' on one line: present in
        # 0.30.0, absent in 0.27.0 (research notes; kvcap uses 0.30 as the boundary).
        return self.at_least(0, 30)

    @property
    def null_block_in_checks(self) -> bool:
        # The fit checks reserve BlockPool's null block (avail - bytes_per_block): present in
        # 0.30.0, absent in 0.27.0 (research notes; 0.30 taken as the boundary).
        return self.at_least(0, 30)

    @property
    def models_typo(self) -> bool:
        # "the models's max seq len" through 0.21.0; "model's" from 0.22.0 (research notes).
        return not self.at_least(0, 22)

    @property
    def estimate_sentence(self) -> bool:
        # "Based on the available memory, the estimated maximum model length is W." from 0.8.5
        # (PR #16168).
        return self.at_least(0, 8, 5)

    @property
    def estimate_sentence_broken(self) -> bool:
        # 0.8.5 built the sentence from two string statements, so only " Based on the available
        # memory," reached the message (v1/core/kv_cache_utils.py: check_enough_kv_cache_memory).
        return self.version[:2] == (0, 8)

    @property
    def docs_link(self) -> bool:
        # From 0.14.0 the errors end with a link to the conserving_memory docs and print GiB
        # with utils/mem_utils.py: format_gib (round(x, 2), no trailing zeros); before, '%.2f'.
        return self.at_least(0, 14)

    @property
    def auto_fit(self) -> bool:
        # --max-model-len -1: _auto_fit_max_model_len, present from 0.14.0.
        return self.at_least(0, 14)

    @property
    def kv_cache_memory_option(self) -> bool:
        # --kv-cache-memory / kv_cache_memory_bytes: added in 0.11.0 (gpu_worker.py).
        return self.at_least(0, 11)

    @property
    def sampler(self) -> str:
        """Which top-k/top-p implementation the profile run's dummy sampler uses by default.

        'sort': a full sort of the fp32 logits (V0 sampler; V1 before 0.17 without FlashInfer,
        whose use before 0.14 depended on FlashInfer being installed, an optional extra of the
        wheel); 'triton': apply_top_k_top_p_triton for >= 8 rows (0.17-0.20,
        v1/sample/ops/topk_topp_sampler.py); 'flashinfer': VLLM_USE_FLASHINFER_SAMPLER
        defaults to True from 0.21.0.
        """
        if self.at_least(0, 21):
            return "flashinfer"
        if self.at_least(0, 17):
            return "triton"
        return "sort"

    @property
    def big_gpu_defaults_skip_a100(self) -> bool:
        # engine/arg_utils.py: _set_default_args: from 0.9 the >= 70 GiB defaults exclude A100
        # (PR #17885); 0.8.x applied them to every >= 70 GiB device.
        return self.at_least(0, 9)

    @property
    def mla_supported(self) -> bool:
        # MLA caches exist from 0.7.1 (V0 cache_engine); before, DeepSeek-V2 ran as MHA.
        return self.at_least(0, 7, 1)

    @property
    def block_sizes(self) -> tuple[int, ...] | None:
        # config/cache.py: BlockSize = Literal[...]; no literal from 0.21.
        if self.at_least(0, 21):
            return None
        if self.at_least(0, 14):
            return (1, 8, 16, 32, 64, 128, 256)
        return (1, 8, 16, 32, 64, 128)


def era(version: str | None) -> Era:
    text = DEFAULT_VERSION if version in (None, "") else str(version)
    v = parse_version(text)
    if v < OLDEST:
        raise OptionsError(
            f"vLLM {text} is older than kvcap models: its profiler (before 0.6.4) is not reproduced; "
            f"use engine_version 0.6.4 through 0.33"
        )
    if v > NEWEST:
        raise OptionsError(f"vLLM {text} is newer than kvcap has read (0.33); use engine_version <= 0.33")
    return Era(v, text)
