"""load_model routes each source to its reader; bad input is one line and exit 2 on the CLI."""

from __future__ import annotations

import json
import shutil

import pytest

import kvcap
from kvcap.cli import main
from kvcap.errors import ModelError
from kvcap.model import ReadLimits, load_model
from test_reader_files import hf_folder, tiny_llama, tiny_llama_tensors, write_gguf
from test_reader_gguf import META, llama_tensors
from test_reader_mlc import chat_config


def test_each_kind_of_folder_goes_to_its_reader(tmp_path):
    hf = hf_folder(tmp_path / "hf", tiny_llama(), tiny_llama_tensors())
    assert load_model(hf).source == str(hf)
    mlc = tmp_path / "mlc"
    mlc.mkdir()
    (mlc / "mlc-chat-config.json").write_text(json.dumps(chat_config()))
    assert load_model(mlc).source == f"mlc:{mlc}"
    gg = tmp_path / "gguf"
    gg.mkdir()
    write_gguf(gg / "model-Q4_K_M.gguf", "llama", META, llama_tensors())
    write_gguf(gg / "mmproj-model-f16.gguf", "clip", {}, [("v.w", "f16", (32, 32))])
    assert load_model(gg).source == f"gguf:{gg / 'model-Q4_K_M.gguf'}"


def test_files_inside_a_folder_route_to_the_folder(tmp_path):
    hf = hf_folder(tmp_path / "hf", tiny_llama(), tiny_llama_tensors())
    assert load_model(hf / "model.safetensors").stored_tensors == 21
    # A config.json path on its own is the config, not the checkpoint beside it.
    assert load_model(hf / "config.json").stored_tensors == 0


def test_gguf_recognised_by_its_magic_without_the_suffix(tmp_path):
    write_gguf(tmp_path / "m.gguf", "llama", META, llama_tensors())
    shutil.move(tmp_path / "m.gguf", tmp_path / "model.bin")
    assert load_model(tmp_path / "model.bin").model_type == "llama"


@pytest.mark.parametrize("setup, message", [
    (lambda d: None, "holds no config.json, mlc-chat-config.json or .gguf file"),
    (lambda d: (d / "notes.txt").write_text("hi"), "holds no config.json"),
    (lambda d: [write_gguf(d / n, "llama", META, llama_tensors(1)) for n in ("a.gguf", "b.gguf")],
     "holds 2 GGUF files"),
])
def test_folders_that_are_not_models(tmp_path, setup, message):
    setup(tmp_path)
    with pytest.raises(ModelError, match=message):
        load_model(tmp_path)


def test_a_file_that_is_not_a_model(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"\x00" * 32)
    with pytest.raises(ModelError, match="not a model file"):
        load_model(tmp_path / "x.bin")
    with pytest.raises(ModelError, match="no such file or folder"):
        load_model(tmp_path / "missing.gguf")


def test_limits_reach_the_readers(tmp_path):
    hf = hf_folder(tmp_path / "hf", tiny_llama(), tiny_llama_tensors())
    with pytest.raises(ModelError, match="ReadLimits.max_safetensors_header"):
        load_model(hf, limits=ReadLimits(max_safetensors_header=64))
    with pytest.raises(ModelError, match="ReadLimits.max_tensors"):
        load_model(hf, limits=ReadLimits(max_tensors=5))


def test_public_api_forwards_options(tmp_path):
    hf = hf_folder(tmp_path / "hf", tiny_llama(), tiny_llama_tensors())
    assert kvcap.load_model(str(hf), offline=True).stored_tensors == 21


@pytest.mark.parametrize("content", [b"GGUF\x03\x00\x00\x00" + b"\xff" * 16, b"\x10\x00\x00\x00\x00\x00\x00\x00{",
                                     b'{"model_type": "llama", "num_hidden_layers": 0}'])
def test_cli_bad_model_file_is_one_line_exit_2(tmp_path, capsys, content):
    name = {b"G": "m.gguf", b"\x10": "model.safetensors", b"{": "config.json"}[content[:1]]
    (tmp_path / "config.json").write_text(json.dumps(tiny_llama()))
    (tmp_path / name).write_bytes(content)
    assert main(["plan", str(tmp_path / name), "--device", "m1-8gb"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kvcap: error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_os_errors_while_reading_become_model_errors(tmp_path, monkeypatch):
    import kvcap.model as km
    (tmp_path / "model.bin").write_bytes(b"GGUF")

    def denied(path, limits):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(km, "from_path", denied)
    with pytest.raises(ModelError, match=r"cannot read .*model.bin: Permission denied"):
        load_model(tmp_path / "model.bin")
