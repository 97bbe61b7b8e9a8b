"""`--quant` and `--kv-dtype` words → each engine's own option values.

A word is a level that every engine maps to its own scheme (16 / 8 / 4 bits: "bf16", "8bit",
"q4", …) or an engine's own name (q4f16_1, Q5_K_M, fp8_e5m2, q4_1), which only the engines
that have it take. A word no engine knows is an OptionsError listing the levels.
"""

from __future__ import annotations

from typing import Iterable

from ..errors import OptionsError
from ..model.spec import ModelSpec
from .engines import ADAPTERS, Adapter, Choice

WEIGHT_LEVELS = {"16": 16, "16bit": 16, "bf16": 16, "fp16": 16, "f16": 16, "none": 16, "unquantized": 16,
                 "8": 8, "8bit": 8, "int8": 8, "q8": 8,
                 "4": 4, "4bit": 4, "int4": 4, "q4": 4}
KV_LEVELS = {"16": 16, "16bit": 16, "auto": 16, "f16": 16, "fp16": 16, "bf16": 16, "none": 16,
             "8": 8, "8bit": 8, "fp8": 8, "int8": 8, "q8": 8, "q8_0": 8,
             "4": 4, "4bit": 4, "int4": 4, "q4": 4, "q4_0": 4}


def _norm(word: str) -> str:
    return word.strip().lower().replace("-", "")


def _pick(levels: dict[int, Choice], words: list[str], table: dict[str, int], native) -> list[Choice]:
    if not words:
        return sorted(levels.values(), key=lambda c: -c.bits)
    out: dict[str, Choice] = {}
    for w in words:
        level = table.get(_norm(w))
        if level is not None:
            c = levels.get(level)
        else:
            c = native(w)
        if c is not None:
            out[c.label] = c
    return sorted(out.values(), key=lambda c: -c.bits)


def weight_choices(ad: Adapter, model: ModelSpec, words: Iterable[str]) -> list[Choice]:
    words = list(words)
    _known(words, WEIGHT_LEVELS, lambda a, w: a.native_weight(w, model), "--quant")
    return _pick(ad.weights(model), words, WEIGHT_LEVELS, lambda w: ad.native_weight(w, model))


def kv_choices(ad: Adapter, model: ModelSpec, words: Iterable[str]) -> list[Choice]:
    words = list(words)
    _known(words, KV_LEVELS, lambda a, w: a.native_kv(w), "--kv-dtype")
    return _pick(ad.kv(model), words, KV_LEVELS, ad.native_kv)


def _known(words: list[str], table: dict[str, int], native, flag: str) -> None:
    for w in words:
        if _norm(w) in table:
            continue
        if not any(native(a, w) is not None for a in ADAPTERS.values()):
            raise OptionsError(f"{flag} {w!r} is neither a level ({', '.join(sorted(set(table), key=len)[:9])} …) "
                               "nor a scheme any engine names (e.g. q4f16_1, Q5_K_M, fp8_e5m2)")
