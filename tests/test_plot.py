"""kvcap plot: the memory sweep (real plans at each memory) and its matplotlib figure."""

from __future__ import annotations

import dataclasses

import pytest

import kvcap
from kvcap.cli import main
from kvcap.errors import OptionsError
from kvcap.report.plot import Cap, Point, caps_of, figure, memory_grid, sweep

GiB = 1 << 30


def test_memory_grid_worked_by_hand():
    # 4 even steps of 100 (25, 50, 75, 100) plus the device's own 30; sorted, no duplicates.
    assert memory_grid(100, 4, [30, 50, 0]) == (25, 30, 50, 75, 100)
    with pytest.raises(OptionsError):
        memory_grid(100, 1)
    with pytest.raises(OptionsError):
        memory_grid(0, 8)


def test_caps_are_the_flat_limits_met():
    pts = [Point(1, 0, "insufficient_memory"), Point(2, 500, "memory"), Point(3, 800, "device_cap"),
           Point(4, 800, "device_cap"), Point(5, 900, "context_window"), Point(6, 0, "refused"),
           Point(7, 300, "fits_but_will_page")]
    assert caps_of(pts) == (Cap("device_cap", 800), Cap("context_window", 900))


def test_sweep_points_are_the_engines_own_plans():
    m, d = kvcap.load_model("llama3_1_8b"), kvcap.get_device("m2-max-64gb")
    grid = memory_grid(2 * d.memory_bytes, 8, [d.memory_bytes])
    s = sweep(m, d, "mlc", {"mode": "interactive"}, grid)
    assert [p.memory_bytes for p in s.points] == list(grid)
    for p in s.points[::3]:
        direct = kvcap.plan(m, dataclasses.replace(d, memory_bytes=p.memory_bytes), "mlc", mode="interactive")
        assert (p.kv_tokens, p.binding) == (direct.kv_tokens, direct.binding.name)
    # The chosen point is the device's own plan: the Metal cap, 32,768 tokens.
    assert (s.chosen.memory_bytes, s.chosen.kv_tokens, s.chosen.binding) == (d.memory_bytes, 32768, "device_cap")
    assert Cap("device_cap", 32768) in s.caps


# SGLang is left out on purpose: its defaults step with GPU memory (engines/sglang_defaults.py:
# a larger chunked_prefill_size and cuda_graph_max_bs from 60 GiB), so its curve really dips there.
@pytest.mark.parametrize("engine,device,options", [
    ("mlc", "m2-max-64gb", {"mode": "interactive"}), ("mlc", "h100-sxm", {"mode": "server"}),
    ("vllm", "h100-sxm", {}), ("llamacpp", "rtx-4090", {"n_ctx": 32768})])
def test_more_memory_never_gives_fewer_tokens(engine, device, options):
    m, d = kvcap.load_model("llama3_1_8b"), kvcap.get_device(device)
    s = sweep(m, d, engine, options, memory_grid(2 * d.memory_bytes, 24, [d.memory_bytes]))
    tokens = [p.kv_tokens for p in s.points]
    assert tokens == sorted(tokens) and tokens[-1] > 0


def test_engine_that_refuses_the_device_is_reported_not_drawn():
    m, d = kvcap.load_model("llama3_1_8b"), kvcap.get_device("m2-max-64gb")
    s = sweep(m, d, "vllm", {}, memory_grid(d.memory_bytes, 4))
    assert s.error and s.points == () and s.chosen is None
    with pytest.raises(OptionsError, match="nothing to plot"):
        figure([s])


def _by_gid(fig):
    ax = fig.axes[0]
    return {a.get_gid(): a for a in list(ax.lines) + list(ax.collections) if a.get_gid()}


def test_figure_has_a_line_per_engine_device_caps_and_chosen_points():
    m = kvcap.load_model("llama3_1_8b")
    mac, h100 = kvcap.get_device("m2-max-64gb"), kvcap.get_device("h100-sxm")
    grid = memory_grid(2 * h100.memory_bytes, 16, [mac.memory_bytes, h100.memory_bytes])
    series = [sweep(m, mac, "mlc", {"mode": "interactive"}, grid), sweep(m, h100, "mlc", {"mode": "interactive"}, grid)]
    drawn = _by_gid(figure(series))
    assert {"series:mlc:m2-max-64gb", "series:mlc:h100-sxm", "cap:mlc:device_cap:32768",
            "chosen:mlc:m2-max-64gb", "chosen:mlc:h100-sxm"} <= set(drawn)
    cap = drawn["cap:mlc:device_cap:32768"]
    assert set(cap.get_ydata()) == {32768} and "32,768" in cap.get_label()
    x, y = drawn["chosen:mlc:m2-max-64gb"].get_data()
    assert (x[0], y[0]) == (mac.memory_bytes / GiB, 32768)
    # CUDA has no MLC token cap: the H100 point sits above the Metal cap.
    assert drawn["chosen:mlc:h100-sxm"].get_data()[1][0] > 32768
    assert len(drawn["series:mlc:h100-sxm"].get_xdata()) == len(grid)


def test_mlx_fits_but_pages_band():
    """MLX-LM runs past the working set up to its memory limit, paging: the band lies between
    the context inside the working set and the context under the limit (engines/mlx.py)."""
    m, d = kvcap.load_model("llama3_1_8b"), kvcap.get_device("m2-max-64gb")
    s = sweep(m, d, "mlx", {}, memory_grid(d.memory_bytes, 16))
    banded = [p for p in s.points if p.paging_tokens > p.resident_tokens]
    assert banded
    p = banded[0]
    plan = kvcap.plan(m, dataclasses.replace(d, memory_bytes=p.memory_bytes), "mlx")
    assert p.paging_tokens == plan.line("context_in_memory_limit") > plan.line("context_in_working_set")
    assert "paging:mlx:m2-max-64gb" in _by_gid(figure([s]))


def test_plot_command_writes_a_png(tmp_path, capsys):
    out = tmp_path / "cap.png"
    rc = main(["plot", "llama3_1_8b", "-d", "m2-max-64gb", "-d", "h100-sxm", "-e", "mlc", "--mode", "interactive",
               "--points", "12", "--out", str(out)])
    assert rc == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    import matplotlib.image
    h, w = matplotlib.image.imread(str(out)).shape[:2]
    assert (w, h) == (12 * 110, round(5.5 * 110))     # figsize × dpi
    text = capsys.readouterr().out
    assert "mlc on m2-max-64gb: 32,768 tokens" in text and "device_cap 32,768" in text


def test_plot_command_writes_svg_and_json(tmp_path, capsys):
    import json
    out = tmp_path / "cap.svg"
    assert main(["plot", "llama3_1_8b", "-d", "h100-sxm", "-e", "mlc", "-e", "vllm", "--points", "6",
                 "--out", str(out), "--json"]) == 0
    assert out.read_text().lstrip().startswith(("<?xml", "<svg"))
    doc = json.loads(capsys.readouterr().out)
    assert [s["engine"] for s in doc["series"]] == ["mlc", "vllm"]


@pytest.mark.parametrize("argv,words", [
    (["--out", "x.pdf", "-d", "h100-sxm"], ".png or .svg"),
    (["--out", "x.png"], "--device"),
    (["--out", "x.png", "-d", "h100-sxm", "--set", "no_such=1"], "no_such"),
    (["--out", "x.png", "-d", "h100-sxm", "--points", "1"], "points"),
    (["--out", "x.png", "-d", "h100-sxm", "-e", "tgi"], "unknown engine"),
    (["--out", "x.png", "-d", "h100-sxm", "--max-memory", "lots"], "--max-memory"),
])
def test_plot_bad_input_is_exit_2(tmp_path, capsys, argv, words, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["plot", "llama3_1_8b", *argv]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
    assert not (tmp_path / "x.png").exists()
