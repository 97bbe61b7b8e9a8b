"""What a llama.cpp context costs besides the KV cache: the weights per layer and the compute buffer.

Weights are exact when the ModelSpec was read from a GGUF (each tensor carries its ggml type);
otherwise they are priced at a GGUF file type (llamacpp_types.FILE_TYPES) and marked estimates.
The compute buffer is measured by ggml-alloc at load time (`llama_context::graph_reserve`), so
offline it is always an estimate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..model.spec import EMBED, LM_HEAD, ROUTER, ModelSpec, Tensor
from .llamacpp_kv import Cache, keeps_mtp, n_layer
from .llamacpp_types import GGML_TYPES, FileType, bytes_at_bits

# "layers.12.", "model.layers.12.", "blk.12.", "h.12.", "blocks.12." -> 12
_LAYER = re.compile(r"(?:^|\.)(?:layers|blk|h|block|blocks)\.(\d+)\.")
# The parts of a checkpoint that live in the text GGUF (vision towers go to a separate mmproj file).
_TEXT_PARTS = ("text", "mtp")
# MoE expert tensors: one 3-D [experts, out, in] tensor, or one 2-D tensor per expert
_EXPERT = re.compile(r"(?:^|\.)experts\.(?:\d+\.)?|_exps\b")


@dataclass(frozen=True)
class Weights:
    """Model weight bytes as llama.cpp places them (src/llama-model.cpp load_tensors)."""

    layers: tuple[int, ...]     # per repeating layer (blk.N), everything but MoE expert tensors
    experts: tuple[int, ...]    # per repeating layer, the MoE expert tensors (ffn_*_exps)
    output: int                 # output_norm + output: the non-repeating layer `-ngl N+1` offloads
    input: int                  # token_embd: always on the host (dev_input is the CPU)
    exact: bool                 # every tensor carried its own ggml type
    how: str                    # how the bytes were obtained, in words

    @property
    def total(self) -> int:
        return sum(self.layers) + sum(self.experts) + self.output + self.input

    @property
    def is_moe(self) -> bool:
        return any(self.experts)


def tensor_bytes(t: Tensor, ft: FileType) -> tuple[int, bool]:
    """(bytes, exact) of one tensor: its own ggml type if it has one, else the file type's price."""
    own = GGML_TYPES.get(t.dtype.lower()) if t.dtype else None
    if own is not None:
        return own.row_bytes(t.numel) if t.numel % own.block == 0 else -(-t.numel // own.block) * own.size, True
    if len(t.shape) <= 1 or t.role == ROUTER:
        # 1-D tensors and the MoE router stay F32 in every GGUF (convert_hf_to_gguf / llama-quantize)
        return t.numel * 4, ft.exact
    if t.role == LM_HEAD:
        return GGML_TYPES[ft.output].row_bytes(t.numel) if t.numel % GGML_TYPES[ft.output].block == 0 \
            else bytes_at_bits(t.numel, ft.bits), ft.exact
    return bytes_at_bits(t.numel, ft.bits), ft.exact


def weights(model: ModelSpec, ft: FileType) -> Weights:
    n = n_layer(model)
    layers, experts = [0] * n, [0] * n
    output = embed = 0
    exact = True
    has_head = any(t.role == LM_HEAD for t in model.tensors)
    parts = _TEXT_PARTS if keeps_mtp(model) else ("text",)
    for t in model.tensors:
        if t.part not in parts:
            continue
        size, ok = tensor_bytes(t, ft)
        if t.role == EMBED and not has_head and not t.dtype:
            # tied embeddings: llama-quantize gives token_embd the output's type
            # (llama_tensor_get_type: `!qs.has_output && name == token_embd`)
            size = tensor_bytes(Tensor(t.name, t.shape, LM_HEAD), ft)[0]
        exact = exact and ok
        m = _LAYER.search(t.name)
        il = int(m.group(1)) if m else None
        if t.role == EMBED:
            embed += size
        elif il is None or il >= n:
            output += size
        elif len(t.shape) == 3 or _EXPERT.search(t.name):
            experts[il] += size
        else:
            layers[il] += size
    if not has_head:
        # LLM_TENSOR_OUTPUT falls back to token_embd with TENSOR_DUPLICATED: a copy goes with the output layer
        output += embed
    if model.stored_bytes and (model.quantization or {}).get("format") == "gguf":
        # the file's own tensor sizes: exact in total; spread over the layers in the priced shares
        return _scaled(layers, experts, output, embed, sum(model.stored_bytes.values()), has_head)
    how = "tensor types read from the GGUF" if exact else f"priced at GGUF file type {ft.name} ({float(ft.bits):g} bits per weight)"
    return Weights(tuple(layers), tuple(experts), output, embed, exact, how)


def _scaled(layers: list[int], experts: list[int], output: int, embed: int, stored: int, has_head: bool) -> Weights:
    priced = sum(layers) + sum(experts) + output + (embed if has_head else 0)
    f = stored / priced if priced else 0.0
    layers2 = [round(x * f) for x in layers]
    experts2 = [round(x * f) for x in experts]
    embed2 = round(embed * f)
    # untied: the output share already holds token_embd (the file's one copy); `input` is the duplicate
    out2 = stored - sum(layers2) - sum(experts2) - (embed2 if has_head else 0)
    return Weights(tuple(layers2), tuple(experts2), out2, embed2, True,
                   "the GGUF's tensor bytes (exact in total; per-layer shares priced)")


def compute_estimate(model: ModelSpec, caches: tuple[Cache, ...], n_ubatch: int, n_ctx: int, flash_attn: bool,
                     output_on_device: bool) -> int:
    """The device compute buffer, estimated from the largest live tensors of the worst-case graph.

    `graph_reserve` sizes the buffer for n_tokens = min(n_ctx, n_ubatch). Observed: the logits
    (n_vocab x n_tokens F32) plus the final hidden state dominate with flash attention (pythia-1.4b
    Metal 102.25 MiB exactly, ggml-ci); without it, the KQ scores n_kv x n_tokens x n_head F32
    (Llama-3.1-8B @ 81920: 5312 MiB logged vs 5136 MiB here).
    """
    ub = min(n_ubatch, n_ctx)
    f32 = 4
    hidden = model.hidden_size
    out = ub * (model.vocab_size + hidden) * f32 if output_on_device else 0
    n_ff = model.intermediate_size
    ffn = ub * (2 * n_ff + hidden) * f32
    heads = model.num_attention_heads
    kv_cells = max((c.cells for c in caches if c.kind in ("kv", "kv_swa")), default=0)
    if flash_attn or not kv_cells:
        attn = ub * heads * max(model.head_dim, 1) * f32 * 3
    else:
        attn = kv_cells * ub * heads * f32 + 2 * ub * hidden * f32
    return max(out, ffn, attn)
