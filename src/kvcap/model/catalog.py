"""The embedded model catalog: real config.json files shipped in `data/`.

Two sources: MLC-LLM's presets (`data/mlc_model_presets.json`, keyed by preset name) and HF
configs (`data/hf/<org>__<model>.json`; adding a model = dropping its config.json there, named
`<org>__<model>.json`). Each entry is tagged with its source and grouped by family (from its
model_type, see `families.FAMILY`). Lookup is forgiving about case, punctuation and the
organisation prefix; an ambiguous name lists the candidates.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import ModelError

DATA = Path(__file__).parent / "data"
# Words that distinguish fine-tunes of one base but not its shapes; a name without them still
# finds the entry (e.g. "llama-3.1-8b" finds Llama-3.1-8B-Instruct).
_SUFFIXES = ("instruct", "chat", "it", "base", "hf")


@dataclass(frozen=True)
class Entry:
    key: str          # "llama3_1_8b" or "meta-llama/Llama-3.1-8B-Instruct"
    source: str       # "mlc-preset" or "hf"
    path: str         # file (and preset key) the config comes from

    def config(self) -> dict:
        if self.source == "mlc-preset":
            return dict(_presets()[self.key])
        return json.loads((DATA / "hf" / self.path).read_text())

    @property
    def model_type(self) -> str:
        mt = self.config().get("model_type")
        return mt if isinstance(mt, str) else ""

    @property
    def family(self) -> str:
        from .families import family_of
        return family_of(self.model_type)


def by_family(family: str | None = None) -> tuple[Entry, ...]:
    """Entries of one family (case-insensitive), or all of them; unknown family -> ModelError."""
    if family is None:
        return entries()
    want = family.lower()
    hits = tuple(e for e in entries() if e.family.lower() == want)
    if not hits:
        known = sorted({e.family for e in entries()})
        raise ModelError(f"no catalog family {family!r}; families: {', '.join(known)}")
    return hits


def norm(name: str) -> str:
    """Lower case, alphanumerics only: 'Llama-3.1-8B' and 'llama3_1_8b' both -> 'llama318b'."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _strip(n: str) -> str:
    for s in _SUFFIXES:
        if n.endswith(s) and len(n) > len(s) + 2:
            return n[: -len(s)]
    return n


@lru_cache(maxsize=1)
def _presets() -> dict:
    return json.loads((DATA / "mlc_model_presets.json").read_text())


@lru_cache(maxsize=1)
def entries() -> tuple[Entry, ...]:
    out = [Entry(k, "mlc-preset", f"mlc_model_presets.json[{k}]") for k in _presets()]
    for f in sorted((DATA / "hf").glob("*.json")):
        out.append(Entry(f.stem.replace("__", "/", 1), "hf", f.name))
    return tuple(out)


def _keys(e: Entry) -> set[str]:
    keys = {norm(e.key)}
    if "/" in e.key:
        keys.add(norm(e.key.split("/", 1)[1]))
    return keys | {_strip(k) for k in keys}


@lru_cache(maxsize=1)
def _index() -> dict[str, tuple[Entry, ...]]:
    idx: dict[str, list[Entry]] = {}
    for e in entries():
        for k in _keys(e):
            idx.setdefault(k, []).append(e)
    return {k: tuple(v) for k, v in idx.items()}


def lookup(name: str) -> Entry:
    """Find one catalog entry by a forgiving name; fail with candidates when unsure."""
    n = norm(name.split("/", 1)[1] if name.count("/") == 1 else name)
    if not n:
        raise ModelError(f"{name!r} is not a model name")
    idx = _index()
    # Exact (normalised) key first, then the name without an -Instruct/-Chat suffix.
    for key in (norm(name), n, _strip(n)):
        hits = idx.get(key)
        if hits:
            return _choose(name, hits)
    close = sorted({e.key for k, es in idx.items() if n in k for e in es})
    if len(close) == 1:
        return next(e for e in entries() if e.key == close[0])
    if close:
        raise ModelError(f"{name!r} is ambiguous; candidates: {', '.join(close[:12])}")
    raise ModelError(f"unknown model {name!r}: give a catalog name (see `kvcap models`), a config.json or a model folder")


def _choose(name: str, hits: tuple[Entry, ...]) -> Entry:
    if len(hits) == 1:
        return hits[0]
    # An HF id names one checkpoint exactly; prefer it over an MLC preset of the same shapes.
    exact = [e for e in hits if norm(e.key) == norm(name) or e.key.lower() == name.lower()]
    if len(exact) == 1:
        return exact[0]
    hf = [e for e in hits if e.source == "hf"]
    if len(hf) == 1:
        return hf[0]
    raise ModelError(f"{name!r} is ambiguous; candidates: {', '.join(sorted(e.key for e in hits))}")
