"""Every reader of a file kvcap is handed caps what it reads, checks a declared size against
the file before allocating, and names the limit it hit.

The safetensors header and the GGUF metadata/counts are covered in test_reader_safetensors.py
and test_reader_gguf.py (header cap, declared length near 2^64, data past the end, count caps);
here: the readers and limits those files do not test: config.json, the safetensors index,
split GGUF sets, skipped GGUF string arrays, MLC tensor caches, hub metadata, HF cache refs,
validation case files, calibration files, and files that are not regular files at all.
"""

from __future__ import annotations

import json
import os
import struct
import time
import tracemalloc
from dataclasses import dataclass

import pytest

from kvcap.cli import main
from kvcap.errors import ModelError, OptionsError
from kvcap.model import ReadLimits, load_model
from kvcap.model.gguf_reader import KEEP_STRINGS, read_gguf, read_gguf_model
from kvcap.model.hub import stored_from_metadata
from kvcap.model.mlc_folder import read_tensor_cache
from test_reader_files import (bytes_read, gguf_string, hf_folder, kv_str, kv_u32, raw_gguf, tensor_info, tiny_llama,
                               tiny_llama_tensors, write_safetensors)

MiB = 1 << 20


class Bounded:
    """Peak Python allocation and bytes read() while the block runs."""

    def __enter__(self):
        self.read0 = bytes_read()
        tracemalloc.start()
        self.t0 = time.monotonic()
        return self

    def __exit__(self, *exc):
        self.seconds = time.monotonic() - self.t0
        self.peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        after = bytes_read()
        self.read = None if self.read0 is None or after is None else after - self.read0
        return False

    def assert_small(self, peak: int = 4 * MiB, read: int = 2 * MiB, seconds: float = 2.0) -> None:
        assert self.peak < peak, f"allocated {self.peak} bytes"
        if self.read is not None:
            assert self.read < read, f"read {self.read} bytes"
        assert self.seconds < seconds


def _one_line(e: BaseException) -> str:
    assert str(e) and "\n" not in str(e)
    return str(e)


# --- config.json -------------------------------------------------------------------------------
def test_config_json_larger_than_its_cap_is_never_parsed(tmp_path):
    cfg = tiny_llama(padding="x" * 5000)          # a 5 KB config.json under a 4 KiB cap
    folder = hf_folder(tmp_path / "m", cfg)
    with Bounded() as b, pytest.raises(ModelError, match=r"too large .*limit 4096, ReadLimits.max_config") as e:
        load_model(folder, limits=ReadLimits(max_config=4096))
    b.assert_small()
    _one_line(e.value)
    # the same file as a path, and the default cap lets it through
    with pytest.raises(ModelError, match="ReadLimits.max_config"):
        load_model(folder / "config.json", limits=ReadLimits(max_config=4096))
    assert load_model(folder).num_hidden_layers == 2


def test_config_json_that_never_ends_is_refused_before_reading(tmp_path):
    # A symlink to /dev/zero reports size 0 and never ends; a FIFO blocks until a writer comes.
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").symlink_to("/dev/zero")
    with Bounded() as b, pytest.raises(ModelError, match="not a regular file"):
        load_model(folder / "config.json")
    b.assert_small()
    os.mkfifo(tmp_path / "fifo.json")
    with Bounded() as b, pytest.raises(ModelError, match="not a regular file"):
        load_model(tmp_path / "fifo.json")
    b.assert_small()


@pytest.mark.parametrize("name", ["model.gguf", "model.safetensors", "weights"])
def test_model_files_that_are_devices_or_fifos(tmp_path, name):
    hf_folder(tmp_path / "zero", tiny_llama())       # a .safetensors file is read beside its config
    hf_folder(tmp_path, tiny_llama())
    (tmp_path / "zero" / name).symlink_to("/dev/zero")
    os.mkfifo(tmp_path / name)
    for p in (tmp_path / "zero" / name, tmp_path / name):
        with Bounded() as b:
            try:
                spec = load_model(p)
            except ModelError as e:
                assert "not a regular file" in _one_line(e)
            else:   # a FIFO beside config.json is no checkpoint file: the config is priced alone
                assert name == "model.safetensors" and p.parent == tmp_path and not spec.stored_bytes
        b.assert_small()


# --- safetensors index -------------------------------------------------------------------------
def test_safetensors_index_larger_than_its_cap(tmp_path):
    folder = hf_folder(tmp_path / "m", tiny_llama())
    index = {"weight_map": {f"w{i}": "model-00001-of-00001.safetensors" for i in range(2000)}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with Bounded() as b, pytest.raises(ModelError, match=r"too large for a safetensors index .*ReadLimits.max_json"):
        load_model(folder, limits=ReadLimits(max_json=1024))
    b.assert_small()


def test_safetensors_index_naming_more_files_than_the_cap(tmp_path):
    folder = hf_folder(tmp_path / "m", tiny_llama())
    names = [f"model-{i:05d}-of-00012.safetensors" for i in range(1, 13)]
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {f"w{i}": n for i, n in enumerate(names)}}))
    with pytest.raises(ModelError, match=r"names 12 files, above the cap of 10 \(ReadLimits.max_files\)"):
        load_model(folder, limits=ReadLimits(max_files=10))


def test_tensors_over_all_shards_above_the_cap(tmp_path):
    # Each shard's header is small; together they declare more tensors than the cap.
    folder = hf_folder(tmp_path / "m", tiny_llama())
    tensors = tiny_llama_tensors()
    names = sorted(tensors)
    half = len(names) // 2
    shards = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
    for shard, members in shards.items():
        write_safetensors(folder / shard, {n: tensors[n] for n in members})
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {n: s for s, ms in shards.items() for n in ms}}))
    assert load_model(folder).stored_tensors == len(names)
    with pytest.raises(ModelError, match=f"more than {half + 1} tensors in all .ReadLimits.max_tensors"):
        load_model(folder, limits=ReadLimits(max_tensors=half + 1))


# --- GGUF: split sets and skipped arrays -------------------------------------------------------
def _gguf(kvs: list[bytes], infos: list[bytes] = ()) -> bytes:
    return raw_gguf([kv_str("general.architecture", "llama"), *kvs], list(infos)) + bytes(64)


def test_split_gguf_declaring_more_parts_than_the_cap(tmp_path):
    p = tmp_path / "m-00001-of-20000.gguf"
    p.write_bytes(_gguf([kv_u32("split.count", 20000), struct.pack("<Q", 8) + b"split.no" + struct.pack("<IH", 2, 0)]))
    with Bounded() as b, pytest.raises(ModelError, match=r"split into 20000 files, above the cap of 10000 \(ReadLimits.max_files\)"):
        read_gguf_model(p)
    b.assert_small()


def test_split_gguf_tensors_over_all_parts_above_the_cap(tmp_path):
    split_no = lambda n: gguf_string("split.no") + struct.pack("<IH", 2, n)
    for n in range(2):
        infos = [tensor_info(f"t{n}.{i}", (8,), 0, 32 * i) for i in range(3)]
        (tmp_path / f"m-0000{n + 1}-of-00002.gguf").write_bytes(
            _gguf([kv_u32("split.count", 2), split_no(n)], infos) + bytes(96))
    _, tensors, files = read_gguf_model(tmp_path / "m-00001-of-00002.gguf")
    assert len(tensors) == 6 and len(files) == 2
    with pytest.raises(ModelError, match=r"more than 5 tensors in all \(ReadLimits.max_tensors\)"):
        read_gguf_model(tmp_path / "m-00001-of-00002.gguf", ReadLimits(max_tensors=5))


def test_skipped_string_array_whose_string_runs_past_the_file(tmp_path):
    # A token list long enough to be skipped, not kept, whose last string declares 2^62 bytes:
    # the chunked skip checks each length against the file before seeking.
    n = KEEP_STRINGS + 10
    strings = b"".join(gguf_string(f"t{i}") for i in range(n - 1)) + struct.pack("<Q", 2**62) + b"abc"
    kv = gguf_string("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, n) + strings
    p = tmp_path / "m.gguf"
    p.write_bytes(_gguf([kv]))
    with Bounded() as b, pytest.raises(ModelError, match=r"truncated GGUF: an element of 'tokenizer.ggml.tokens' needs 4611686018427387904 bytes"):
        read_gguf(p)
    b.assert_small()


def test_skipped_string_array_stops_at_the_metadata_cap(tmp_path):
    n = KEEP_STRINGS + 10
    kv = gguf_string("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, n) + b"".join(
        gguf_string("x" * 100) for _ in range(n))
    p = tmp_path / "m.gguf"
    p.write_bytes(_gguf([kv]))
    assert read_gguf(p).metadata["tokenizer.ggml.tokens"].count == n
    with pytest.raises(ModelError, match=r"past the 65536-byte cap .*ReadLimits.max_gguf_metadata"):
        read_gguf(p, ReadLimits(max_gguf_metadata=65536))


# --- MLC tensor cache --------------------------------------------------------------------------
def _mlc(folder, shards: list[list[dict]], chat: dict | None = None):
    folder.mkdir(exist_ok=True)
    (folder / "mlc-chat-config.json").write_text(json.dumps(chat or {
        "model_type": "llama", "quantization": "q0f16", "model_config": tiny_llama()}))
    records = [{"dataPath": f"params_shard_{i}.bin", "format": "raw-shard",
                "nbytes": sum(r["nbytes"] for r in recs), "records": recs} for i, recs in enumerate(shards)]
    (folder / "tensor-cache.json").write_text(json.dumps({"metadata": {}, "records": records}))
    return folder


def _rec(name: str, n: int = 4, offset: int = 0) -> dict:
    return {"name": name, "shape": [n], "dtype": "float16", "format": "raw", "nbytes": 2 * n, "byteOffset": offset}


def test_tensor_cache_larger_than_its_cap(tmp_path):
    folder = _mlc(tmp_path / "m", [[_rec(f"w{i}", offset=8 * i) for i in range(200)]])
    with Bounded() as b, pytest.raises(ModelError, match=r"too large for a tensor cache .*ReadLimits.max_json"):
        read_tensor_cache(folder, ReadLimits(max_json=2048))
    b.assert_small()


def test_tensor_cache_shards_and_tensors_above_their_caps(tmp_path):
    folder = _mlc(tmp_path / "m", [[_rec("a"), _rec("b", offset=8)], [_rec("c")], [_rec("d")]])
    assert read_tensor_cache(folder)[1] == 4
    with pytest.raises(ModelError, match=r"3 shards, above the cap of 2 \(ReadLimits.max_files\)"):
        read_tensor_cache(folder, ReadLimits(max_files=2))
    with pytest.raises(ModelError, match=r"more than 3 tensors \(ReadLimits.max_tensors\)"):
        read_tensor_cache(folder, ReadLimits(max_tensors=3))


def test_tensor_cache_record_declaring_more_than_its_shard_holds(tmp_path):
    # The shard holds 8 bytes; the record claims a 2^40-element tensor at offset 0.
    rec = dict(_rec("w"), shape=[2**40], nbytes=2**41)
    folder = _mlc(tmp_path / "m", [[rec]])
    (folder / "tensor-cache.json").write_text(json.dumps(
        {"records": [{"dataPath": "params_shard_0.bin", "nbytes": 8, "records": [rec]}]}))
    with Bounded() as b, pytest.raises(ModelError, match="lies outside its shard of 8 bytes"):
        read_tensor_cache(folder)
    b.assert_small()


# --- hub metadata ------------------------------------------------------------------------------
@dataclass
class _Tensor:
    dtype: str
    shape: list
    data_offsets: tuple


@dataclass
class _File:
    tensors: dict


@dataclass
class _Repo:
    files_metadata: dict


def test_hub_metadata_naming_more_files_than_the_cap():
    files = {f"model-{i:05d}.safetensors": _File({"w": _Tensor("F16", [2], (0, 4))}) for i in range(12)}
    assert stored_from_metadata(_Repo(files), "org/m").tensors == 12
    with pytest.raises(ModelError, match=r"12 safetensors files, above the cap of 10 \(ReadLimits.max_files\)"):
        stored_from_metadata(_Repo(files), "org/m", ReadLimits(max_files=10))
    with pytest.raises(ModelError, match=r"more than 11 tensors in all \(ReadLimits.max_tensors\)"):
        stored_from_metadata(_Repo(files), "org/m", ReadLimits(max_tensors=11))


# --- HF cache refs -----------------------------------------------------------------------------
def test_cache_ref_file_of_many_megabytes_is_read_only_as_far_as_a_hash(tmp_path, monkeypatch):
    repo = tmp_path / "models--org--m"
    (repo / "snapshots" / ("a" * 40)).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_bytes(b"x" * (32 * MiB))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with Bounded() as b, pytest.raises(ModelError, match="not a commit hash"):
        load_model("org/m", offline=True)
    b.assert_small()


# --- validation case files ---------------------------------------------------------------------
def test_case_file_larger_than_its_cap(tmp_path, monkeypatch):
    import kvcap.validate as v
    p = tmp_path / "cases.jsonl"
    p.write_text(json.dumps({"id": "a", "engine": "x", "observed": {}, "raw": "y" * 4096}))
    monkeypatch.setattr(v, "MAX_FILE_BYTES", 1024)
    with Bounded() as b, pytest.raises(v.CaseFileError, match="larger than"):
        v.load_cases([p])
    b.assert_small()


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "folder"])
def test_case_file_that_is_not_a_regular_file(tmp_path, kind, capsys):
    p = tmp_path / "cases.jsonl"
    if kind == "dev-zero":
        p.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(p)
    else:
        p.mkdir()
    with Bounded() as b:
        assert main(["validate", str(p)]) == 2
    b.assert_small()
    assert capsys.readouterr().err.strip() == f"kvcap: error: cannot read {p}: not a regular file"


# --- calibration files (kvcap plan --calibration) ----------------------------------------------
def test_calibration_file_larger_than_its_cap(tmp_path):
    from kvcap.probe.calibration import MAX_FILE_BYTES, load_calibration
    p = tmp_path / "cal.json"
    p.write_text(json.dumps({"kvcap_calibration": 1, "pad": "x" * MAX_FILE_BYTES}))
    with Bounded() as b, pytest.raises(OptionsError, match="larger than 1 MiB"):
        load_calibration(p)
    b.assert_small(read=3 * MiB)     # the cap itself is 1 MiB


@pytest.mark.parametrize("kind", ["dev-zero", "fifo"])
def test_calibration_file_that_never_ends(tmp_path, kind, capsys):
    p = tmp_path / "cal.json"
    if kind == "dev-zero":
        p.symlink_to("/dev/zero")
    else:
        os.mkfifo(p)
    with Bounded() as b:
        rc = main(["plan", "llama-3.1-8b", "-d", "m2-max-32gb", "--no-advise", "--calibration", str(p)])
    b.assert_small(peak=8 * MiB)
    assert rc == 2 and capsys.readouterr().err.strip().endswith("not a regular file")
