"""A scratch folder of fuzzed inputs on disk (model files, configs, case files, calibrations),
and the pools of names, sizes and counts the argv generator draws from.

Files are written into a few rotating slots per kind, so a long run uses bounded disk.
"""

from __future__ import annotations

import json
import random
from functools import lru_cache
from pathlib import Path
from typing import Any

from . import files
from .jsonmut import mutate

SLOTS = 6
# Each pool: the values a user would type first, then the ones that break naive parsing.
INTS = ("1", "2", "8", "4096", "0", "-1", "3", "64", "32768", "131072", "2147483648", "9" * 25, "-99999",
        "1e3", "0x10", " 7", "\u0663", "")
FLOATS = ("0.9", "0.5", "0.95", "1", "0", "1.5", "-0.1", "nan", "inf", "-inf", "1e-300", "1e308", "0.95", "abc", "0.5")
SIZES = ("24GiB", "80GB", "16GiB", "512MiB", "0", "-1GiB", "1e30", "nan", "inf", "16", "1.5TiB", "512MiB", "abc", "", "9" * 40,
         "24 GiB", "1e-9GiB", "0x10GiB", "0.5B", "8gb", "1PiB", "-0", "GiB", "100000000000000000000000GiB")
TOKENS = ("32k", "8k", "4096", "128k", "0", "-1", "1m", "1e9", "nan", "abc", "9" * 20, "1.5k", "2147483647", "1", "8k")
JUNK = ("", " ", "-", "--", "x", "a" * 300, "../../etc/passwd", "/dev/null", "/nonexistent/model.gguf",
        "nul\x00byte", "é", "org/name", "org/name@main", "meta-llama/Llama-3.1-8B-Instruct@" + "0" * 40,
        "~/nothing.json", ".", "..", "llama", "qwen", "gemma-2", "8b", "mlc", "vllm", "h100", "rtx")
ENGINE_NAMES = ("mlc", "vllm", "llamacpp", "ollama", "sglang", "mlx", "mlc-llm", "llama.cpp", "mlx-lm",
                "VLLM", "tgi", "", "trt")
BACKEND_NAMES = ("cuda", "rocm", "metal", "vulkan", "opencl", "webgpu", "cpu", "CUDA", "tpu", "")
QUANTS = ("q4f16_1", "q0f16", "q4f32_1", "q0bf16", "q3f16_1", "q4f16_awq", "awq", "fp8", "int4", "Q4_K_M",
          "f16", "bf16", "q8_0", "none", "auto", "gptq", "nonsense")
KV_DTYPES = ("auto", "fp8", "f16", "q8_0", "fp8_e4m3", "fp8_e5m2", "f16", "q8_0", "q4_0", "bf16", "float16", "int8", "x")


@lru_cache(maxsize=1)
def catalog_configs() -> tuple[tuple[str, dict], ...]:
    """(name, config) of every catalog model: the seeds of config mutation."""
    from kvcap.model import catalog
    return tuple((e.key, e.config()) for e in catalog.entries())


@lru_cache(maxsize=1)
def device_keys() -> tuple[str, ...]:
    from kvcap.device import catalog
    return tuple(e.key for e in catalog.entries())


@lru_cache(maxsize=1)
def option_names() -> tuple[str, ...]:
    from kvcap.engines import available, get_engine
    names: set[str] = set()
    for e in available():
        names |= set(get_engine(e).OPTIONS)
    return tuple(sorted(names))


def pick(rng: random.Random, pool: tuple[str, ...], good: int = 4) -> str:
    """Mostly (70 %) one of the pool's first `good` (sensible) values, else any of them."""
    return rng.choice(pool[:good] if rng.random() < 0.7 else pool)


def value(rng: random.Random) -> str:
    pool = rng.choice((INTS, FLOATS, SIZES, TOKENS, QUANTS, KV_DTYPES, ("true", "false", "True", "1"), JUNK))
    return rng.choice(pool)


class World:
    def __init__(self, root: Path, cases: list[dict] | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.cases = cases or []

    def _slot(self, kind: str, rng: random.Random) -> Path:
        p = self.root / f"{kind}{rng.randrange(SLOTS)}"
        p.mkdir(exist_ok=True)
        for child in p.iterdir():                 # a fresh folder: stale files would change routing
            if child.is_file() or child.is_symlink():
                child.unlink()
        return p

    # --- model inputs ---
    def config_dict(self, rng: random.Random) -> dict:
        name, cfg = rng.choice(catalog_configs())
        return mutate(rng, cfg) if rng.random() < 0.9 else dict(cfg)

    def config_file(self, rng: random.Random) -> Path:
        p = self._slot("cfg", rng) / "config.json"
        r = rng.random()
        if r < 0.8:
            p.write_text(json.dumps(self.config_dict(rng), allow_nan=True, default=str))
        elif r < 0.85:
            p.write_text("[" * 100_000 + "]" * 100_000)          # nesting past the recursion limit
        elif r < 0.9:
            p.write_bytes(rng.randbytes(rng.randint(0, 512)))
        elif r < 0.95:
            p.write_text('{"model_type": "llama", "hidden_size": NaN, "num_hidden_layers": Infinity}')
        else:
            p.write_text(json.dumps(self.config_dict(rng))[: rng.randint(0, 200)])
        return p

    def gguf_file(self, rng: random.Random) -> Path:
        p = self._slot("gguf", rng) / rng.choice(("model.gguf", "m-00001-of-00002.gguf", "model.bin"))
        p.write_bytes(files.gguf_case(rng))
        return p

    def safetensors_folder(self, rng: random.Random) -> Path:
        d = self._slot("st", rng)
        data, cfg = files.safetensors_case(rng)
        (d / "config.json").write_text(json.dumps(cfg, allow_nan=True, default=str))
        if rng.random() < 0.2:
            names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
            (d / names[0]).write_bytes(data)
            if rng.random() < 0.7:
                (d / names[1]).write_bytes(files.st_bytes({}, 0))
            if rng.random() < 0.7:
                (d / "model.safetensors.index.json").write_text(json.dumps(files.index_case(rng, names), default=str))
        else:
            (d / "model.safetensors").write_bytes(data)
        return d if rng.random() < 0.8 else d / "model.safetensors"

    def mlc_folder(self, rng: random.Random) -> Path:
        d = self._slot("mlc", rng)
        chat, cache = files.mlc_case(rng)
        (d / "mlc-chat-config.json").write_text(json.dumps(chat, allow_nan=True, default=str))
        if cache is not None:
            (d / "tensor-cache.json").write_text(json.dumps(cache, allow_nan=True, default=str))
        return d

    def model_arg(self, rng: random.Random) -> str:
        r = rng.random()
        if r < 0.55:
            return rng.choice(catalog_configs())[0]
        if r < 0.65:
            return str(self.config_file(rng))
        if r < 0.75:
            return str(self.gguf_file(rng))
        if r < 0.85:
            return str(self.safetensors_folder(rng))
        if r < 0.92:
            return str(self.mlc_folder(rng))
        return rng.choice(JUNK)

    # --- other files ---
    def case_file(self, rng: random.Random) -> Path:
        p = self._slot("cases", rng) / "cases.jsonl"
        lines = []
        for _ in range(rng.randint(0, 3)):
            r = rng.random()
            if self.cases and r < 0.75:
                case = rng.choice(self.cases)
                lines.append(json.dumps(mutate(rng, case, extra_keys=("given", "observed", "options", "model",
                                                                        "device", "tolerance", "mode_lines")),
                                        allow_nan=True, default=str))
            elif self.cases and r < 0.85:
                lines.append(json.dumps(rng.choice(self.cases)))
            else:
                lines.append(rng.choice(("", "{}", "[]", "null", '{"id": 1}', "{", '{"id": "x", "engine": "mlc", '
                                         '"observed": {}}', '{"id": "x", "engine": "../x", "observed": {"a": 1}}',
                                         "[" * 50_000, '"\ud800"')))
        p.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
        if rng.random() < 0.05:
            p.write_bytes(rng.randbytes(64))
        return p

    def calibration_file(self, rng: random.Random) -> str:
        p = self._slot("cal", rng) / "calibration.json"
        r = rng.random()
        if r < 0.3:
            p.write_bytes(rng.randbytes(rng.randint(0, 64)))
        elif r < 0.4:
            p.write_text("[" * 100_000)
        elif r < 0.8:
            doc: Any = {"kvcap_calibration": 1, "device": {"name": "x", "backend": "cuda", "total_memory_bytes": 1},
                        "date": "2025-01-01", "kernel": "torch", "copy_bandwidth_gbps": 1.0,
                        "kernel_bandwidth_gbps": 1.0,
                        "layouts": {"single": {"verdict": {"cliff_bytes": None, "max_ok_bytes": 1,
                                                           "measured_up_to_bytes": 1, "tolerance": 0.1}}}}
            p.write_text(json.dumps(mutate(rng, doc), allow_nan=True, default=str))
        else:
            return rng.choice(("/nonexistent.json", str(self.root), "/dev/null"))
        return str(p)

    def out_file(self, rng: random.Random) -> str:
        return str(self.root / ("out" + rng.choice((".png", ".svg", ".txt", "", ".PNG"))))
