"""Vision towers of multimodal wrappers, sized from their `vision_config`, plus each wrapper's
projector into the language model. They hold weights (part "vision" / "projector") and no KV.

Shapes follow the transformers modules named per function; a tower type not listed here fails
closed (its weights would otherwise be priced at zero).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from ...errors import ModelError
from .. import config as C
from ..spec import BIAS, LINEAR, NORM, OTHER, REP, Tensor
from .common import MAX_LAYERS
from .vision import clip_tensors

V, P = "vision", "projector"


def _lin(name: str, out: int, inp: int, bias: bool, part: str = V) -> list[Tensor]:
    t = [Tensor(name, (out, inp), LINEAR, REP, part=part)]
    return t + [Tensor(name + ".bias", (out,), BIAS, REP, part=part)] if bias else t


def _ln(name: str, dim: int, bias: bool = True, part: str = V) -> list[Tensor]:
    t = [Tensor(name, (dim,), NORM, REP, part=part)]
    return t + [Tensor(name + ".bias", (dim,), NORM, REP, part=part)] if bias else t


def _depth(vc: Mapping[str, Any], key: str = "num_hidden_layers", default: Any = None) -> int:
    n = C.get_int(vc, key) if default is None else C.get_int(vc, key, default=default)
    if n > MAX_LAYERS:
        raise ModelError(f"vision_config {key} {n} is beyond any real tower (limit {MAX_LAYERS})")
    return n


def _dims(vc: Mapping[str, Any], depth_key: str = "num_hidden_layers") -> tuple[int, int, int]:
    return C.get_int(vc, "hidden_size"), C.get_int(vc, "intermediate_size"), _depth(vc, depth_key)


# ---- towers ----------------------------------------------------------------------------------
def clip(vc: Mapping[str, Any]) -> list[Tensor]:
    """CLIPVisionModel (transformers modeling_clip.py): class + patch + position embeddings, pre/post LayerNorm."""
    h, inter, n = _dims(vc)
    return clip_tensors("vision.", h, inter, n, C.get_int(vc, "image_size"), C.get_int(vc, "patch_size"),
                        C.get_int(vc, "num_channels", default=3))


def siglip(vc: Mapping[str, Any]) -> list[Tensor]:
    """SiglipVisionTransformer (modeling_siglip.py); the attention-pooling head when vision_use_head."""
    h, inter, n = _dims(vc)
    patch, image = C.get_int(vc, "patch_size"), C.get_int(vc, "image_size")
    ch = C.get_int(vc, "num_channels", default=3)
    t = [Tensor("vision.patch_embedding", (h, ch, patch, patch), OTHER, REP, part=V),
         Tensor("vision.patch_embedding.bias", (h,), BIAS, REP, part=V),
         Tensor("vision.position_embedding", ((image // patch) ** 2, h), OTHER, REP, part=V)]
    for i in range(n):
        p = f"vision.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            t += _lin(p + proj, h, h, True)
        t += _lin(p + "fc1", inter, h, True) + _lin(p + "fc2", h, inter, True)
        t += _ln(p + "layer_norm1", h) + _ln(p + "layer_norm2", h)
    t += _ln("vision.post_layernorm", h)
    if C.get_bool(vc, "vision_use_head", True):
        t += [Tensor("vision.head.probe", (1, 1, h), OTHER, REP, part=V)]
        t += _lin("vision.head.attention.in_proj", 3 * h, h, True) + _lin("vision.head.attention.out_proj", h, h, True)
        t += _ln("vision.head.layernorm", h) + _lin("vision.head.fc1", inter, h, True) + _lin("vision.head.fc2", h, inter, True)
    return t


def pixtral(vc: Mapping[str, Any]) -> list[Tensor]:
    """PixtralVisionModel (modeling_pixtral.py): conv patches, RMSNorms, gated MLP, no biases."""
    h, inter, n = _dims(vc)
    patch, ch = C.get_int(vc, "patch_size"), C.get_int(vc, "num_channels", default=3)
    heads = C.get_int(vc, "num_attention_heads")
    hd = C.get_int(vc, "head_dim", default=h // heads)
    t = [Tensor("vision.patch_conv", (h, ch, patch, patch), OTHER, REP, part=V)] + _ln("vision.ln_pre", h, False)
    for i in range(n):
        p = f"vision.layers.{i}."
        t += _lin(p + "q_proj", heads * hd, h, False) + _lin(p + "k_proj", heads * hd, h, False)
        t += _lin(p + "v_proj", heads * hd, h, False) + _lin(p + "o_proj", h, heads * hd, False)
        t += _lin(p + "gate_proj", inter, h, False) + _lin(p + "up_proj", inter, h, False)
        t += _lin(p + "down_proj", h, inter, False)
        t += _ln(p + "attention_norm", h, False) + _ln(p + "ffn_norm", h, False)
    return t


def qwen3_5(vc: Mapping[str, Any]) -> list[Tensor]:
    """Qwen3.5 / Qwen3-VL vision (modeling_qwen3_5.py Qwen3_5VisionModel): 3-D patch conv, learned
    positions, pre-norm blocks with fused qkv, and the 2x2 patch merger into the text width."""
    h, inter = C.get_int(vc, "hidden_size"), C.get_int(vc, "intermediate_size")
    n = _depth(vc, "depth")
    patch, tp = C.get_int(vc, "patch_size"), C.get_int(vc, "temporal_patch_size", default=2)
    ch = C.get_int(vc, "in_channels", default=3)
    merge = C.get_int(vc, "spatial_merge_size", default=2)
    out = C.get_int(vc, "out_hidden_size")
    t = [Tensor("vision.patch_embed", (h, ch, tp, patch, patch), OTHER, REP, part=V),
         Tensor("vision.patch_embed.bias", (h,), BIAS, REP, part=V),
         Tensor("vision.pos_embed", (C.get_int(vc, "num_position_embeddings"), h), OTHER, REP, part=V)]
    for i in range(n):
        p = f"vision.blocks.{i}."
        t += _ln(p + "norm1", h) + _ln(p + "norm2", h)
        t += _lin(p + "qkv", 3 * h, h, True) + _lin(p + "proj", h, h, True)
        t += _lin(p + "linear_fc1", inter, h, True) + _lin(p + "linear_fc2", h, inter, True)
    wide = h * merge * merge
    deep = vc.get("deepstack_visual_indexes") or []
    if not isinstance(deep, list):
        raise ModelError("vision_config field 'deepstack_visual_indexes' must be a list")
    for j, post in [("merger", False)] + [(f"deepstack_merger.{k}", True) for k in range(len(deep))]:
        p = f"vision.{j}."
        t += _ln(p + "norm", wide if post else h) + _lin(p + "linear_fc1", wide, wide, True)
        t += _lin(p + "linear_fc2", out, wide, True)
    return t


def llama4(vc: Mapping[str, Any]) -> list[Tensor]:
    """Llama4VisionModel (modeling_llama4.py), defaults from Llama4VisionConfig where the
    config.json leaves vision_config out."""
    h = C.get_int(vc, "hidden_size", default=768)
    inter = C.get_int(vc, "intermediate_size", default=5632)
    n = _depth(vc, "num_hidden_layers", 34)
    patch, image = C.get_int(vc, "patch_size", default=14), C.get_int(vc, "image_size", default=448)
    ch = C.get_int(vc, "num_channels", default=3)
    p_in, p_out = C.get_int(vc, "projector_input_dim", default=4096), C.get_int(vc, "projector_output_dim", default=4096)
    t = [Tensor("vision.class_embedding", (h,), OTHER, REP, part=V),
         Tensor("vision.positional_embedding_vlm", ((image // patch) ** 2 + 1, h), OTHER, REP, part=V),
         *_lin("vision.patch_embedding", h, ch * patch * patch, False),
         *_ln("vision.layernorm_pre", h), *_ln("vision.layernorm_post", h)]
    for i in range(n):
        p = f"vision.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            t += _lin(p + proj, h, h, True)
        t += _lin(p + "fc1", inter, h, True) + _lin(p + "fc2", h, inter, True)
        t += _ln(p + "input_layernorm", h) + _ln(p + "post_attention_layernorm", h)
    t += _lin("vision.vision_adapter.fc1", p_in, inter, False) + _lin("vision.vision_adapter.fc2", p_out, p_out, False)
    return t


def gemma4(vc: Mapping[str, Any]) -> list[Tensor]:
    """Gemma4VisionModel (modeling_gemma4.py): linear patch embedder with a 2-D position table,
    Gemma-style blocks (four RMSNorms, q/k norms, gated MLP), no biases."""
    h, inter, n = _dims(vc)
    heads = C.get_int(vc, "num_attention_heads")
    hd = C.get_int(vc, "head_dim", default=h // heads)
    kv = C.get_int(vc, "num_key_value_heads", default=heads)
    patch = C.get_int(vc, "patch_size")
    t = [Tensor("vision.position_embedding_table", (2, C.get_int(vc, "position_embedding_size"), h), OTHER, REP, part=V),
         *_lin("vision.input_proj", h, 3 * patch * patch, False)]
    for i in range(n):
        p = f"vision.layers.{i}."
        t += _lin(p + "q_proj", heads * hd, h, False) + _lin(p + "k_proj", kv * hd, h, False)
        t += _lin(p + "v_proj", kv * hd, h, False) + _lin(p + "o_proj", h, heads * hd, False)
        t += _ln(p + "q_norm", hd, False) + _ln(p + "k_norm", hd, False)
        t += _lin(p + "gate_proj", inter, h, False) + _lin(p + "up_proj", inter, h, False)
        t += _lin(p + "down_proj", h, inter, False)
        for j in range(4):
            t += _ln(p + f"norm{j}", h, False)
    if C.get_bool(vc, "standardize", False):
        # persistent buffers, stored in the checkpoint
        t += [Tensor("vision.std_bias", (h,), OTHER, REP, part=V), Tensor("vision.std_scale", (h,), OTHER, REP, part=V)]
    return t


TOWERS: dict[str, Callable[[Mapping[str, Any]], list[Tensor]]] = {
    "clip_vision_model": clip, "siglip_vision_model": siglip, "pixtral": pixtral,
    "qwen3_5": qwen3_5, "qwen3_5_moe": qwen3_5, "llama4_vision_model": llama4, "gemma4_vision": gemma4,
}


def check(kind: str) -> None:
    if not isinstance(kind, str) or kind not in TOWERS:     # a dict model_type is unhashable
        raise ModelError(f"vision tower {kind!r} is not supported; supported: {', '.join(sorted(TOWERS))}")


def tower(vc: Mapping[str, Any], default_type: str) -> list[Tensor]:
    kind = vc.get("model_type") or default_type
    check(kind)
    return TOWERS[kind](vc)


# ---- projectors (vision width -> text width) ------------------------------------------------
def projector(wrapper: str, cfg: Mapping[str, Any], vc: Mapping[str, Any], text_hidden: int) -> list[Tensor]:
    if wrapper == "llava":
        # LlavaMultiModalProjector: linear_1 (vision -> text), GELU, linear_2, both with bias
        vh = C.get_int(vc, "hidden_size")
        bias = C.get_bool(cfg, "multimodal_projector_bias", True)
        return _lin("projector.linear_1", text_hidden, vh, bias, P) + _lin("projector.linear_2", text_hidden, text_hidden, bias, P)
    if wrapper == "gemma3":
        # Gemma3MultiModalProjector: one [vision, text] matrix after an RMSNorm over the vision width
        vh = C.get_int(vc, "hidden_size")
        return [Tensor("projector.mm_input_projection", (vh, text_hidden), LINEAR, REP, part=P),
                Tensor("projector.mm_soft_emb_norm", (vh,), NORM, REP, part=P)]
    if wrapper in ("mistral3", "ministral3"):
        # Mistral3MultiModalProjector: RMSNorm, 2x2 patch merger, linear_1, GELU, linear_2
        vh = C.get_int(vc, "hidden_size")
        merge = C.get_int(cfg, "spatial_merge_size", default=2)
        layers = cfg.get("vision_feature_layer", -1)
        n_feat = len(layers) if isinstance(layers, list) else 1
        bias = C.get_bool(cfg, "multimodal_projector_bias", True)
        return (_ln("projector.norm", vh, False, P) + _lin("projector.patch_merger", vh, vh * merge * merge, False, P)
                + _lin("projector.linear_1", text_hidden, vh * n_feat, bias, P)
                + _lin("projector.linear_2", text_hidden, text_hidden, bias, P))
    if wrapper == "llama4":
        out = C.get_int(vc, "vision_output_dim", default=7680)
        return _lin("projector.linear_1", text_hidden, out, C.get_bool(vc, "multi_modal_projector_bias", False), P)
    if wrapper == "gemma4":
        # Gemma4MultimodalEmbedder: one linear from the vision width into the text width
        return _lin("projector.embedding_projection", text_hidden, C.get_int(vc, "hidden_size"), False, P)
    return []   # qwen3_5: the merger is part of the tower
