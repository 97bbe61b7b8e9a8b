"""kvcap launch: every printed command parses against its engine's flag table (data, with sources)."""

import json
import shlex

import pytest

import kvcap
from kvcap.advise.fit import fit
from kvcap.advise.report import launches_for
from kvcap.cli import main
from kvcap.device import get_device
from kvcap.errors import OptionsError
from kvcap.launch import launch
from kvcap.launch import flags as F
from kvcap.launch.types import Launch

ENGINES = ("mlc", "vllm", "sglang", "llamacpp", "ollama", "mlx")


def assert_parses(lt: Launch) -> None:
    """The checker run independently of launch(): flags known, values typed, --overrides keys known."""
    tab = F.table(lt.engine, lt.version)
    for c in lt.commands:
        if c.program:
            assert F.check(list(c.argv), tab, c.program) == [], c.shell()
        if lt.engine == "ollama":
            assert F.check_env(c.env, tab) == []
        # shell quoting round-trips: what a shell would split is exactly env + argv
        words = shlex.split(c.shell())
        assert words == [f"{k}={v}" for k, v in c.env.items()] + list(c.argv)


# ---- the tables ----------------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ENGINES)
def test_every_table_names_its_source(engine):
    for v in F.versions(engine):
        t = F.table(engine, v)
        assert t.source.get("repo") and (t.source.get("commit") or t.source.get("release") or t.source.get("package"))
        assert t.source.get("files")
        assert t.programs


def test_table_version_falls_back_to_the_newest_older_one():
    assert F.table("vllm", "0.21.0").version == "0.21.0"
    assert F.table("vllm", "0.19.1").version == "0.17.0"
    assert F.table("vllm", None).version == "0.21.0"
    assert F.table("sglang", "0.5.12").version == "0.5.10"


def test_the_checker_refuses_what_the_parsers_refuse():
    vllm = F.table("vllm", "0.21.0")
    ok = ["vllm", "serve", "m", "--max-model-len", "32768", "-tp", "2", "--kv-cache-dtype", "fp8", "--enforce-eager",
          "--no-enable-prefix-caching", "--gpu-memory-utilization=0.9"]
    assert F.check(ok, vllm, "vllm serve") == []
    assert F.check(["vllm", "serve", "m", "--max-model-length", "1"], vllm, "vllm serve")      # no such flag
    assert F.check(["vllm", "serve", "m", "--max-model-len", "32k5"], vllm, "vllm serve")      # not an int
    assert F.check(["vllm", "serve", "m", "--kv-cache-dtype", "q8_0"], vllm, "vllm serve")     # not a choice
    assert F.check(["vllm", "serve", "m", "--max-model-len"], vllm, "vllm serve")              # missing value
    assert not F.check(["vllm", "serve", "m", "--nnodes", "2"], vllm, "vllm serve")
    assert F.check(["vllm", "serve", "m", "--nnodes", "2"], F.table("vllm", "0.11.0"), "vllm serve")  # not yet
    mlc = F.table("mlc")
    assert F.check(["mlc_llm", "serve", "m", "--overrides", "max_num_sequence=4;max_total_seq_length=8192"],
                   mlc, "mlc_llm serve") == []
    assert F.check(["mlc_llm", "serve", "m", "--overrides", "max_total_sequence_length=8192"], mlc, "mlc_llm serve")
    assert F.check(["mlc_llm", "serve", "m", "--overrides", "gpu_memory_utilization=most"], mlc, "mlc_llm serve")
    llama = F.table("llamacpp")
    assert F.check(["llama-server", "-m", "x.gguf", "-ctk", "q8_0", "-fa", "on", "-kvu"], llama, "llama-server") == []
    assert F.check(["llama-server", "-ctk", "q3_k"], llama, "llama-server")
    assert F.check(["llama-server", "-fa", "yes"], llama, "llama-server")
    ollama = F.table("ollama")
    assert F.check_env({"OLLAMA_NUM_PARALLEL": "4", "OLLAMA_FLASH_ATTENTION": "1"}, ollama) == []
    assert F.check_env({"OLLAMA_NUM_PARALLEL": "four"}, ollama)
    assert F.check_env({"OLLAMA_KV_CACHE": "q8_0"}, ollama)
    assert F.check_options({"num_ctx": "8192"}, ollama) == []
    assert F.check_options({"context": "8192"}, ollama)
    mlx = F.table("mlx")
    assert F.check(["mlx_lm.server", "--model", "m", "--kv-bits", "4"], mlx, "mlx_lm.server")   # server has none
    assert F.check(["mlx_lm.generate", "--model", "m", "--kv-bits", "4", "--max-kv-size", "4096"],
                   mlx, "mlx_lm.generate") == []


# ---- commands from plans ----------------------------------------------------------------------------
CASES = [
    ("mlc", "m2-max-64gb", 1, dict(mode="interactive")),
    ("mlc", "h100-sxm", 2, dict(mode="server", tensor_parallel_shards=2, context_window_size=32768)),
    ("vllm", "h100-sxm", 4, dict(max_model_len=32768, tensor_parallel_size=4, kv_cache_dtype="fp8", enforce_eager=True)),
    ("vllm", "h100-sxm", 2, dict(max_model_len=16384, pipeline_parallel_size=2, engine_version="0.11.0")),
    ("sglang", "h100-sxm", 2, dict(context_length=32768, tp_size=2, kv_cache_dtype="fp8_e4m3")),
    ("llamacpp", "rtx-4090", 1, dict(n_ctx=65536, n_seq_max=4, type_k="q8_0", type_v="q8_0")),
    ("llamacpp", "rtx-4090", 2, dict(n_ctx=32768, n_seq_max=1, swa_full=True)),
    ("ollama", "rtx-4090", 1, dict(num_ctx=16384, OLLAMA_NUM_PARALLEL=2, OLLAMA_KV_CACHE_TYPE="q8_0")),
    ("mlx", "m2-max-64gb", 1, dict(context=32768, batch=1, q_bits=4, kv_bits=8)),
    ("mlx", "m2-max-64gb", 1, dict(context=8192, batch=4)),
]


@pytest.mark.parametrize("engine,device,count,options", CASES)
def test_launch_commands_parse_and_carry_the_plan(engine, device, count, options):
    p = kvcap.plan("meta-llama/Llama-3.1-8B-Instruct", get_device(device, count=count), engine=engine, **options)
    lt = launch(p)
    assert_parses(lt)
    cfg = p.engine_config
    argv = [w for c in lt.commands for w in c.argv]
    env = {k: v for c in lt.commands for k, v in c.env.items()}

    def after(flag):
        return argv[argv.index(flag) + 1]
    if engine == "vllm":
        assert after("--max-model-len") == str(cfg["max_model_len"])
        assert float(after("--gpu-memory-utilization")) == cfg["gpu_memory_utilization"]
        assert ("--tensor-parallel-size" in argv) == (cfg["tensor_parallel_size"] > 1)
    elif engine == "mlc":
        over = dict(kv.split("=") for kv in after("--overrides").split(";"))
        assert int(over["max_total_seq_length"]) == cfg["max_total_sequence_length"]
        assert int(over["max_num_sequence"]) == cfg["max_num_sequence"]
        assert after("--mode") == p.mode
    elif engine == "sglang":
        assert after("--context-length") == str(cfg["context_len"])
        assert float(after("--mem-fraction-static")) == pytest.approx(cfg["mem_fraction_static"])
    elif engine == "llamacpp":
        assert after("-c") == str(cfg["n_ctx"]) and after("-np") == str(cfg["n_seq_max"])
        assert after("-ctk") == cfg["type_k"] and after("-ngl") == str(cfg["n_gpu_layers"])
        assert ("--swa-full" in argv) == bool(cfg["swa_full"])
    elif engine == "ollama":
        assert env["OLLAMA_CONTEXT_LENGTH"] == str(cfg["num_ctx"]) and env["OLLAMA_NUM_PARALLEL"] == "2"
        assert "PARAMETER num_ctx 16384" in lt.files["Modelfile"]
    elif engine == "mlx":
        assert after("--decode-concurrency") == str(cfg["batch"])
        if options.get("kv_bits"):
            assert any("no --kv-bits" in n for n in lt.notes)
            assert "mlx_lm.generate" in argv and after("--kv-bits") == "8"


def test_multi_node_vllm_and_sglang_commands_parse():
    m = kvcap.load_model("meta-llama/Meta-Llama-3.1-405B")
    r = fit(m, 8192, 1, engines=["vllm", "sglang"], devices=[get_device("h100-sxm")], quant=["16"],
            kv_dtype=["16"], nodes=2)
    for i, lt in launches_for(r, 5).items():
        assert isinstance(lt, Launch), lt
        assert_parses(lt)
        if r.solutions[i - 1].config.layout.nodes > 1:
            assert len([c for c in lt.commands if c.program]) == 2          # one per node
            assert all("--node-rank" in c.argv for c in lt.commands)


def test_every_fit_answer_launches_with_parsing_commands():
    m = kvcap.load_model("meta-llama/Llama-3.1-8B-Instruct")
    devices = [get_device(k) for k in ("rtx-4090", "l4", "h100-sxm", "m2-max-64gb", "m3-max-48gb")]
    r = fit(m, 16384, 4, devices=devices, top=40)
    assert {s.config.engine for s in r.solutions} == set(ENGINES)
    for i, lt in launches_for(r, len(r.solutions)).items():
        assert isinstance(lt, Launch), f"#{i}: {lt}"
        assert_parses(lt)


def test_shell_quoting_of_awkward_model_paths():
    p = kvcap.plan("llama3_1_8b", "rtx-4090", engine="vllm", max_model_len=8192)
    lt = launch(p, "/models/my model's dir")
    assert_parses(lt)
    assert shlex.split(lt.commands[0].shell())[2] == "/models/my model's dir"


def test_launch_refuses_a_plan_that_does_not_fit():
    p = kvcap.plan("llama3_1_70b", "rtx-4090", engine="vllm", max_model_len=32768)
    assert not p.fits
    with pytest.raises(OptionsError, match="does not fit"):
        launch(p)


def test_launch_cli(capsys):
    assert main(["launch", "llama3_1_8b", "-d", "rtx-4090", "-e", "vllm", "--max-model-len", "8192"]) == 0
    out = capsys.readouterr().out
    assert "vllm serve llama3_1_8b --max-model-len 8192" in out and "vllm 0.21.0" in out
    assert main(["launch", "llama3_1_8b", "-d", "rtx-4090", "-e", "llamacpp", "--ctx-size", "8192", "--json",
                 "--model-ref", "/m/x.gguf"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["commands"][0]["argv"][:3] == ["llama-server", "-m", "/m/x.gguf"]
    assert main(["launch", "llama3_1_70b", "-d", "rtx-4090", "-e", "vllm", "--max-model-len", "32768"]) == 1
    assert "does not fit" in capsys.readouterr().err
    assert main(["plan", "llama3_1_8b", "-d", "rtx-4090", "-e", "sglang", "--set", "context_length=8192",
                 "--launch", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["launch"]["commands"][0]["argv"][:3] == ["python", "-m", "sglang.launch_server"]
