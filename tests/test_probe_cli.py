"""kvcap probe from the command line: without torch, on bad devices, and for real on the CPU."""

import builtins
import json
from importlib.util import find_spec

import pytest

from kvcap.cli import main

MiB = 1 << 20


def test_without_torch_names_the_extra(monkeypatch, capsys):
    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("No module named 'torch'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    assert main(["probe", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install 'kvcap[probe]'" in err
    assert main(["verify", "qwen2.5-0.5b", "--engine", "mlc"]) == 2
    assert "kvcap[probe]" in capsys.readouterr().err


needs_torch = pytest.mark.skipif(find_spec("torch") is None,
                                 reason="torch is the probe's extra (pip install 'kvcap[probe]')")

SMALL = ["--device", "cpu", "--batch", "2", "--tokens", "64", "--repeats", "3", "--warmup", "1", "-q"]


@needs_torch
def test_device_that_does_not_exist(capsys):
    import torch
    if not torch.cuda.is_available():
        assert main(["probe", "--device", "cuda:0"]) == 2
        assert "no CUDA/ROCm GPU" in capsys.readouterr().err
    assert main(["probe", "--device", "tpu"]) == 2
    assert "unknown device" in capsys.readouterr().err


@needs_torch
def test_probe_on_cpu_for_real(tmp_path, capsys):
    out = tmp_path / "cal.json"
    rc = main(["probe", *SMALL, "--min-pool", "4MiB", "--max-pool", "16MiB", "--chunk", "4MiB",
               "--model", "llama-3.1-8b", "--out", str(out), "--json"])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    # Work: 2 sequences x 64 tokens x K,V x 8 heads x 128 x 2 B = 512 KiB per step.
    assert doc["work"]["bytes_per_step"] == 2 * 64 * 2 * 8 * 128 * 2
    for name in ("single", "chunked"):
        pts = doc["layouts"][name]["points"]
        assert [p["pool_bytes"] for p in pts] == [4 * MiB, 8 * MiB, 16 * MiB]
        assert all(p["step_s"] > 0 for p in pts)
        assert len(pts[0]["medians_s"]) == 2        # the baseline is measured twice
    assert doc["layouts"]["chunked"]["chunk_bytes"] == 4 * MiB
    from kvcap.probe import load_calibration
    cal = load_calibration(out)
    assert cal.backend == "cpu" and cal.kernel == "torch" and cal.measured_up_to_bytes == 16 * MiB
    rec = doc["recommendation"]
    assert rec["bytes_per_token_buffer"] == 2 * 8 * 128 * 2           # one layer of Llama-3.1-8B
    assert rec["bytes_per_token_pool"] == 32 * 2 * 8 * 128 * 2         # all 32 layers


@needs_torch
def test_pool_larger_than_free_memory_stops_cleanly(capsys):
    rc = main(["probe", *SMALL, "--no-save", "--min-pool", "64TiB", "--max-pool", "128TiB", "--layout", "single"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "nothing measured" in err and "larger than free memory" in err


@needs_torch
def test_out_of_memory_mid_sweep_keeps_what_was_measured(monkeypatch, tmp_path, capsys):
    import torch
    from kvcap.probe import sweep
    real = sweep._allocate_pool

    def failing(device, work, pool_bytes, chunk_bytes):
        if pool_bytes > 8 * MiB:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(device, work, pool_bytes, chunk_bytes)

    monkeypatch.setattr(sweep, "_allocate_pool", failing)
    rc = main(["probe", *SMALL, "--min-pool", "4MiB", "--max-pool", "32MiB", "--layout", "single",
               "--out", str(tmp_path / "c.json"), "--json"])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert "out of memory at a pool of 16.00 MiB" in doc["stopped"]
    assert [p["pool_bytes"] for p in doc["layouts"]["single"]["points"]] == [4 * MiB, 8 * MiB]
    assert doc["layouts"]["single"]["verdict"]["measured_up_to_bytes"] == 8 * MiB
    assert (tmp_path / "c.json").exists()


@needs_torch
def test_bad_options(capsys):
    assert main(["probe", *SMALL, "--tolerance", "-1"]) == 2
    assert main(["probe", *SMALL, "--batch", "0"]) == 2
    assert main(["probe", *SMALL, "--max-pool", "lots"]) == 2
