"""Safetensors headers -> exact stored bytes; bounded, never reading tensor data."""

from __future__ import annotations

import json
import struct
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from safetensors.numpy import save_file

from kvcap.errors import ModelError
from kvcap.model import load_model
from kvcap.model.limits import ReadLimits
from kvcap.model.safetensors_reader import checkpoint_files, parse_header, read_folder, read_header
from test_reader_files import bytes_read, hf_folder, st_header, tiny_llama, tiny_llama_tensors, write_safetensors


def test_header_of_a_file_written_by_safetensors_numpy(tmp_path):
    arrays = {"embed": np.zeros((100, 8), np.float16), "w": np.zeros((8, 8), np.float32),
              "q": np.zeros((3, 5), np.int32), "m": np.zeros((7,), np.uint8)}
    save_file(arrays, str(tmp_path / "m.safetensors"))
    h = read_header(tmp_path / "m.safetensors")
    assert {e.name: (e.dtype, e.shape) for e in h.entries} == {
        "embed": ("F16", (100, 8)), "w": ("F32", (8, 8)), "q": ("I32", (3, 5)), "m": ("U8", (7,))}
    # 100*8*2 + 8*8*4 + 3*5*4 + 7 = 1600 + 256 + 60 + 7
    assert h.data_size == 1923 == sum(a.nbytes for a in arrays.values())


def test_bf16_and_fp8_bytes_by_dtype(tmp_path):
    write_safetensors(tmp_path / "m.safetensors", {"a": ("BF16", (64, 32)), "b": ("F8_E4M3", (64, 32)),
                                                   "s": ("F32", (1, 1))})
    stored = read_folder(tmp_path)
    # bf16 64*32*2 = 4096; e4m3 64*32*1 = 2048; one f32 = 4
    assert stored.bytes_by_dtype == {"bfloat16": 4096, "float8_e4m3fn": 2048, "float32": 4}
    assert stored.tensors == 3 and stored.numel == 64 * 32 * 2 + 1


def test_sub_byte_dtype_must_fill_whole_bytes():
    doc = {"x": {"dtype": "F4", "shape": [3], "data_offsets": [0, 2]}}
    with pytest.raises(ModelError, match="whole bytes"):
        parse_header(json.dumps(doc).encode(), "t")
    doc = {"x": {"dtype": "F4", "shape": [2, 3], "data_offsets": [0, 3]}}   # 6 x 4 bits = 3 bytes
    assert parse_header(json.dumps(doc).encode(), "t", 3).data_size == 3


def test_hf_folder_gives_exact_stored_bytes_and_tensor_count(tmp_path):
    folder = hf_folder(tmp_path / "tiny", tiny_llama(), tiny_llama_tensors("F16"))
    m = load_model(folder)
    # embed 256*64 + lm_head 256*64 + 2 x (q 64*64 + k,v 2*32*64 + o 64*64 + gate,up 2*128*64
    # + down 64*128 + 2 norms 64) + final norm 64, all 2 bytes.
    params = 2 * 256 * 64 + 2 * (4096 + 4096 + 4096 + 16384 + 8192 + 128) + 64
    assert m.stored_bytes == {"float16": 2 * params}
    assert m.stored_tensors == 1 + 2 * 9 + 2 and m.num_params == params
    assert m.quantization == {} and m.source == str(folder)


def test_sharded_checkpoint_follows_its_index(tmp_path):
    folder = hf_folder(tmp_path / "m", tiny_llama())
    t = tiny_llama_tensors("BF16")
    names = list(t)
    first, second = dict((n, t[n]) for n in names[:10]), dict((n, t[n]) for n in names[10:])
    write_safetensors(folder / "model-00001-of-00002.safetensors", first)
    write_safetensors(folder / "model-00002-of-00002.safetensors", second)
    # A stray file the index does not name must not be counted (Mistral repos ship one).
    write_safetensors(folder / "consolidated.safetensors", {"x": ("F32", (1000,))})
    weight_map = {n: "model-00001-of-00002.safetensors" for n in first}
    weight_map.update({n: "model-00002-of-00002.safetensors" for n in second})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    stored = read_folder(folder)
    assert stored.files == ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")
    assert stored.bytes_by_dtype == {"bfloat16": 2 * sum(np.prod(s) for _, s in t.values())}


def test_index_naming_a_missing_shard_is_an_incomplete_download(tmp_path):
    folder = hf_folder(tmp_path / "m", tiny_llama())
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "model-00001-of-00002.safetensors"}}))
    with pytest.raises(ModelError, match="missing file.*incomplete download"):
        load_model(folder)


def test_index_cannot_point_outside_the_folder(tmp_path):
    folder = hf_folder(tmp_path / "m", tiny_llama())
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "../x.safetensors"}}))
    with pytest.raises(ModelError, match="not a file name in the folder"):
        checkpoint_files(folder)


def test_shards_without_index_must_be_a_complete_set(tmp_path):
    write_safetensors(tmp_path / "model-00001-of-00003.safetensors", {"a": ("F16", (2,))})
    write_safetensors(tmp_path / "model-00002-of-00003.safetensors", {"b": ("F16", (2,))})
    with pytest.raises(ModelError, match="incomplete set"):
        checkpoint_files(tmp_path)
    write_safetensors(tmp_path / "model-00003-of-00003.safetensors", {"c": ("F16", (2,))})
    assert len(checkpoint_files(tmp_path)) == 3
    write_safetensors(tmp_path / "consolidated.safetensors", {"c": ("F16", (2,))})
    with pytest.raises(ModelError, match="cannot tell which"):
        checkpoint_files(tmp_path)


def test_folder_without_weights_is_config_only(tmp_path):
    m = load_model(hf_folder(tmp_path / "m", tiny_llama()))
    assert m.stored_bytes == {} and m.stored_tensors == 0


# ---- bad input: one-line ModelError, bounded memory ------------------------------------------

def _file(tmp_path, data: bytes):
    p = tmp_path / "bad.safetensors"
    p.write_bytes(data)
    return p


@pytest.mark.parametrize("data, message", [
    (b"", "too short"),
    (b"\x05\x00\x00", "too short"),
    (struct.pack("<Q", 2**64 - 8) + b"{}", "above the 100000000-byte safetensors header cap"),
    (struct.pack("<Q", 64) + b"{}", "declares 64 bytes but the file holds 2"),
    (struct.pack("<Q", 4) + b"\xff\xfe{}", "not valid UTF-8 JSON"),
    (struct.pack("<Q", 5) + b"{\"a\":", "not valid UTF-8 JSON"),
    (struct.pack("<Q", 2) + b"[]", "must be a JSON object"),
    (struct.pack("<Q", 2) + b"{}" + b"\x00" * 4, "4 bytes follow the last tensor"),
])
def test_corrupt_files_fail_with_one_line(tmp_path, data, message):
    with pytest.raises(ModelError, match=message) as e:
        read_header(_file(tmp_path, data))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("entry, message", [
    ({"dtype": "Q4", "shape": [2], "data_offsets": [0, 2]}, "unknown dtype 'Q4'"),
    ({"dtype": "F16", "shape": [2, -1], "data_offsets": [0, 2]}, "non-negative integer"),
    ({"dtype": "F16", "shape": [True], "data_offsets": [0, 2]}, "non-negative integer"),
    ({"dtype": "F16", "shape": [4], "data_offsets": [0, 6]}, "declares 6 bytes .* needs 8"),
    ({"dtype": "F16", "shape": [4], "data_offsets": [8, 0]}, "declares -8 bytes"),
    ({"dtype": "F16", "shape": "4", "data_offsets": [0, 8]}, "shape list"),
    ({"dtype": "F16", "shape": [4], "data_offsets": [0]}, r"data_offsets \[begin, end\]"),
    ("nope", "must be described by an object"),
])
def test_bad_tensor_entries(entry, message):
    with pytest.raises(ModelError, match=message):
        parse_header(json.dumps({"t": entry}).encode(), "h")


def test_gaps_and_overlaps_are_refused():
    gap = {"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
           "b": {"dtype": "U8", "shape": [4], "data_offsets": [6, 10]}}
    with pytest.raises(ModelError, match="gap of 2 bytes"):
        parse_header(json.dumps(gap).encode(), "h")
    overlap = {"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
               "b": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]}}
    with pytest.raises(ModelError, match="overlaps"):
        parse_header(json.dumps(overlap).encode(), "h")


def test_metadata_must_map_strings_to_strings():
    with pytest.raises(ModelError, match="__metadata__"):
        parse_header(json.dumps({"__metadata__": {"format": 1}}).encode(), "h")


def test_header_cap_is_configurable_and_named(tmp_path):
    p = tmp_path / "m.safetensors"
    write_safetensors(p, {"w": ("F16", (4, 4))})
    with pytest.raises(ModelError, match=r"above the 16-byte .*ReadLimits.max_safetensors_header"):
        read_header(p, ReadLimits(max_safetensors_header=16))


def test_header_declaring_more_data_than_the_file_holds(tmp_path):
    """A truncated download: the header promises 64 MiB, the file holds 1 KiB of it."""
    head, size = st_header({"w": ("F32", (4096, 4096))})
    p = _file(tmp_path, head + bytes(1024))
    tracemalloc.start()
    with pytest.raises(ModelError, match=f"declares {size} bytes of tensor data but the file holds 1024"):
        read_header(p)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1 << 20


def test_large_declared_tensor_is_never_read(tmp_path):
    """An 8 GiB bf16 tensor in a sparse file: exact bytes from the header, the data never read."""
    p = tmp_path / "big.safetensors"
    rows, cols = 65536, 65536               # 2^32 elements x 2 bytes = 8 GiB
    write_safetensors(p, {"w": ("BF16", (rows, cols)), "n": ("F32", (cols,))}, sparse=True)
    before = bytes_read()
    tracemalloc.start()
    h = read_header(p)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    after = bytes_read()
    assert h.data_size == rows * cols * 2 + cols * 4 == 8 * 2**30 + 4 * 65536
    assert {e.name: e.nbytes for e in h.entries} == {"w": 8 * 2**30, "n": 65536 * 4}
    assert peak < 1 << 20
    if before is not None:
        assert after - before < 1 << 20     # the 8 GiB of data was not read


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_header_bytes_end_in_a_header_or_a_model_error(raw):
    try:
        parse_header(raw, "fuzz", len(raw))
    except ModelError as e:
        assert "\n" not in str(e)


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=300), st.binary(min_size=1, max_size=4))
def test_truncated_or_patched_files_never_crash(tmp_path_factory, cut, patch):
    d = tmp_path_factory.mktemp("st")
    head, size = st_header({"a": ("F16", (4, 4)), "b": ("I32", (3,))}, {"format": "pt"})
    data = bytearray(head + bytes(size))
    if cut < len(data):
        data = data[:cut] + patch + data[cut + len(patch):]
    p = d / "x.safetensors"
    p.write_bytes(bytes(data))
    try:
        read_header(p)
    except ModelError as e:
        assert "\n" not in str(e)
