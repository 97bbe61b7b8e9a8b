"""kvcap fit on the command line: answers exit 0, no answer exits 1 with the closest miss, bad input 2."""

import json

import pytest

from kvcap.cli import main


def test_fit_text_and_json(capsys):
    args = ["fit", "llama3_1_70b", "--context", "32k", "-k", "8", "-e", "vllm", "-d", "h100-sxm"]
    assert main(args + ["--quant", "16", "--kv-dtype", "16", "--launch"]) == 0
    out = capsys.readouterr().out
    assert "4 × h100-sxm" in out and "TP 4" in out
    assert "vllm serve llama3_1_70b" in out and "--tensor-parallel-size 4" in out
    assert main(args + ["--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["feasible"] and doc["context"] == 32768 and doc["concurrency"] == 8
    ranks = [(s["devices"], s["memory_bytes"]) for s in doc["solutions"]]
    assert ranks == sorted(ranks)
    assert all(s["concurrency"] * s["replicas"] >= 8 for s in doc["solutions"])


def test_fit_no_answer_exits_1_with_the_closest_miss(capsys):
    rc = main(["fit", "llama3_1_70b", "--context", "128k", "-k", "64", "-e", "vllm", "llamacpp", "-d", "rtx-4090",
               "--max-gpus", "2"])
    assert rc == 1
    out = capsys.readouterr().out
    assert "No configuration" in out and "Closest:" in out and "holds" in out
    assert main(["fit", "llama3_1_70b", "--context", "128k", "-k", "64", "-e", "vllm", "-d", "rtx-4090",
                 "--max-gpus", "2", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert not doc["feasible"] and doc["closest_miss"]["reason"]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("kvcap: error:")
    return err


def test_fit_bad_input_exits_2_with_one_line(capsys):
    assert main(["fit", "llama3_1_8b", "--context", "200000"]) == 2
    assert "context window of 131,072" in _one_line_error(capsys)
    assert main(["fit", "llama3_1_8b", "--context", "8k", "--concurrency", "0"]) == 2
    _one_line_error(capsys)
    assert main(["fit", "llama3_1_8b", "--context", "8k", "-e", "tgi"]) == 2
    assert "unknown engine" in _one_line_error(capsys)
    assert main(["fit", "llama3_1_8b", "--context", "8k", "-d", "no-such-gpu"]) == 2
    _one_line_error(capsys)
    assert main(["fit", "llama3_1_8b", "--context", "lots"]) == 2
    _one_line_error(capsys)
    assert main(["fit", "llama3_1_8b", "--context", "8k", "--quant", "q9"]) == 2
    _one_line_error(capsys)
    assert main(["fit", "llama3_1_8b", "--context", "8k", "--max-gpus", "0"]) == 2
    _one_line_error(capsys)
    with pytest.raises(SystemExit) as e:                 # --context is required (argparse exits itself)
        main(["fit", "llama3_1_8b"])
    assert e.value.code == 2 and "--context" in capsys.readouterr().err
