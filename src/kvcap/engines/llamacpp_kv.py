"""llama.cpp's memory module: how many cells each cache gets and what a cell costs, per layer.

Pure arithmetic on a ModelSpec and llama.cpp's resolved context parameters (`Cparams`); no
device, no defaults. Everything here follows the source of `ec98e2002` (Dec 2025, vendored in
Ollama v0.24) unless an era rule (llamacpp_era.RULES) says the builds of the time did otherwise.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import ModelError, OptionsError
from ..model.spec import CHUNKED, FULL, MLA, RECURRENT, SLIDING, Layer, ModelSpec
from .llamacpp_era import has
from .llamacpp_types import GGML_TYPES, GgmlType

F32 = GGML_TYPES["f32"]
F16 = GGML_TYPES["f16"]

# How each architecture's load_hparams treats a sliding window (src/llama-model.cpp,
# llama_model::load_hparams: swa_type / set_swa_pattern per LLM_ARCH_*), keyed by HF model_type.
# "swa": a separate, smaller cache for the sliding layers; "full": llama.cpp ignores the window
# and caches every token (PHI3 sets swa_type NONE; LLAMA/QWEN2/... never read the key).
SWA_ARCH: dict[str, str] = {
    **dict.fromkeys(("gemma2", "gemma3", "gemma3_text", "gemma3n", "gemma3n_text", "gemma4", "gemma4_text",
                     "cohere2", "gpt_oss", "olmo2", "olmo3", "exaone4", "afmoe", "smallthinker",
                     "llama4", "llama4_text"), "swa"),
    **dict.fromkeys(("phi3", "phi3_v", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe",
                     "starcoder2"), "full"),
}
_ATTENTION = (FULL, SLIDING, CHUNKED, MLA)


@dataclass(frozen=True)
class Cparams:
    """llama.cpp's context parameters after its own defaulting (llama_cparams + memory params)."""

    n_ctx: int              # cparams.n_ctx: total cells after padding / per-sequence rounding
    n_ctx_seq: int          # cells one sequence may use
    n_seq_max: int
    kv_unified: bool
    n_ubatch: int
    flash_attn: bool
    type_k: GgmlType
    type_v: GgmlType
    swa_full: bool
    era: str
    gguf_mla: bool = True   # the GGUF carries the MLA keys (converted after PR #12801, Apr 2025)
    mla_v_less: bool | None = None  # None: as the era says (PR #19067)
    offload_kqv: bool = True

    @property
    def n_stream(self) -> int:
        return 1 if self.kv_unified else self.n_seq_max

    @property
    def mla_latent(self) -> bool:
        """MLA layers cache the latent (an MLA GGUF on a build that reads it, or a fork's latent layout)."""
        return self.gguf_mla and (has(self.era, "mla_cache") or self.mla_v_less is True)

    @property
    def v_less(self) -> bool:
        return has(self.era, "mla_v_less") if self.mla_v_less is None else self.mla_v_less


@dataclass(frozen=True)
class Cache:
    """One cache object: a llama_kv_cache (kind "kv" / "kv_swa") or the recurrent state ("rs")."""

    kind: str
    cells: int                               # kv_size per stream as the log prints it (RS: mem_size)
    n_stream: int
    type_k: GgmlType                         # RS: type_r
    type_v: GgmlType                         # RS: type_s
    rows: tuple[tuple[int, int, int], ...]   # (layer index, K width, V width); RS: (il, n_embd_r, n_embd_s)

    def layer_bytes(self, il: int) -> int:
        return sum(b for i, b in self.per_layer() if i == il)

    def per_layer(self) -> tuple[tuple[int, int], ...]:
        """(layer index, bytes) of every row."""
        return tuple((il, self._k(k) + self._v(v)) for il, k, v in self.rows)

    def _k(self, width: int) -> int:
        return self.type_k.row_bytes(width) * self.cells * self.n_stream

    def _v(self, width: int) -> int:
        return self.type_v.row_bytes(width) * self.cells * self.n_stream

    @property
    def k_bytes(self) -> int:
        return sum(self._k(k) for _, k, _ in self.rows)

    @property
    def v_bytes(self) -> int:
        return sum(self._v(v) for _, _, v in self.rows)

    @property
    def total(self) -> int:
        return self.k_bytes + self.v_bytes

    @property
    def layers(self) -> tuple[int, ...]:
        return tuple(il for il, _, _ in self.rows)


def pad(n: int, to: int) -> int:
    """GGML_PAD."""
    return (n + to - 1) // to * to


def log_mib(nbytes: int) -> float:
    """A size as llama.cpp prints it: `(float) bytes / (1024.0f*1024.0f)` with %.2f."""
    f32 = struct.unpack("f", struct.pack("f", float(nbytes)))[0]
    mib = struct.unpack("f", struct.pack("f", f32 / 1048576.0))[0]
    return float(f"{mib:.2f}")


# ---- n_ctx ------------------------------------------------------------------------------------
def kv_padding(flash_attn: bool) -> int:
    # src/llama-kv-cache.cpp llama_kv_cache::get_padding (until Nov 2025): FA kernels need 256.
    return 256 if flash_attn else 32


def resolve_cells(n_ctx: int, n_seq_max: int, kv_unified: bool, flash_attn: bool, era: str) -> tuple[int, int]:
    """(cparams.n_ctx, n_ctx_seq) from the requested n_ctx, the way builds of `era` round it."""
    if n_ctx < 1 or n_seq_max < 1:
        raise OptionsError("n_ctx and n_seq_max must be positive")
    if has(era, "pad_256"):
        # src/llama-context.cpp llama_context::llama_context (ec98e2002)
        n_ctx = pad(n_ctx, 256)
        if kv_unified:
            return n_ctx, n_ctx
        n_ctx_seq = pad(n_ctx // n_seq_max, 256)
        if n_ctx_seq == 0:
            raise OptionsError(f"n_ctx {n_ctx} / n_seq_max {n_seq_max} leaves no cells per sequence (llama.cpp: n_ctx_seq == 0)")
        return n_ctx_seq * n_seq_max, n_ctx_seq
    p = kv_padding(flash_attn)
    if has(era, "kv_streams") and not kv_unified:
        # src/llama-model.cpp create_memory (Aug-Nov 2025): per stream ceil(n_ctx / n_seq_max), padded
        per_stream = pad((n_ctx + n_seq_max - 1) // n_seq_max, p)
        return per_stream * n_seq_max, per_stream
    # one cache shared by all sequences: GGML_PAD(n_ctx, llama_kv_cache_get_padding(cparams))
    n_ctx = pad(n_ctx, p)
    return n_ctx, n_ctx


def unified(cp_kv_unified: bool, era: str) -> bool:
    """Builds before the per-sequence streams kept one cache for all sequences."""
    return cp_kv_unified or not has(era, "kv_streams")


# ---- per-layer widths -------------------------------------------------------------------------
def swa_mode(model: ModelSpec) -> str:
    """'none' (no sliding layers), 'swa' (a separate SWA cache) or 'full' (window ignored)."""
    if not any(l.kind in (SLIDING, CHUNKED) for l in model.layers):
        return "none"
    mode = SWA_ARCH.get(model.model_type)
    if mode is None:
        known = sorted(k for k, v in SWA_ARCH.items())
        raise ModelError(
            f"{model.name}: kvcap does not know how llama.cpp's {model.model_type!r} architecture treats its "
            f"sliding window; known: {', '.join(known)}")
    return mode


def n_swa(model: ModelSpec) -> int:
    windows = {l.window for l in model.layers if l.kind in (SLIDING, CHUNKED) and l.kv_source is None}
    if len(windows) != 1 or None in windows:
        raise ModelError(f"{model.name}: llama.cpp has one sliding window per model (hparams.n_swa); "
                         f"this model declares {sorted(w for w in windows if w) or 'none'}")
    return int(next(iter(windows)))


def _has_kv(layer: Layer) -> bool:
    # llama_hparams::has_kv: Gemma 3n's shared layers and MTP/NextN blocks (n_layer_kv_from_start)
    return layer.kind in _ATTENTION and layer.kv_source is None and not layer.is_mtp


def kv_widths(layer: Layer, cp: Cparams, model: ModelSpec) -> tuple[int, int]:
    """(n_embd_k_gqa, n_embd_v_gqa) of one attention layer, before V padding."""
    if layer.kind == MLA:
        if cp.mla_latent:
            # convert_hf_to_gguf DeepseekV2Model: key_length = kv_lora_rank + rope, value_length =
            # kv_lora_rank, head_count_kv = 1; V-less builds store K only (PR #19067).
            k = layer.kv_lora_rank + layer.qk_rope_head_dim
            return k, 0 if cp.v_less else layer.kv_lora_rank
        if not (layer.num_q_heads and layer.head_dim_k and layer.head_dim_v):
            raise ModelError(f"{model.name}: an MLA layer without per-head dims cannot be priced as a pre-MLA GGUF")
        # GGUFs without the MLA keys, and builds before PR #12801, cache decompressed K and V per head
        return layer.num_q_heads * layer.head_dim_k, layer.num_q_heads * layer.head_dim_v
    return layer.num_kv_heads * layer.head_dim_k, layer.num_kv_heads * layer.head_dim_v


def head_dims(layer: Layer, cp: Cparams) -> tuple[int, int]:
    """n_embd_head_k / n_embd_head_v as llama.cpp checks them against a quantized block."""
    if layer.kind == MLA and cp.mla_latent:
        return layer.kv_lora_rank + layer.qk_rope_head_dim, layer.kv_lora_rank
    return layer.head_dim_k, layer.head_dim_v


def check_types(model: ModelSpec, cp: Cparams) -> None:
    """llama_init_from_model's refusals for quantized caches (src/llama-context.cpp)."""
    if cp.type_v.quantized and not cp.flash_attn:
        raise OptionsError("V cache quantization requires flash_attn (llama.cpp refuses type_v "
                           f"{cp.type_v.name} with flash attention off)")
    for layer in model.layers:
        if not _has_kv(layer):
            continue
        hk, hv = head_dims(layer, cp)
        for what, t, n in (("K", cp.type_k, hk), ("V", cp.type_v, hv)):
            if t.quantized and n % t.block:
                name = "n_embd_head_k" if what == "K" else "n_embd_head_v"
                raise OptionsError(f"{what} cache type {t.name} with block size {t.block} does not divide "
                                   f"{name}={n}; use f16, bf16 or f32")


def state_widths(layer: Layer) -> tuple[int, int]:
    """(n_embd_r, n_embd_s): the conv (shift) state and the SSM/WKV state of a recurrent layer."""
    r = sum(s.numel for s in layer.state if "conv" in s.name or "shift" in s.name)
    return r, layer.state_elems - r


# ---- the memory module ------------------------------------------------------------------------
# convert_hf_to_gguf keeps the NextN/MTP blocks as extra blk.N for these (Glm4MoeModel; llama.cpp
# then sets n_layer_kv_from_start = n_layer - nextn_predict_layers); DeepSeek's and others'
# converters drop them, so they are neither weights nor layers in llama.cpp.
MTP_KEPT = ("glm4_moe",)


def keeps_mtp(model: ModelSpec) -> bool:
    return model.model_type in MTP_KEPT


def decoder_index(model: ModelSpec) -> tuple[int, ...]:
    """llama.cpp's layer index (blk.N) of each ModelSpec layer entry.

    A parallel hybrid (Falcon-H1) lists each decoder layer twice (attention, then recurrent);
    llama.cpp has one blk.N holding both. MTP/NextN blocks follow the decoder layers.
    """
    n_dec = model.num_hidden_layers
    main = sum(1 for l in model.layers if not l.is_mtp)
    if main == n_dec:
        return tuple(range(len(model.layers)))
    if main == 2 * n_dec:
        out, k = [], 0
        for i, l in enumerate(model.layers):
            out.append(i // 2 if not l.is_mtp else n_dec + k)
            k += l.is_mtp
        return tuple(out)
    raise ModelError(f"{model.name}: {main} layer entries for {n_dec} decoder layers; kvcap cannot map them to llama.cpp's")


def n_layer(model: ModelSpec) -> int:
    """llama.cpp's n_layer (block_count): decoder layers, plus MTP blocks where the GGUF keeps them."""
    mtp = sum(1 for l in model.layers if l.is_mtp) if keeps_mtp(model) else 0
    return model.num_hidden_layers + mtp


def memory_module(model: ModelSpec, cp: Cparams) -> tuple[Cache, ...]:
    """The caches `llama_model::create_memory` builds (src/llama-model.cpp), with their sizes."""
    check_types(model, cp)
    if any(l.index_head_dim for l in model.layers):
        raise ModelError(f"{model.name}: kvcap does not model llama.cpp's cache for DeepSeek sparse attention (indexer keys)")
    idx = decoder_index(model)
    attn = [(idx[i], l) for i, l in enumerate(model.layers) if _has_kv(l) and kv_widths(l, cp, model) != (0, 0)]
    recurrent = [(idx[i], l) for i, l in enumerate(model.layers) if l.state]
    bad = [l.kind for l in model.layers if l.kind == RECURRENT and not l.state]
    if bad:
        raise ModelError(f"{model.name}: a recurrent layer without its state shapes cannot be priced")
    caches: list[Cache] = []
    if recurrent:
        # llama_memory_recurrent: F32 r/s, mem_size = max(1, n_seq_max), per layer (independent of n_ctx)
        mem_size = max(1, cp.n_seq_max)
        rows = tuple((il, *state_widths(l)) for il, l in recurrent)
        caches.append(Cache("rs", mem_size, 1, F32, F32, rows))
    if not attn:
        return tuple(caches)
    widths = {il: kv_widths(l, cp, model) for il, l in attn}
    if not cp.flash_attn:
        # [TAG_V_CACHE_VARIABLE]: without FA, V is padded to the widest layer's V
        v_max = max(v for _, v in widths.values())
        widths = {il: (k, v_max if v else 0) for il, (k, v) in widths.items()}
    n_stream = cp.n_stream
    if recurrent:
        # llama_memory_hybrid: attention cache of attn_kv_size = cparams.n_ctx (not n_ctx_seq) per
        # stream, SWA layers masked in place (no separate SWA cache)
        rows = tuple((il, *widths[il]) for il, _ in attn)
        caches.insert(0, Cache("kv", cp.n_ctx, n_stream, cp.type_k, cp.type_v, rows))
        return tuple(caches)
    mode = swa_mode(model) if has(cp.era, "swa_cache") else "full"
    swa_layers = {il for il, l in attn if l.kind in (SLIDING, CHUNKED)} if mode == "swa" else set()
    base_rows = tuple((il, *widths[il]) for il, _ in attn if il not in swa_layers)
    caches.append(Cache("kv", cp.n_ctx_seq, n_stream, cp.type_k, cp.type_v, base_rows))
    if swa_layers:
        size = swa_cells(cp, n_swa(model))
        f16 = has(cp.era, "swa_f16")
        tk, tv = (F16, F16) if f16 else (cp.type_k, cp.type_v)
        swa_rows = tuple((il, *widths[il]) for il, _ in attn if il in swa_layers)
        caches.append(Cache("kv_swa", size, n_stream, tk, tv, swa_rows))
    return tuple(c for c in caches if c.rows)


def swa_cells(cp: Cparams, window: int) -> int:
    """Cells per stream of the SWA cache (llama_kv_cache_iswa ctor)."""
    base = cp.n_ctx_seq
    if cp.swa_full:
        return base
    need = window * (cp.n_seq_max if cp.kv_unified else 1) + cp.n_ubatch
    if has(cp.era, "swa_pad_256"):
        return pad(min(base, need), 256)
    return min(base, pad(need, kv_padding(cp.flash_attn)))


def per_token_bytes(caches: tuple[Cache, ...]) -> int:
    """Bytes one more cell of every context-sized cache costs (the part that grows with n_ctx)."""
    return sum(c.total // c.cells for c in caches if c.kind == "kv" and c.cells)


__all__ = ["Cparams", "Cache", "memory_module", "decoder_index", "n_layer", "resolve_cells", "unified", "log_mib", "pad", "swa_cells",
           "kv_padding"]
