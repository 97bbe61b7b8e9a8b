"""The local Hugging Face hub cache: a model id -> its snapshot folder, offline.

Layout (huggingface_hub `file_download.py`, `hf_hub_download` / `_get_pointer_path`):
`<cache>/models--<org>--<name>/refs/<revision>` holds a commit hash and
`<cache>/models--<org>--<name>/snapshots/<commit>/` holds the files (symlinks into blobs/).
The cache folder is `HF_HUB_CACHE`, else `HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`,
else `~/.cache/huggingface/hub` (huggingface_hub `constants.py`), also without the package.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping

from ..errors import ModelError

# An HF repo id: "org/name" with the characters the hub allows (huggingface_hub
# `validate_repo_id`), plus an optional "@revision".
REPO_ID = re.compile(r"^(?P<org>[A-Za-z0-9][\w.-]{0,95})/(?P<name>[\w.-]{1,96})(?:@(?P<rev>[\w./-]{1,200}))?$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def parse_repo_id(text: str) -> tuple[str, str | None] | None:
    """'org/name' or 'org/name@rev' -> (repo id, revision); None when it is not one."""
    m = REPO_ID.match(text)
    if not m or ".." in text or text.endswith((".json", ".gguf", ".safetensors")):
        return None
    return f"{m['org']}/{m['name']}", m["rev"]


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    for key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(key):
            return Path(env[key]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    xdg = env.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def repo_folder(repo_id: str, cache: Path | None = None) -> Path:
    return (cache or cache_dir()) / ("models--" + repo_id.replace("/", "--"))


def snapshot(repo_id: str, revision: str | None = None, cache: Path | None = None) -> Path | None:
    """The cached snapshot folder of `repo_id` at `revision` (default: main), or None if not cached."""
    repo = repo_folder(repo_id, cache)
    snaps = repo / "snapshots"
    if not snaps.is_dir():
        return None
    return resolve_snapshot(repo, revision, repo_id)


def resolve_snapshot(repo: Path, revision: str | None, label: str) -> Path:
    """Pick the snapshot of a `models--org--name` folder: a ref, a commit hash, or the only one."""
    snaps = repo / "snapshots"
    if revision and _COMMIT.match(revision):
        commit = revision
    else:
        ref = repo / "refs" / (revision or "main")
        if ref.is_file():
            with open(ref, "rb") as f:               # a ref holds a 40-char hash; read no more
                commit = f.read(200).decode("utf-8", errors="replace").strip()
        elif revision:
            raise ModelError(f"{label}: revision {revision!r} is not in the Hugging Face cache ({repo})")
        else:
            found = sorted(p.name for p in snaps.iterdir() if p.is_dir()) if snaps.is_dir() else []
            if len(found) != 1:
                raise ModelError(
                    f"{label}: the cache holds {len(found)} snapshots and no refs/main; "
                    f"name one as {label}@<commit> ({', '.join(found[:4]) or 'none'})"
                )
            commit = found[0]
    if not _COMMIT.match(commit) and not (snaps / commit).is_dir():
        raise ModelError(f"{label}: refs in {repo} point to {commit!r}, not a commit hash")
    folder = snaps / commit
    if not folder.is_dir():
        raise ModelError(f"{label}: snapshot {commit} is missing from the Hugging Face cache ({repo})")
    return folder


def is_cache_repo(path: Path) -> bool:
    """A `models--org--name` folder (as people sometimes pass the cache folder itself)."""
    return path.name.startswith("models--") and (path / "snapshots").is_dir()
