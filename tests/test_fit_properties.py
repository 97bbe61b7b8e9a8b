"""Properties of fit and launch that hold for any target: every answer serves, the ranking is total,
an engine never fails where it served with less, and launch commands survive the shell."""

import math
import shlex

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kvcap
from kvcap.advise.fit import fit
from kvcap.device import get_device
from kvcap.errors import OptionsError
from kvcap.launch import launch
from kvcap.launch import flags as F

DEVICES = ("l4", "rtx-4090", "a100-80gb-sxm", "m2-max-64gb")


@pytest.fixture(scope="module")
def model():
    return kvcap.load_model("meta-llama/Llama-3.2-3B-Instruct")


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(context=st.sampled_from([2048, 8192, 32768, 131072]), k=st.integers(1, 48))
def test_every_answer_serves_and_the_ranking_is_sorted(model, context, k):
    r = fit(model, context, k, engines=["vllm", "llamacpp", "mlx"], devices=[get_device(d) for d in DEVICES],
            max_gpus=2)
    keys = [s.rank_key() for s in r.solutions]
    assert keys == sorted(keys)
    for s in r.solutions:
        assert s.plan.fits
        assert s.served.concurrency * s.replicas >= k
        assert s.replicas == math.ceil(k / s.served.concurrency)
        assert s.devices <= (2 if s.config.device_class.multi_gpu else 1)
    if not r.feasible:
        assert r.closest_miss() is not None


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(k=st.integers(1, 32))
def test_more_sequences_never_need_fewer_devices(model, k):
    """Monotone in the target: what serves k + 8 sequences serves k (so the best for k is no bigger)."""
    args = dict(engines=["vllm"], devices=[get_device("l4"), get_device("a100-80gb-sxm")], max_gpus=4)
    small, big = fit(model, 32768, k, **args), fit(model, 32768, k + 8, **args)
    if big.feasible:
        assert small.feasible
        assert small.solutions[0].rank_key()[:2] <= big.solutions[0].rank_key()[:2]


@settings(max_examples=25, deadline=None)
@given(path=st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40))
def test_launch_commands_survive_the_shell_whatever_the_model_path(path):
    p = _plan()
    if path.startswith("-") or not path.strip():
        with pytest.raises(OptionsError):
            launch(p, path)
        return
    lt = launch(p, path)
    c = lt.commands[0]
    assert shlex.split(c.shell()) == list(c.argv)
    assert c.argv[2] == path
    assert F.check(list(c.argv), F.table("vllm", lt.version), "vllm serve") == []


_PLAN = []


def _plan():
    if not _PLAN:
        _PLAN.append(kvcap.plan("llama3_1_8b", "l4", engine="vllm", max_model_len=4096))
    return _PLAN[0]
