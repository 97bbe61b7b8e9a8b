"""ggml tensor types and GGUF file types: what a row of n elements costs in bytes.

Block sizes and bytes per block are ggml's own (`ggml/src/ggml-common.h` static_asserts on the
block structs; `ggml/src/ggml.c` `type_traits[]`); a row of a quantized type must hold whole
blocks (`ggml_row_size` asserts `ne % blck_size == 0`).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from ..errors import ModelError, OptionsError


@dataclass(frozen=True)
class GgmlType:
    name: str
    block: int        # elements per block
    size: int         # bytes per block

    def row_bytes(self, n: int) -> int:
        """Bytes of a row of `n` elements (ggml_row_size); n must be whole blocks."""
        if n % self.block:
            raise ModelError(f"a row of {n} elements is not a whole number of {self.name} blocks of {self.block}")
        return n // self.block * self.size

    @property
    def quantized(self) -> bool:
        return self.block > 1


_TYPES = (
    GgmlType("f32", 1, 4), GgmlType("f16", 1, 2), GgmlType("bf16", 1, 2), GgmlType("f64", 1, 8),
    GgmlType("i8", 1, 1), GgmlType("i16", 1, 2), GgmlType("i32", 1, 4), GgmlType("i64", 1, 8),
    GgmlType("q4_0", 32, 18), GgmlType("q4_1", 32, 20), GgmlType("q5_0", 32, 22), GgmlType("q5_1", 32, 24),
    GgmlType("q8_0", 32, 34), GgmlType("q8_1", 32, 36), GgmlType("iq4_nl", 32, 18), GgmlType("mxfp4", 32, 17),
    GgmlType("q2_k", 256, 84), GgmlType("q3_k", 256, 110), GgmlType("q4_k", 256, 144), GgmlType("q5_k", 256, 176),
    GgmlType("q6_k", 256, 210), GgmlType("q8_k", 256, 292),
    GgmlType("iq2_xxs", 256, 66), GgmlType("iq2_xs", 256, 74), GgmlType("iq2_s", 256, 82),
    GgmlType("iq3_xxs", 256, 98), GgmlType("iq3_s", 256, 110), GgmlType("iq1_s", 256, 50), GgmlType("iq1_m", 256, 56),
    GgmlType("iq4_xs", 256, 136), GgmlType("tq1_0", 256, 54), GgmlType("tq2_0", 256, 66),
    GgmlType("nvfp4", 64, 36), GgmlType("q1_0", 128, 18),
)
GGML_TYPES: dict[str, GgmlType] = {t.name: t for t in _TYPES}

# The types `-ctk/-ctv` accept (common/arg.cpp `kv_cache_types`).
KV_CACHE_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")


def ggml_type(name: str) -> GgmlType:
    t = GGML_TYPES.get(str(name).lower())
    if t is None:
        raise ModelError(f"unknown ggml type {name!r}")
    return t


def kv_cache_type(name: object, option: str) -> GgmlType:
    """A `-ctk/-ctv` value, refused the way llama.cpp's argument parser refuses it."""
    if not isinstance(name, str) or name.lower() not in KV_CACHE_TYPES:
        raise OptionsError(f"{option}: unsupported cache type {name!r}; llama.cpp accepts {', '.join(KV_CACHE_TYPES)}")
    return GGML_TYPES[name.lower()]


# ---- GGUF file types (llama_ftype) -------------------------------------------------------------
# Pricing a model by its file type without the file is an estimate: llama-quantize
# (src/llama-quant.cpp, llama_tensor_get_type) mixes types per tensor. kvcap prices the 2-D
# weights at the file type's average bits per weight as llama-quantize's help lists them
# (tools/quantize/quantize.cpp QUANT_OPTIONS), 1-D tensors (norms, biases) at F32 as every GGUF
# stores them, and the output matrix at Q6_K for k-quant and legacy quantized files (the
# llama_tensor_get_type rule for LLM_TENSOR_OUTPUT).
@dataclass(frozen=True)
class FileType:
    name: str
    bits: Fraction          # average bits per weight of the 2-D weights
    output: str             # ggml type of the output (lm_head) matrix
    exact: bool             # every 2-D weight has this one type (no per-tensor mix)


def _ft(name: str, bits: str, output: str = "q6_k", exact: bool = False) -> FileType:
    return FileType(name, Fraction(bits), output, exact)


FILE_TYPES: dict[str, FileType] = {f.name: f for f in (
    _ft("F32", "32", "f32", True), _ft("F16", "16", "f16", True), _ft("BF16", "16", "bf16", True),
    _ft("Q8_0", "8.5", "q8_0", True),
    _ft("Q4_0", "4.5"), _ft("Q4_1", "5"), _ft("Q5_0", "5.5"), _ft("Q5_1", "6"),
    _ft("Q6_K", "6.5625"), _ft("Q5_K_M", "5.69"), _ft("Q5_K_S", "5.54"), _ft("Q4_K_M", "4.89"),
    _ft("Q4_K_S", "4.58"), _ft("Q3_K_L", "4.27"), _ft("Q3_K_M", "3.91"), _ft("Q3_K_S", "3.44"),
    _ft("Q2_K", "3.35"), _ft("Q2_K_S", "2.96"),
    _ft("IQ4_XS", "4.25"), _ft("IQ4_NL", "4.5"), _ft("IQ3_M", "3.66"), _ft("IQ3_S", "3.44"),
    _ft("IQ3_XS", "3.3"), _ft("IQ3_XXS", "3.06"), _ft("IQ2_M", "2.7"), _ft("IQ2_S", "2.5"),
    _ft("IQ2_XS", "2.31"), _ft("IQ2_XXS", "2.06"), _ft("IQ1_M", "1.75"), _ft("IQ1_S", "1.56"),
    _ft("TQ1_0", "1.69"), _ft("TQ2_0", "2.06"), _ft("MXFP4_MOE", "4.25", "q8_0"), _ft("NVFP4", "4.5"),
    _ft("Q1_0", "1.125"),
)}


def file_type(name: object) -> FileType:
    key = str(name).upper().removeprefix("MOSTLY_").replace("-", "_")
    if key == "ALL_F32":
        key = "F32"
    ft = FILE_TYPES.get(key)
    if ft is None:
        raise OptionsError(f"unknown GGUF file type {name!r}; supported: {', '.join(FILE_TYPES)}")
    return ft


def bytes_at_bits(numel: int, bits: Fraction) -> int:
    """Whole bytes for `numel` weights at `bits` per weight (rounded up)."""
    return -(-(numel * bits.numerator) // (8 * bits.denominator))
