"""The public MLC-LLM cases (../shared/validation/mlc.jsonl) replayed through kvcap's MLC policy."""

import pytest

from kvcap.validate import load_cases, validate
from kvcap.validate.mlc import replay


@pytest.fixture
def report(shared):
    return validate([shared / "validation" / "mlc.jsonl"])


def test_every_replayable_public_case_passes(report):
    cases = {c["id"]: c for c in report["cases"]}
    failed = {i: c["reason"] for i, c in cases.items() if c["status"] == "fail"}
    assert not failed
    passed = {i for i, c in cases.items() if c["status"] == "pass"}
    # the C++ and Python-era logs with their intermediates, the two-model draft, the TP=8 error
    assert {"mlc-2026", "mlc-2126", "mlc-2128", "mlc-bentomlc-readme", "mlc-3394-a", "mlc-3394-b",
            "mlc-3024"} <= passed
    assert report["summary"]["mlc"]["pass"] == len(passed)


def test_skips_say_why(report):
    skipped = {c["id"]: c["reason"] for c in report["cases"] if c["status"] == "skipped"}
    assert all(skipped.values())
    assert "#1603" in skipped.get("mlc-1603", "")
    assert "temp buffer" in skipped.get("mlc-jetson-containers-1116", "")


def test_the_error_case_reproduces_mlcs_sentence(report):
    case = next(c for c in report["cases"] if c["id"] == "mlc-3024")
    err = next(f for f in case["fields"] if f["name"] == "error")
    assert err["ok"] and err["predicted_from_given"] == err["observed"]
    assert err["observed"].startswith("Insufficient GPU memory error: The available single GPU memory is 20584.716 MB")


def test_every_mode_line_of_3394a_matches(shared):
    case = next(c for c in load_cases([shared / "validation" / "mlc.jsonl"]) if c["id"] == "mlc-3394-a")
    pred = replay(case)["from_given"]["mode_lines"]
    for mode, fields in case["mode_lines"].items():
        for name, value in fields.items():
            assert pred[mode][name] == value, (mode, name)


def test_end_to_end_temp_estimate_never_under_estimates(shared):
    """The temp-buffer estimate errs on the safe side on every case that gives the real value."""
    from kvcap.engines import mlc as policy
    from kvcap.engines.mlc_era import parse_era
    from kvcap.validate.mlc import _model_and_options
    for case in load_cases([shared / "validation" / "mlc.jsonl"]):
        if "temp_buffer_bytes" not in (case.get("given") or {}):
            continue
        model, options = _model_and_options(case)
        o = policy.parse({k: v for k, v in options.items()})
        described = policy.describe_models(model, o)
        estimate = max(m.temp_func_bytes for m in described)
        given = int(case["given"]["temp_buffer_bytes"])
        real = given if parse_era(case["engine_era"]).python else given / 2
        assert estimate >= real, case["id"]
        assert estimate <= 1.25 * real, case["id"]
