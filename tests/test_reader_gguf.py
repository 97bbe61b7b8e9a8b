"""GGUF: metadata and every tensor's type and shape -> exact bytes, never reading tensor data."""

from __future__ import annotations

import struct
import time
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from kvcap.errors import ModelError
from kvcap.model import load_model
from kvcap.model.gguf_reader import GGML_TYPES, FILE_TYPES, read_gguf, read_gguf_model
from kvcap.model.limits import ReadLimits
from test_reader_files import bytes_read, gguf_string, kv_str, kv_u32, raw_gguf, tensor_info, write_gguf

# A Llama small enough to write, wide enough for k-quants (rows must be multiples of 256):
# hidden 256, 4 heads of 64, 2 KV heads, FFN 512, vocab 320, 2 layers.
META = {"llama.block_count": 2, "llama.embedding_length": 256, "llama.attention.head_count": 4,
        "llama.attention.head_count_kv": 2, "llama.feed_forward_length": 512, "llama.context_length": 4096,
        "llama.attention.layer_norm_rms_epsilon": 1e-5, "general.name": "tiny-llama"}


def llama_tensors(n_layers: int = 2) -> list[tuple[str, str, tuple[int, ...]]]:
    t = [("token_embd.weight", "q8_0", (256, 320))]
    for i in range(n_layers):
        p = f"blk.{i}."
        t += [(p + "attn_norm.weight", "f32", (256,)), (p + "attn_q.weight", "q4_K", (256, 256)),
              (p + "attn_k.weight", "q4_K", (256, 128)), (p + "attn_v.weight", "q6_K", (256, 128)),
              (p + "attn_output.weight", "q4_K", (256, 256)), (p + "ffn_norm.weight", "f32", (256,)),
              (p + "ffn_gate.weight", "q4_K", (256, 512)), (p + "ffn_up.weight", "q4_K", (256, 512)),
              (p + "ffn_down.weight", "q6_K", (512, 256))]
    return t + [("output_norm.weight", "f32", (256,)), ("output.weight", "q6_K", (256, 320))]


@pytest.fixture
def tiny_gguf(tmp_path):
    p = tmp_path / "tiny-Q4_K_M.gguf"
    write_gguf(p, "llama", META, llama_tensors(), file_type=15)
    return p


def test_quantized_gguf_bytes_by_type_worked_by_hand(tiny_gguf):
    g = read_gguf(tiny_gguf)
    # q8_0: 32 values in 34 bytes. token_embd 320 rows x 256/32*34 = 272 bytes.
    q8_0 = 320 * 272
    # q4_K: 256 values in 144 bytes. Per layer q 256 rows, k 128, o 256, gate 512, up 512 rows of 144.
    q4_k = 2 * (256 + 128 + 256 + 512 + 512) * 144
    # q6_K: 256 values in 210 bytes. Per layer v 128 rows x 210, down 256 rows x 2*210; output 320 x 210.
    q6_k = 2 * (128 * 210 + 256 * 420) + 320 * 210
    f32 = (2 * 2 + 1) * 256 * 4
    assert g.bytes_by_type == {"f32": f32, "q4_K": q4_k, "q6_K": q6_k, "q8_0": q8_0}
    assert len(g.tensors) == 1 + 2 * 9 + 2 and g.version == 3


def test_bytes_match_the_gguf_packages_own_reader(tiny_gguf):
    from gguf import GGUFReader
    theirs: dict[str, int] = {}
    for t in GGUFReader(str(tiny_gguf)).tensors:
        theirs[t.tensor_type.name.lower()] = theirs.get(t.tensor_type.name.lower(), 0) + int(t.n_bytes)
    assert {k.lower(): v for k, v in read_gguf(tiny_gguf).bytes_by_type.items()} == theirs


def test_gguf_file_to_model_spec(tiny_gguf):
    m = load_model(tiny_gguf)
    assert (m.model_type, m.num_hidden_layers, m.num_attention_heads, m.num_key_value_heads) == ("llama", 2, 4, 2)
    assert (m.head_dim, m.vocab_size, m.context_window, m.tie_word_embeddings) == (64, 320, 4096, False)
    assert m.name == "tiny-llama" and m.source == f"gguf:{tiny_gguf}"
    assert m.quantization["file_type"] == "Q4_K_M" and m.quantization["format"] == "gguf"
    assert sum(m.stored_bytes.values()) == sum(read_gguf(tiny_gguf).bytes_by_type.values())
    assert m.stored_tensors == 21
    # The ggml shapes hold exactly the parameters the family builder lists for this config.
    assert m.num_params == sum(t.numel for t in m.tensors) == 320 * 256 * 2 + 2 * (
        256 * 256 * 2 + 128 * 256 * 2 + 512 * 256 * 3 + 2 * 256) + 256


def test_ggml_type_table_matches_gguf_py():
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
    for qtype, (block, size) in GGML_QUANT_SIZES.items():
        if qtype == GGMLQuantizationType.Q8_1:
            # ggml-common.h: block_q8_1 = {ggml_half d, s; int8 qs[32]} = 36 bytes; gguf-py still
            # says 40 (the old float d, s). Q8_1 is a dot-product type, never stored in files.
            assert GGML_TYPES[qtype.value][1:] == (32, 36)
            continue
        assert GGML_TYPES[qtype.value][1:] == (block, size), qtype.name
        assert GGML_TYPES[qtype.value][0].lower() == qtype.name.lower()


def test_file_type_names_match_gguf_py():
    from gguf import LlamaFileType
    for ft in LlamaFileType:
        if ft.value in FILE_TYPES:
            assert ft.name.removeprefix("MOSTLY_").replace("ALL_", "") == FILE_TYPES[ft.value]


def test_split_gguf_sums_every_part(tmp_path):
    tensors = llama_tensors()
    first, second = tensors[:8], tensors[8:]
    meta = dict(META, **{"split.count": 2})
    write_gguf(tmp_path / "m-00001-of-00002.gguf", "llama", dict(meta, **{"split.no": 0}), first)
    write_gguf(tmp_path / "m-00002-of-00002.gguf", "llama", dict(meta, **{"split.no": 1}), second)
    g, all_tensors, files = read_gguf_model(tmp_path / "m-00001-of-00002.gguf")
    assert len(all_tensors) == len(tensors) and len(files) == 2
    # A folder holding the parts loads through its first part.
    assert load_model(tmp_path).stored_tensors == len(tensors)
    (tmp_path / "m-00002-of-00002.gguf").unlink()
    with pytest.raises(ModelError, match="part m-00002-of-00002.gguf is missing"):
        load_model(tmp_path / "m-00001-of-00002.gguf")


def test_mmproj_is_not_a_language_model(tmp_path):
    write_gguf(tmp_path / "mmproj.gguf", "clip", {}, [("v.w", "f16", (32, 32))])
    with pytest.raises(ModelError, match="mmproj"):
        load_model(tmp_path / "mmproj.gguf")


def test_unsupported_architecture_fails_closed(tmp_path):
    write_gguf(tmp_path / "m.gguf", "rwkv7", {"rwkv7.block_count": 2}, [("w", "f32", (4,))])
    with pytest.raises(ModelError, match="architecture 'rwkv7' is not supported; supported: .*llama"):
        load_model(tmp_path / "m.gguf")


def test_per_layer_kv_heads_that_vary_are_refused(tmp_path):
    meta = dict(META, **{"llama.attention.head_count_kv": [2, 1]})
    write_gguf(tmp_path / "m.gguf", "llama", meta, llama_tensors())
    with pytest.raises(ModelError, match="head_count_kv varies by layer"):
        load_model(tmp_path / "m.gguf")
    meta["llama.attention.head_count_kv"] = [2, 2]
    write_gguf(tmp_path / "u.gguf", "llama", meta, llama_tensors())
    assert load_model(tmp_path / "u.gguf").num_key_value_heads == 2


def test_tied_embeddings_when_there_is_no_output_tensor(tmp_path):
    write_gguf(tmp_path / "m.gguf", "llama", META, llama_tensors()[:-1])
    assert load_model(tmp_path / "m.gguf").tie_word_embeddings is True


# ---- bad input ----------------------------------------------------------------------------

def _write(tmp_path, data: bytes, name="bad.gguf"):
    p = tmp_path / name
    p.write_bytes(data)
    return p


@pytest.mark.parametrize("data, message", [
    (b"", "not a GGUF file"),
    (b"GGML\x03\x00\x00\x00", "not a GGUF file"),
    (b"GGUF\x01\x00\x00\x00" + bytes(16), "version 1 is no longer supported"),
    (b"GGUF\x00\x00\x00\x03" + bytes(16), "big-endian"),
    (b"GGUF\x07\x00\x00\x00" + bytes(16), "unknown GGUF version 7"),
    (b"GGUF\x03\x00\x00\x00" + bytes(3), "truncated GGUF: tensor count"),
    (raw_gguf([], [], n_kv=2**63), "truncated GGUF"),
    (raw_gguf([], [], n_tensors=2**64 - 1), "truncated GGUF"),
    (raw_gguf([struct.pack("<Q", 2**64 - 2) + b"abc" + bytes(16)], []), "truncated GGUF: a metadata key needs"),
    (raw_gguf([gguf_string("k") + struct.pack("<I", 77) + b"\x00"], []), "unknown GGUF value type 77"),
    (raw_gguf([gguf_string("k") + struct.pack("<IIQ", 9, 8, 2**62)], []), "truncated GGUF: array 'k' of"),
    (raw_gguf([gguf_string("k") + struct.pack("<IIQ", 9, 9, 1)], []), "array of arrays"),
    (raw_gguf([kv_u32("a", 1), kv_u32("a", 2)], []), "duplicate metadata key 'a'"),
    (raw_gguf([kv_u32("general.alignment", 24)], []), "power of two"),
    (raw_gguf([], [tensor_info("w", (32,), 4, 0)]), "unknown or removed ggml type 4"),
    (raw_gguf([], [tensor_info("w", (48,), 12, 0)]), "48 elements per row, not a multiple of 256"),
    (raw_gguf([], [tensor_info("w", (1, 1, 1, 1, 1), 0, 0)]), "5 dims"),
    (raw_gguf([], [tensor_info("w", (2**63, 2), 0, 0)]), "impossible shape"),
    (raw_gguf([], [tensor_info("x" * 80, (4,), 0, 0)]), "longer than 63 bytes"),
    (raw_gguf([], [tensor_info("w", (4,), 0, 0), tensor_info("w", (4,), 0, 32)]), "duplicate tensor name"),
    (raw_gguf([], [tensor_info("w", (4,), 0, 64)]), "offset 64, expected 0"),
])
def test_corrupt_gguf_fails_with_one_line(tmp_path, data, message):
    start = time.monotonic()
    with pytest.raises(ModelError, match=message) as e:
        read_gguf(_write(tmp_path, data))
    assert "\n" not in str(e.value) and time.monotonic() - start < 2


def test_tensor_larger_than_the_file(tmp_path):
    """A header declaring a 16 GiB f32 tensor in a file of a few hundred bytes."""
    data = raw_gguf([kv_str("general.architecture", "llama")], [tensor_info("w", (65536, 65536), 0, 0)])
    tracemalloc.start()
    with pytest.raises(ModelError, match=r"'w' \(f32 \[65536, 65536\], 17179869184 bytes .* runs past the end"):
        read_gguf(_write(tmp_path, data + bytes(64)))
    assert tracemalloc.get_traced_memory()[1] < 1 << 20
    tracemalloc.stop()


def test_large_declared_tensor_is_never_read(tmp_path):
    """An 8 GiB q8_0 tensor in a sparse file: exact bytes, and the data is not read."""
    ne = (65536, 131072)                     # 2^33 values in q8_0 = 2^33/32*34 bytes = 8.5 GiB
    head = raw_gguf([kv_str("general.architecture", "llama")], [tensor_info("w", ne, 8, 0)])
    data_start = (len(head) + 31) // 32 * 32
    nbytes = ne[0] // 32 * 34 * ne[1]
    p = tmp_path / "big.gguf"
    with open(p, "wb") as f:
        f.write(head)
        f.truncate(data_start + nbytes)
    before = bytes_read()
    g = read_gguf(p)
    after = bytes_read()
    assert g.bytes_by_type == {"q8_0": 9126805504} and nbytes == 9126805504
    assert g.data_offset == data_start
    if before is not None:
        assert after - before < 1 << 20


def test_metadata_cap_is_configurable_and_named(tiny_gguf):
    with pytest.raises(ModelError, match=r"past the 512-byte cap .*ReadLimits.max_gguf_metadata"):
        read_gguf(tiny_gguf, ReadLimits(max_gguf_metadata=512))


def test_long_token_list_is_skipped_not_kept(tmp_path):
    meta = dict(META, **{"tokenizer.ggml.tokens": [f"t{i}" for i in range(5000)]})
    tensors = [t for t in llama_tensors() if t[0] != "token_embd.weight"]
    write_gguf(tmp_path / "m.gguf", "llama", meta, tensors)
    g = read_gguf(tmp_path / "m.gguf")
    assert g.metadata["tokenizer.ggml.tokens"].count == 5000
    assert load_model(tmp_path / "m.gguf").vocab_size == 5000   # no token_embd: the token list decides


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(min_value=0, max_value=2000), st.binary(min_size=1, max_size=8))
def test_truncated_or_patched_gguf_never_crashes(tmp_path, cut, patch):
    src = tmp_path / "src.gguf"
    if not src.exists():
        write_gguf(src, "llama", META, llama_tensors(1))
    data = bytearray(src.read_bytes())
    data = data[:cut] if cut % 2 else data[:cut] + patch + data[cut + len(patch):]
    p = tmp_path / "fuzz.gguf"
    p.write_bytes(bytes(data))
    start = time.monotonic()
    try:
        load_model(p)
    except ModelError as e:
        assert "\n" not in str(e)
    assert time.monotonic() - start < 5


def test_string_arrays_are_skipped_exactly_across_chunk_boundaries(tmp_path):
    """Strings of every size (some over the 1 MiB read chunk) are walked, and the key after them
    still reads right."""
    words = ["a" * (3 << 20), "b", ""] + [f"w{i}" for i in range(3000)] + ["q" * (1 << 20)] * 2 + ["z"]
    arr = struct.pack("<IQ", 8, len(words)) + b"".join(gguf_string(w) for w in words)
    data = raw_gguf([gguf_string("tokenizer.ggml.tokens") + struct.pack("<I", 9) + arr, kv_u32("after", 7)], [])
    g = read_gguf(_write(tmp_path, data))
    assert g.metadata["tokenizer.ggml.tokens"].count == len(words) and g.metadata["after"] == 7
    with pytest.raises(ModelError, match="truncated GGUF: an element of 'tokenizer.ggml.tokens'"):
        read_gguf(_write(tmp_path, data[: len(data) // 2], "cut.gguf"))


@pytest.mark.parametrize("data, limits, message", [
    (raw_gguf([kv_u32(f"k{i}", i) for i in range(5)], []), ReadLimits(max_gguf_keys=4), "ReadLimits.max_gguf_keys"),
    (raw_gguf([], [tensor_info(f"t{i}", (4,), 0, 32 * i) for i in range(3)]), ReadLimits(max_gguf_tensors=2),
     "ReadLimits.max_gguf_tensors"),
    (raw_gguf([gguf_string("a") + struct.pack("<IIQ", 9, 4, 10) + bytes(40)], []), ReadLimits(max_gguf_array=9),
     "declares 10 elements, above the cap of 9 .ReadLimits.max_gguf_array"),
])
def test_gguf_count_caps(tmp_path, data, limits, message):
    with pytest.raises(ModelError, match=message):
        read_gguf(_write(tmp_path, data + bytes(256)), limits)


def test_worst_case_array_within_the_caps_is_fast(tmp_path):
    """2M empty strings (the array cap) inside the 64 MiB metadata cap: skipped in about a second."""
    n = ReadLimits().max_gguf_array
    data = raw_gguf([gguf_string("t") + struct.pack("<IIQ", 9, 8, n) + bytes(8 * n)], [])
    start = time.monotonic()
    assert read_gguf(_write(tmp_path, data)).metadata["t"].count == n
    assert time.monotonic() - start < 5
