"""kvcap.capacity: the numbers of a plan without its explanation must equal the plan's."""

import pytest
from hypothesis import given, settings, strategies as st

import kvcap
from kvcap.device import custom_device

MODELS = ["llama3_1_8b", "phi-3_5-vision", "qwen2"]


@settings(max_examples=40, deadline=None)
@given(model=st.sampled_from(MODELS), backend=st.sampled_from(["metal", "cuda", "opencl"]),
       gib=st.integers(min_value=2, max_value=200), mode=st.sampled_from(["local", "interactive", "server"]),
       util=st.sampled_from([None, 0.9]))
def test_mlc_capacity_equals_plan(model, backend, gib, mode, util):
    m, d = kvcap.load_model(model), custom_device(backend, f"{gib}GiB")
    opts = {"mode": mode} if util is None else {"mode": mode, "gpu_memory_utilization": util}
    p, c = kvcap.plan(m, d, **opts), kvcap.capacity(m, d, **opts)
    assert (c.kv_tokens, c.binding, dict(c.engine_config)) == (p.kv_tokens, p.binding, dict(p.engine_config))


@pytest.mark.parametrize("engine", ["vllm", "llamacpp"])
def test_engines_without_a_fast_path_fall_back_to_the_plan(engine):
    d = custom_device("cuda", "80GiB")
    p, c = kvcap.plan("llama3_1_8b", d, engine=engine), kvcap.capacity("llama3_1_8b", d, engine=engine)
    assert (c.engine, c.kv_tokens, c.binding) == (p.engine, p.kv_tokens, p.binding)
