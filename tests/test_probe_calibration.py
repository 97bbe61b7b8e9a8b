"""The calibration file: written by the probe, read by planners without torch."""

import json
import subprocess
import sys

import pytest

from kvcap.errors import OptionsError
from kvcap.probe.calibration import Calibration, default_path, device_slug, load_calibration, save_calibration

GiB = 1 << 30


def doc(cliff=None, max_ok=64 * GiB):
    verdict = {"baseline_s": 1.5e-4, "noise_s": 1e-6, "tolerance": 0.1, "threshold_s": 1.66e-4,
               "cliff_bytes": cliff, "max_ok_bytes": max_ok, "measured_up_to_bytes": 128 * GiB, "slow": []}
    return {"kvcap_calibration": 1, "date": "2026-11-27", "command": "kvcap probe",
            "device": {"name": "NVIDIA H200", "backend": "cuda", "torch_device": "cuda:0",
                       "total_memory_bytes": 150109880320, "detail": "sm_90"},
            "kernel": "triton", "copy_bandwidth_gbps": 4000.0, "kernel_bandwidth_gbps": 3000.0, "tolerance": 0.1,
            "work": {}, "layouts": {"single": {"chunk_bytes": None, "points": [], "verdict": verdict},
                                    "chunked": {"chunk_bytes": GiB, "points": [], "verdict": dict(verdict)}},
            "stopped": ""}


def test_round_trip(tmp_path):
    path = save_calibration(doc(cliff=8 * GiB, max_ok=4 * GiB), tmp_path / "sub" / "cal.json")
    c = load_calibration(path)
    assert isinstance(c, Calibration)
    assert (c.device_name, c.backend, c.cliff_bytes, c.max_ok_bytes, c.chunk_bytes) == \
        ("NVIDIA H200", "cuda", 8 * GiB, 4 * GiB, GiB)
    assert c.kernel_fraction == pytest.approx(0.75)
    # Llama-3.1-8B, one layer's K+V per token: 2 * 8 heads * 128 * 2 B = 4096 B; 4 GiB / 4096 = 1 Mi tokens.
    assert c.kv_token_cap(4096) == 1_048_576
    assert "cliff at 8.00 GiB" in c.verdict()


def test_no_cliff_means_no_cap(tmp_path):
    c = load_calibration(save_calibration(doc(), tmp_path / "c.json"))
    assert c.cliff_bytes is None and c.kv_token_cap(4096) is None
    assert "no cap needed up to 128.00 GiB" in c.verdict()


def test_bad_files(tmp_path):
    with pytest.raises(OptionsError, match="no calibration file"):
        load_calibration(tmp_path / "missing.json")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(OptionsError, match="not a kvcap calibration"):
        load_calibration(tmp_path / "x.json")
    broken = doc()
    del broken["layouts"]["single"]["verdict"]["max_ok_bytes"]
    (tmp_path / "y.json").write_text(json.dumps(broken))
    with pytest.raises(OptionsError, match="max_ok_bytes"):
        load_calibration(tmp_path / "y.json")
    (tmp_path / "z.json").write_text("not json")
    with pytest.raises(OptionsError, match="cannot read"):
        load_calibration(tmp_path / "z.json")
    with pytest.raises(OptionsError):
        save_calibration({"kvcap_calibration": 1}, tmp_path / "w.json")
    assert not (tmp_path / "w.json").exists()


def test_default_path(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert default_path("NVIDIA H100 80GB HBM3") == tmp_path / "kvcap" / "calibration-nvidia-h100-80gb-hbm3.json"
    assert device_slug("!!") == "device"


def test_reading_a_calibration_imports_no_torch(tmp_path):
    path = save_calibration(doc(), tmp_path / "c.json")
    code = ("import sys; from kvcap.probe import load_calibration; load_calibration(sys.argv[1]); "
            "import kvcap.probe.cliff, kvcap.probe.report; "
            "bad = [m for m in ('torch', 'triton', 'numpy') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    r = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
