"""Optional online lookup: an HF id not in the catalog or cache -> config.json + safetensors headers.

Only metadata travels: `hf_hub_download(..., "config.json")` and
`get_safetensors_metadata` (huggingface_hub `hf_api.py`), which reads each file's header with
HTTP range requests, never the weights. `huggingface_hub` is imported only here and only when
online use is allowed: `offline=True` (the CLI's --offline) or HF_HUB_OFFLINE=1 refuse first.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Mapping

from ..errors import ModelError
from .limits import DEFAULT_LIMITS, ReadLimits
from .safetensors_reader import Stored, header_from_dict, summarize

_TRUE = {"1", "true", "yes", "on"}


def offline(flag: bool | None = None, env: Mapping[str, str] | None = None) -> bool:
    """The flag when given; else HF_HUB_OFFLINE as huggingface_hub reads it (1/true/yes/on)."""
    if flag is not None:
        return flag
    env = os.environ if env is None else env
    return env.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def available() -> bool:
    """Whether huggingface_hub can be imported (without importing it)."""
    if "huggingface_hub" in sys.modules:
        return sys.modules["huggingface_hub"] is not None
    from importlib.util import find_spec
    try:
        return find_spec("huggingface_hub") is not None
    except (ImportError, ValueError):
        return False


def _client() -> ModuleType:
    try:
        import huggingface_hub  # noqa: PLC0415 - optional extra, imported only when going online
    except ImportError:
        raise ModelError("fetching from the Hugging Face Hub needs huggingface_hub: pip install 'kvcap[hf]'") from None
    return huggingface_hub


def _fail(repo_id: str, what: str, e: Exception) -> ModelError:
    kind = type(e).__name__
    if kind == "GatedRepoError":
        return ModelError(f"{repo_id} is gated on the Hugging Face Hub: accept its licence and log in (`hf auth login`)")
    if kind == "RepositoryNotFoundError":
        return ModelError(f"{repo_id} is not on the Hugging Face Hub (or is private): check the id")
    detail = (str(e).strip().splitlines() or [""])[0][:160]
    return ModelError(f"cannot fetch {what} of {repo_id} from the Hugging Face Hub: {kind}: {detail}")


def stored_from_metadata(meta: Any, repo_id: str, limits: ReadLimits = DEFAULT_LIMITS) -> Stored:
    """huggingface_hub's SafetensorsRepoMetadata -> Stored, validated like a local header."""
    files = getattr(meta, "files_metadata", None)
    if not isinstance(files, Mapping) or not files:
        raise ModelError(f"{repo_id}: the hub returned no safetensors file metadata")
    if len(files) > limits.max_files:
        raise ModelError(f"{repo_id}: {len(files)} safetensors files, above the cap of {limits.max_files} (ReadLimits.max_files)")
    headers = []
    for fname, fmeta in sorted(files.items()):
        tensors = getattr(fmeta, "tensors", None)
        if not isinstance(tensors, Mapping):
            raise ModelError(f"{repo_id}/{fname}: the hub returned no tensor list")
        doc = {name: {"dtype": getattr(t, "dtype", None), "shape": list(getattr(t, "shape", None) or []),
                      "data_offsets": list(getattr(t, "data_offsets", None) or [])}
               for name, t in tensors.items()}
        headers.append((fname, header_from_dict(doc, f"{repo_id}/{fname}")))
    return summarize(headers, limits)


def from_hub(repo_id: str, revision: str | None = None, limits: ReadLimits = DEFAULT_LIMITS,
             offline_flag: bool | None = None):
    """Fetch config.json and safetensors headers of `repo_id` and build its ModelSpec."""
    from . import hf
    from .hf_folder import with_checkpoint
    if offline(offline_flag):
        raise ModelError(f"{repo_id} is not in the catalog or the Hugging Face cache, and online lookup is off "
                         f"(--offline or HF_HUB_OFFLINE=1)")
    hub = _client()
    try:
        config_path = hub.hf_hub_download(repo_id, "config.json", revision=revision)
    except Exception as e:  # noqa: BLE001 - any hub/network failure is one line for the user
        raise _fail(repo_id, "config.json", e) from None
    cfg = hf.read_json(Path(config_path), limit=limits.max_config)
    spec = hf.from_config(cfg, repo_id, f"hub:{repo_id}@{revision or 'main'}")
    try:
        meta = hub.get_safetensors_metadata(repo_id, revision=revision)
    except Exception as e:  # noqa: BLE001
        if type(e).__name__ == "NotASafetensorsRepoError":
            return with_checkpoint(spec, cfg, None)
        raise _fail(repo_id, "safetensors headers", e) from None
    return with_checkpoint(spec, cfg, stored_from_metadata(meta, repo_id, limits))
