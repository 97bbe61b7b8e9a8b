"""`kvcap plan --calibration FILE`: the measured cap as a what-if; the engine's own rule stays."""

import json

from kvcap.cli import main
from kvcap.probe.calibration import save_calibration
from test_probe_calibration import GiB, doc


def run_plan(capsys, *extra):
    code = main(["plan", "llama3_1_8b", "--device", "m2-max-64gb", "--mode", "interactive", "--json", *extra])
    return code, json.loads(capsys.readouterr().out)


def test_a_measured_cliff_sets_the_cap_of_the_what_if(tmp_path, capsys):
    # Cliff past 2 GiB of one buffer, fine up to 1 GiB. Llama-3.1-8B: one layer's K+V is
    # 8 heads x 128 x 2 x 2 B = 4096 B a token, so 1 GiB holds 262,144 tokens: the measured cap.
    # Interactive mode then stops at the 131,072-token context window first.
    path = save_calibration(doc(cliff=2 * GiB, max_ok=1 * GiB), tmp_path / "cal.json")
    code, p = run_plan(capsys, "--calibration", str(path))
    assert code == 0 and p["kv_tokens"] == 32768 and p["binding"]["name"] == "device_cap"  # MLC keeps its cap
    w = [w for w in p["what_if"] if "measured" in w["change"]]
    assert len(w) == 1 and "262,144 tokens" in w[0]["change"]
    assert w[0]["kv_tokens"] == min(262_144, 131_072)   # then the context window binds
    assert any("calibration" in x for x in p["warnings"])


def test_no_cliff_vouches_only_for_what_was_measured(tmp_path, capsys):
    d = doc()
    d["layouts"]["single"]["verdict"]["measured_up_to_bytes"] = GiB // 8   # 128 MiB: 32,768 tokens
    path = save_calibration(d, tmp_path / "cal.json")
    code, p = run_plan(capsys, "--calibration", str(path))
    w = [w for w in p["what_if"] if "measured" in w["change"]]
    assert "no cliff measured" in w[0]["change"] and w[0]["kv_tokens"] == 32_768


def test_a_bad_calibration_file_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "x.json").write_text("{}")
    assert main(["plan", "llama3_1_8b", "--device", "m2-max-64gb", "--calibration", str(tmp_path / "x.json")]) == 2
    assert "not a kvcap calibration file" in capsys.readouterr().err
