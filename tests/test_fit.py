"""kvcap fit: answers known by hand, the ranking, pruning that loses nothing, and bad input."""

import math

import pytest

import kvcap
from kvcap.advise.fit import fit
from kvcap.advise.fit import _undominated
from kvcap.advise.space import lower_bound, text_params
from kvcap.device import get_device
from kvcap.errors import DeviceError, OptionsError

GIB = 1 << 30


@pytest.fixture(scope="module")
def llama70():
    return kvcap.load_model("llama3_1_70b")


@pytest.fixture(scope="module")
def llama8():
    return kvcap.load_model("llama3_1_8b")


def test_llama70b_32k_x8_on_h100_under_vllm_bf16_needs_tensor_parallel_4(llama70):
    """Llama-3.1-70B: 70,553,706,496 parameters in bf16 = 141.1 GB; 80 layers, 8 KV heads of 128.
    One 32k request's KV: 80 × 8 × 128 × 2 (K, V) × 2 bytes = 327,680 B a token, split over TP ranks.
    8 × 32,768 = 262,144 tokens.
      TP 1: the weights alone (131.4 GiB) exceed the 79.18 GiB an H100 reports.
      TP 2: 65.7 GiB of weights a GPU; the KV needs 262,144 × 163,840 B = 40 GiB a GPU, but
            requested − weights is under 8 GiB before activations: fails.
      TP 4: 32.9 GiB of weights, 262,144 × 81,920 B = 20 GiB of KV a GPU; about 35 GiB is left: serves."""
    h100 = get_device("h100-sxm")
    assert llama70.num_params == 70_553_706_496
    per_token = 80 * 8 * 128 * 2 * 2
    need = 8 * 32768
    assert llama70.num_params * 2 > h100.memory_bytes                           # TP 1
    tp2 = kvcap.plan(llama70, get_device("h100-sxm", count=2), engine="vllm", max_model_len=32768,
                     tensor_parallel_size=2)
    assert tp2.line("requested_memory") - tp2.line("weights") < need * per_token // 2   # TP 2
    tp4 = kvcap.plan(llama70, get_device("h100-sxm", count=4), engine="vllm", max_model_len=32768,
                     tensor_parallel_size=4)
    assert tp4.line("available_kv_cache_memory") >= need * per_token // 4          # TP 4

    r = fit(llama70, 32768, 8, engines=["vllm"], devices=[h100], quant=["16"], kv_dtype=["16"])
    best = r.solutions[0]
    assert (best.config.engine, best.config.layout.tp, best.devices, best.replicas) == ("vllm", 4, 4, 1)
    assert best.config.weights.bits == 16 and best.config.kv.bits == 16
    assert best.served.concurrency >= 8
    assert best.plan.engine_config["tensor_parallel_size"] == 4
    assert not any(s.devices < 4 for s in r.solutions)


def test_ranking_fewest_devices_then_memory_then_least_quantization(llama70):
    r = fit(llama70, 32768, 8, engines=["vllm"], devices=[get_device("h100-sxm"), get_device("h200")])
    keys = [(s.devices, s.memory, -s.config.weights.bits, -s.config.kv.bits) for s in r.solutions]
    assert keys == sorted(keys)
    # With quantization allowed fewer GPUs do: the top answer uses fewer than the 4 bf16 needs.
    assert r.solutions[0].devices < 4
    assert r.solutions[0].config.weights.bits < 16 or r.solutions[0].config.kv.bits < 16
    # One H200 (139.8 GiB) cannot hold 131.4 GiB of bf16 weights and 40 GiB of KV: bf16 needs more.
    for s in r.solutions:
        if s.devices == 1 and s.config.device.key == "h200":
            assert s.config.weights.bits < 16 or s.config.kv.bits < 16
    # Nothing listed is beaten on every count by another listed answer of its engine.
    for a in r.solutions:
        for b in r.solutions:
            if a is not b:
                assert not (b.beats(a.devices, a.memory, a.config.weights.bits, a.config.kv.bits)
                            and b.rank_key() < a.rank_key())


def test_pruned_search_finds_every_undominated_answer(llama8):
    devices = [get_device(k) for k in ("rtx-3060", "l4", "rtx-4090", "a100-40gb-sxm", "m2-max-32gb", "m3-max-48gb")]
    args = dict(engines=["vllm", "llamacpp", "mlx"], devices=devices, max_gpus=2)
    pruned = fit(llama8, 16384, 4, top=10_000, **args)
    every = fit(llama8, 16384, 4, complete=True, **args)
    assert pruned.plans < every.plans

    def names(sols):
        return {(s.config.engine, s.config.device.key, s.config.layout, s.config.weights.label,
                 s.config.kv.label, s.replicas) for s in sols}
    assert names(pruned.solutions) == names(_undominated(sorted(every.solutions, key=lambda s: s.rank_key())))
    # Everything the exhaustive search found serves, and every larger device of an answer serves too.
    assert all(s.served.concurrency * s.replicas >= 4 for s in every.solutions)


def test_the_top_and_each_engines_best_match_the_exhaustive_search(llama8):
    devices = [get_device(k) for k in ("rtx-3060", "l4", "rtx-4090", "a100-40gb-sxm", "h100-sxm", "m2-max-32gb",
                                       "m3-max-48gb", "m2-max-96gb")]
    args = dict(engines=["vllm", "sglang", "llamacpp", "mlc", "mlx"], devices=devices, max_gpus=2)
    quick = fit(llama8, 32768, 8, top=3, **args)
    every = _undominated(sorted(fit(llama8, 32768, 8, complete=True, **args).solutions, key=lambda s: s.rank_key()))

    def row(s):
        return (s.config.engine, s.config.device.key, s.config.layout, s.config.weights.label, s.config.kv.label,
                s.replicas)
    assert [row(s) for s in quick.solutions[:3]] == [row(s) for s in every[:3]]
    for engine in args["engines"]:
        mine = [row(s) for s in quick.solutions if s.config.engine == engine]
        truth = [row(s) for s in every if s.config.engine == engine]
        assert mine[:1] == truth[:1], engine


def test_lower_bound_never_exceeds_what_an_engine_plans(llama8):
    # The bound prunes devices unplanned, so it must stay below every engine's own need.
    p = kvcap.plan(llama8, "h100-sxm", engine="vllm", max_model_len=16384, kv_cache_dtype="fp8")
    lb = lower_bound(llama8, 16, 8, 1, 16384, 4)
    assert lb <= p.line("weights") + 4 * 16384 * 32 * 8 * 128 * 2       # weights + 4 sequences of fp8 KV
    assert text_params(llama8) * 2 <= p.line("weights") + 1


def test_multi_node_through_vllm_states_the_interconnect():
    m = kvcap.load_model("meta-llama/Meta-Llama-3.1-405B")
    r = fit(m, 8192, 1, engines=["vllm"], devices=[get_device("h100-sxm")], quant=["16"], kv_dtype=["16"], nodes=2)
    # 405B × 2 bytes = 810 GB: more than 8 × 79.18 GiB; 16 GPUs over two nodes (TP 8 × PP 2) hold it.
    assert m.num_params * 2 > 8 * get_device("h100-sxm").memory_bytes
    best = r.solutions[0]
    assert (best.config.layout.tp, best.config.layout.pp, best.config.layout.nodes) == (8, 2, 2)
    assert any("InfiniBand" in n for n in best.notes)


def test_replicas_when_one_replica_holds_fewer_sequences(llama8):
    r = fit(llama8, 32768, 24, engines=["vllm"], devices=[get_device("l4")], quant=["16"], kv_dtype=["16"],
            max_gpus=8, complete=True)
    dp = [s for s in r.solutions if s.replicas > 1]
    assert dp
    for s in dp:
        assert s.replicas == math.ceil(24 / s.served.concurrency) and s.served.concurrency < 24
        assert any("replicas" in n for n in s.notes)


def test_infeasible_target_reports_the_closest_miss(llama70):
    r = fit(llama70, 131072, 64, engines=["vllm", "llamacpp"], devices=[get_device("rtx-4090")], max_gpus=2)
    assert not r.feasible
    miss = r.closest_miss()
    assert miss is not None and miss.reason
    assert {m.engine for m in r.misses} >= {"vllm", "llamacpp"}


def test_bad_targets_and_inputs_are_refused(llama8):
    with pytest.raises(OptionsError, match="context window of 131,072"):
        fit(llama8, 200_000, 1)
    fit(llama8, 200_000, 1, engines=["mlc"], devices=[get_device("h100-sxm")], allow_long_context=True)
    with pytest.raises(OptionsError, match="at least 1"):
        fit(llama8, 4096, 0)
    with pytest.raises(OptionsError, match="unknown engine"):
        fit(llama8, 4096, 1, engines=["tgi"])
    with pytest.raises(OptionsError, match="--quant"):
        fit(llama8, 4096, 1, quant=["q9_weird"])
    with pytest.raises(DeviceError):
        get_device("no-such-gpu")


def test_native_quant_names_reach_only_their_engines(llama8):
    r = fit(llama8, 8192, 1, engines=["mlc", "llamacpp"], devices=[get_device("rtx-4090")], quant=["q4f16_1"])
    assert {s.config.engine for s in r.solutions} == {"mlc"}
    assert any(m.engine == "llamacpp" and "--quant" in m.reason for m in r.misses)


def test_mlc_on_metal_past_the_cap_is_pinned_explicitly(llama8):
    # 4 × 32,768 = 131,072 tokens: four times MLC's Metal cap (32,768). MLC caps what it infers, not
    # a max_total_seq_length set explicitly; a 64 GB Mac holds the 16 GiB of f16 KV (128 KiB a token).
    r = fit(llama8, 32768, 4, engines=["mlc"], devices=[get_device("m2-max-64gb")])
    best = r.solutions[0]
    assert best.served.over_cap
    assert best.plan.engine_config["max_total_sequence_length"] == 4 * 32768
    assert best.plan.line("capacity_memory") >= 4 * 32768
    assert any("32,768-token cap" in n for n in best.notes)
    from kvcap.launch import launch
    overrides = launch(best.plan).commands[0].argv[-1]
    assert "max_total_seq_length=131072" in overrides.split(";")


def test_replicas_of_macs_where_one_mac_holds_fewer(llama8):
    # One 96 GB Mac under MLX holds fewer than 40 sequences of 32k (its max_batch); with four
    # machines allowed, replicas serve, each planned at the sequences it holds.
    r = fit(llama8, 32768, 40, engines=["mlx"], devices=[get_device("m2-max-96gb")], nodes=4)
    s = r.solutions[0]
    assert 1 < s.replicas <= 4 and s.nodes == s.replicas
    assert s.served.concurrency * s.replicas >= 40
    assert s.plan.fits and s.plan.engine_config["batch"] == s.served.concurrency
    one = fit(llama8, 32768, 40, engines=["mlx"], devices=[get_device("m2-max-96gb")], nodes=1)
    assert not one.feasible and one.closest_miss().concurrency == s.served.concurrency
