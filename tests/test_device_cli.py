"""`kvcap devices`: the catalog listing, text and JSON."""

import json

from kvcap.cli import main
from kvcap.device import catalog

GiB = 1 << 30


def run(capsys, *argv):
    code = main(["devices", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_json_lists_the_whole_catalog(capsys):
    code, out, _ = run(capsys, "--json")
    assert code == 0
    devices = json.loads(out)["devices"]
    assert [d["key"] for d in devices] == [d.key for d in catalog.entries()]
    h100 = next(d for d in devices if d["key"] == "h100-sxm")
    assert h100["memory_bytes"] == 85017493504 and h100["backend"] == "cuda" and h100["source"]
    m2 = next(d for d in devices if d["key"] == "m2-max-64gb")
    assert m2["ram_bytes"] == 64 * GiB and m2["macos"] == 26 and m2["unified"] is True


def test_json_macos_rule(capsys):
    _, out, _ = run(capsys, "--json", "--vendor", "apple", "--macos", "15")
    m2 = next(d for d in json.loads(out)["devices"] if d["key"] == "m2-max-64gb")
    assert m2["memory_bytes"] == 48 * GiB and m2["macos"] == 15


def test_filters(capsys):
    _, out, _ = run(capsys, "--json", "--backend", "rocm")
    assert {d["key"] for d in json.loads(out)["devices"]} == {"mi300x", "mi250x", "mi325x", "rx-7900-xtx"}
    _, out, _ = run(capsys, "--json", "--vendor", "NVIDIA", "--backend", "cuda")
    keys = {d["key"] for d in json.loads(out)["devices"]}
    assert "rtx-4090" in keys and "jetson-agx-orin-64gb" in keys and not any(k.startswith("m2") for k in keys)
    code, out, _ = run(capsys, "--vendor", "apple", "--backend", "cuda")
    assert code == 0 and "no catalog device matches" in out


def test_text_table(capsys):
    code, out, _ = run(capsys, "--vendor", "apple")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["KEY", "NAME", "BACKEND", "MEMORY", "RAM", "GB/s", "MAX", "BUFFER", "CONF"]
    row = next(line for line in lines if line.startswith("m1-8gb "))
    # 8 GB on macOS 26: 2/3 -> 5.33 GiB; RAM 8 GiB; 68.25 GB/s; maxBufferLength 4 GiB.
    assert "5.33 GiB" in row and "8.00 GiB" in row and "68.25" in row and "4.00 GiB" in row
    assert "macOS 26 rule" in out


def test_nominal_sizes_are_marked(capsys):
    _, out, _ = run(capsys, "--vendor", "amd")
    assert "~256.00 GiB" in out and "nominal size" in out


def test_bad_vendor_and_backend_exit_2_with_one_line(capsys):
    code, _, err = run(capsys, "--vendor", "qualcomm")
    assert code == 2 and err.count("\n") == 1 and "apple, nvidia, amd, intel, arm" in err
    code, _, err = run(capsys, "--backend", "cudaa")
    assert code == 2 and "supported: cuda" in err
