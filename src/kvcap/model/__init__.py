"""Models: where a ModelSpec comes from.

`load_model` tries, in order: a config dict; a file or folder on disk (GGUF, MLC folder, HF
folder with safetensors headers, config.json, an HF cache `models--org--name` folder); an HF id
in the local HF cache; the embedded catalog (an exact id first); the Hugging Face Hub (only
when online use is allowed and huggingface_hub is installed); then a forgiving catalog match.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..errors import ModelError
from . import catalog, hf, hf_cache
from .limits import DEFAULT_LIMITS, ReadLimits, check_regular_file
from .spec import ModelSpec

# Keys MLC-LLM reads from a preset / mlc-chat-config.json beside the HF fields.
MLC_KEYS = ("context_window_size", "prefill_chunk_size", "sliding_window_size", "attention_sink_size",
            "max_batch_size", "tensor_parallel_shards", "pipeline_parallel_stages")
_MODEL_SUFFIXES = (".json", ".gguf", ".safetensors")


def with_mlc_fields(spec: ModelSpec, cfg: dict) -> ModelSpec:
    from .config import get_int
    # Counts, checked like every config field (-1 is MLC's "none" for windows and sinks).
    extra = {k: get_int(cfg, k, minimum=-1) for k in MLC_KEYS if cfg.get(k) is not None}
    return dataclasses.replace(spec, mlc=extra) if extra else spec


def _from_config(cfg: dict, name: str, source: str) -> ModelSpec:
    from .hf_folder import with_checkpoint
    return with_checkpoint(with_mlc_fields(hf.from_config(cfg, name, source), cfg), cfg, None)


def _gguf_in(folder: Path) -> Path | None:
    """The model GGUF of a folder: the only one, or the first part of a split set (mmproj aside)."""
    found = sorted(p for p in folder.glob("*.gguf") if p.is_file() and not p.name.lower().startswith("mmproj"))
    firsts = [p for p in found if "-00001-of-" in p.name]
    if len(found) == 1:
        return found[0]
    if len(firsts) == 1 and all("-of-" in p.name for p in found):
        return firsts[0]
    if found:
        raise ModelError(f"{folder} holds {len(found)} GGUF files ({', '.join(p.name for p in found[:3])}…); give one file")
    return None


def from_path(path: Path, limits: ReadLimits = DEFAULT_LIMITS) -> ModelSpec:
    """A model file or folder on disk, routed to its reader by what it holds."""
    from .gguf_config import from_gguf
    from .hf_folder import from_hf_folder, with_checkpoint
    from .mlc_folder import CHAT_CONFIG, TENSOR_CACHES, from_mlc_folder
    from .safetensors_reader import INDEX
    if path.is_dir():
        if hf_cache.is_cache_repo(path):
            return from_path(hf_cache.resolve_snapshot(path, None, path.name), limits)
        if (path / CHAT_CONFIG).is_file():
            return from_mlc_folder(path, limits)
        if (path / "config.json").is_file():
            return from_hf_folder(path, limits=limits)
        gguf = _gguf_in(path)
        if gguf is not None:
            return from_gguf(gguf, limits)
        raise ModelError(f"{path} holds no config.json, mlc-chat-config.json or .gguf file")
    name = path.name
    if name.lower().endswith(".gguf"):
        return from_gguf(path, limits)
    if name == CHAT_CONFIG or (name in TENSOR_CACHES and (path.parent / CHAT_CONFIG).is_file()):
        return from_mlc_folder(path.parent, limits)
    if name == INDEX or name.endswith(".safetensors"):
        return from_hf_folder(path.parent, limits=limits)
    if name.endswith(".json"):
        cfg = hf.read_json(path, limit=limits.max_config)
        declared = cfg.get("_name_or_path")
        label = declared if isinstance(declared, str) and declared else path.parent.name or path.stem
        return with_checkpoint(with_mlc_fields(hf.from_config(cfg, label, str(path)), cfg), cfg, None)
    check_regular_file(path)
    with open(path, "rb") as f:
        if f.read(4) == b"GGUF":
            return from_gguf(path, limits)
    raise ModelError(f"{path}: not a model file (expected config.json, a .gguf or .safetensors file, or mlc-chat-config.json)")


def _from_catalog(entry: catalog.Entry) -> ModelSpec:
    return _from_config(entry.config(), entry.key, f"catalog:{entry.source}:{entry.path}")


def from_catalog(name: str) -> ModelSpec:
    """A catalog model by a forgiving name, and nothing else: no file, HF cache or hub lookup,
    for callers that must never reach the disk or network from a name (kvcap web)."""
    return _from_catalog(catalog.lookup(name))


def _from_repo_id(text: str, repo_id: str, revision: str | None, offline: bool | None,
                  limits: ReadLimits) -> ModelSpec:
    from . import hub
    from .hf_folder import from_hf_folder
    from .safetensors_reader import checkpoint_files
    online = not hub.offline(offline) and hub.available()
    snap = hf_cache.snapshot(repo_id, revision)
    if snap is not None:
        source = f"hf-cache:{repo_id}@{snap.name}"
        if not (snap / "config.json").is_file():
            return from_path(snap, limits)
        # A snapshot holding only config.json (what an earlier metadata fetch leaves behind) has
        # no headers to price the weights: fetch them when allowed, else price from the config.
        if not online or checkpoint_files(snap, limits):
            return from_hf_folder(snap, repo_id, source, limits)
    if revision is None:
        exact = [e for e in catalog.entries() if e.key.lower() == repo_id.lower()]
        if exact:
            return _from_catalog(exact[0])
    if online:
        return hub.from_hub(repo_id, revision, limits, offline)
    hint = ("online lookup is off: --offline or HF_HUB_OFFLINE=1" if hub.offline(offline)
            else "pip install 'kvcap[hf]' to fetch it from the Hugging Face Hub")
    if revision is not None:
        raise ModelError(f"{text} is not in the Hugging Face cache ({hint})")
    try:
        return _from_catalog(catalog.lookup(repo_id))
    except ModelError as e:
        raise ModelError(f"{e}; not in the Hugging Face cache either ({hint})") from None


def load_model(source: str | Path | dict, *, offline: bool | None = None,
               limits: ReadLimits | None = None) -> ModelSpec:
    """A config dict, a model file or folder, an HF id (cache, catalog, hub) or a catalog name -> ModelSpec.

    `offline=True` never goes online; `None` follows HF_HUB_OFFLINE. `limits` caps header reads.
    """
    limits = limits or DEFAULT_LIMITS
    if isinstance(source, dict):
        declared = source.get("_name_or_path")
        return _from_config(source, declared if isinstance(declared, str) else "", "config")
    text = str(source)
    path = Path(text).expanduser()
    try:
        if path.exists():
            return from_path(path, limits)
        if text.lower().endswith(_MODEL_SUFFIXES) or text.startswith((".", "/", "~")):
            raise ModelError(f"no such file or folder: {text}")
        repo = hf_cache.parse_repo_id(text)
        if repo is not None:
            return _from_repo_id(text, repo[0], repo[1], offline, limits)
    except OSError as e:   # unreadable folders, permission errors, a file vanishing mid-read
        raise ModelError(f"cannot read {e.filename or text}: {e.strerror or e}") from None
    return _from_catalog(catalog.lookup(text))


__all__ = ["ModelSpec", "ReadLimits", "load_model", "from_catalog", "catalog"]
