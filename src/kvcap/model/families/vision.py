"""Vision towers of multimodal wrappers: their weights are resident, they add no KV cache.

Only towers whose shapes are fixed by a named checkpoint are listed; an unknown tower fails
closed rather than being priced at zero.

Phi-3/3.5-vision as MLC-LLM builds it (python/mlc_llm/model/phi3v/phi3v_image.py,
model/vision/clip_vision.py): all 24 CLIP encoder layers are parameters, although the model reads
the second-to-last layer's output; q/k/v/out projections stay separate (not fused) and carry
biases; the patch embedding is a bias-free Conv2D and the position table an nn.Embedding. The
tower (part "vision") is `no_quantization`, so group quantization keeps it in f16, while the
image projection (part "projector": linear_1 4·1024→3072, linear_2 3072→3072, glb_GN, sub_GN)
is quantized like the text model. Priced this way Phi-3.5-vision q4f16_1 is 2640.795 MB, as MLC
logs it (mlc-ai/mlc-llm#3394).
"""

from __future__ import annotations

from typing import Any, Mapping

from ...errors import ModelError
from .. import config as C
from ..spec import BIAS, LINEAR, NORM, OTHER, REP, Tensor

# openai/clip-vit-large-patch14-336: the tower Phi-3/3.5-vision embed (img_processor.model_name).
CLIP_L14_336 = dict(hidden=1024, intermediate=4096, layers=24, image=336, patch=14, channels=3)
_TOWERS = {"openai/clip-vit-large-patch14-336": CLIP_L14_336}


def vision_tensors(cfg: Mapping[str, Any], text_hidden: int) -> list[Tensor]:
    """Phi3-V style `img_processor` + `embd_layer` (HD transform + MLP projection)."""
    proc = cfg.get("img_processor")
    if not proc:
        return []
    if not isinstance(proc, dict):
        raise ModelError("config field 'img_processor' must be an object")
    model_name = proc.get("model_name", "")
    tower = _TOWERS.get(model_name) if isinstance(model_name, str) else None   # a dict is unhashable
    if tower is None:
        raise ModelError(
            f"vision tower {proc.get('model_name')!r} is not supported; supported: {', '.join(_TOWERS)}"
        )
    out = clip_tensors("vision.", **tower)
    dim = C.get_int(proc, "image_dim_out", default=tower["hidden"])
    embd = cfg.get("embd_layer") or {}
    if not isinstance(embd, dict):
        raise ModelError(f"config field 'embd_layer' must be an object, got {embd!r}")
    # HD transform concatenates 2x2 neighbouring patches: the projection input is 4 x dim.
    proj_in = dim * 4 if embd.get("use_hd_transform") else dim
    out += [
        Tensor("vision.img_projection.0", (text_hidden, proj_in), LINEAR, REP, part="projector"),
        Tensor("vision.img_projection.0.bias", (text_hidden,), BIAS, REP, part="projector"),
        Tensor("vision.img_projection.2", (text_hidden, text_hidden), LINEAR, REP, part="projector"),
        Tensor("vision.img_projection.2.bias", (text_hidden,), BIAS, REP, part="projector"),
    ]
    if embd.get("with_learnable_separator"):
        out += [Tensor("vision.glb_GN", (1, 1, proj_in), OTHER, REP, part="projector"),
                Tensor("vision.sub_GN", (1, 1, 1, proj_in), OTHER, REP, part="projector")]
    return out


def clip_tensors(prefix: str, hidden: int, intermediate: int, layers: int, image: int, patch: int,
                 channels: int) -> list[Tensor]:
    positions = (image // patch) ** 2 + 1
    t = [
        Tensor(prefix + "class_embedding", (hidden,), OTHER, REP, part="vision"),
        Tensor(prefix + "patch_embedding", (hidden, channels, patch, patch), OTHER, REP, part="vision"),
        Tensor(prefix + "position_embedding", (positions, hidden), OTHER, REP, part="vision"),
        Tensor(prefix + "pre_layrnorm", (hidden,), NORM, REP, part="vision"),
        Tensor(prefix + "pre_layrnorm.bias", (hidden,), NORM, REP, part="vision"),
    ]
    for i in range(layers):
        p = f"{prefix}layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            t += [Tensor(p + proj, (hidden, hidden), LINEAR, REP, part="vision"),
                  Tensor(p + proj + ".bias", (hidden,), BIAS, REP, part="vision")]
        t += [Tensor(p + "fc1", (intermediate, hidden), LINEAR, REP, part="vision"),
              Tensor(p + "fc1.bias", (intermediate,), BIAS, REP, part="vision"),
              Tensor(p + "fc2", (hidden, intermediate), LINEAR, REP, part="vision"),
              Tensor(p + "fc2.bias", (hidden,), BIAS, REP, part="vision")]
        for n in ("layer_norm1", "layer_norm2"):
            t += [Tensor(p + n, (hidden,), NORM, REP, part="vision"),
                  Tensor(p + n + ".bias", (hidden,), NORM, REP, part="vision")]
    t += [Tensor(prefix + "post_layernorm", (hidden,), NORM, REP, part="vision"),
          Tensor(prefix + "post_layernorm.bias", (hidden,), NORM, REP, part="vision")]
    return t
