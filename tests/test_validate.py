"""The validate framework: loading case files, tolerances, judging, the report and the CLI."""

import json
import sys
import types

import pytest

from kvcap.cli import main
from kvcap.validate import CaseFileError, Observed, load_cases, tolerance, validate


def write(tmp_path, *cases, name="cases.jsonl"):
    p = tmp_path / name
    p.write_text("\n".join(c if isinstance(c, str) else json.dumps(c) for c in cases) + "\n")
    return p


@pytest.fixture
def fake_engine(monkeypatch):
    """A replay module `kvcap.validate.fake` whose predictions the test controls."""
    mod = types.ModuleType("kvcap.validate.fake")
    mod.result = {}

    def replay(case):
        if case["id"] == "skip-me":
            from kvcap.validate import Skip
            raise Skip("cannot, for a reason")
        return mod.result

    mod.replay = replay
    monkeypatch.setitem(sys.modules, "kvcap.validate.fake", mod)
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr("kvcap.validate.find_spec",
                        lambda name, *a: object() if name == "kvcap.validate.fake" else real(name, *a))
    return mod


def test_bad_files_are_one_line_errors(tmp_path):
    with pytest.raises(CaseFileError, match="cannot read"):
        load_cases([tmp_path / "missing.jsonl"])
    with pytest.raises(CaseFileError, match=r"cases.jsonl:2: not valid JSON"):
        load_cases([write(tmp_path, {"id": "a", "engine": "x", "observed": {}}, "{oops")])
    with pytest.raises(CaseFileError, match="needs a string 'id'"):
        load_cases([write(tmp_path, {"engine": "x", "observed": {}})])
    assert main(["validate", str(tmp_path / "missing.jsonl")]) == 2


def test_default_tolerance_is_half_the_last_printed_decimal():
    case = {"tolerance": {"kv_cache_mib": {"abs": 0.0005}}}
    assert tolerance(case, "total_mib", Observed("14361.14")) == pytest.approx(0.005)
    assert tolerance(case, "total_mib", Observed("932.0")) == pytest.approx(0.05)
    assert tolerance(case, "kv_cache_mib", Observed("1.5")) == 0.0005      # the case's own wins
    assert tolerance(case, "server.max_total_sequence_length", 42918) == 0.0  # ints exact


def test_engine_without_a_policy_is_skipped(tmp_path):
    r = validate([write(tmp_path, {"id": "z1", "engine": "zzz", "observed": {"n": 1}})])
    assert r["cases"][0]["status"] == "skipped"
    assert r["cases"][0]["reason"] == "no policy for engine zzz yet"
    assert r["summary"]["zzz"]["skipped"] == 1


def test_judged_on_from_given_and_summarised_end_to_end(tmp_path, fake_engine):
    case = {"id": "c1", "engine": "fake", "observed": {"total_mib": 100.25, "n": 7, "error": "boom"},
            "mode_lines": {"server": {"n": 9}}}
    fake_engine.result = {"end_to_end": {"total_mib": 110.0, "n": 7, "error": "boom", "mode_lines": {"server": {"n": 9}}},
                          "from_given": {"total_mib": 100.252, "n": 7}}
    r = validate([write(tmp_path, case, {"id": "skip-me", "engine": "fake", "observed": {}})])
    c = r["cases"][0]
    assert c["status"] == "pass"
    fields = {f["name"]: f for f in c["fields"]}
    assert set(fields) == {"total_mib", "n", "error", "server.n"}
    assert fields["total_mib"]["predicted"] == 110.0 and fields["total_mib"]["predicted_from_given"] == 100.252
    assert fields["total_mib"]["tolerance"] == pytest.approx(0.005) and fields["total_mib"]["ok"]
    assert set(fields["n"]) == {"name", "observed", "predicted", "predicted_from_given", "tolerance", "ok", "judged"}
    assert fields["total_mib"]["judged"] == "from_given"
    s = r["summary"]["fake"]
    assert (s["pass"], s["fail"], s["skipped"], s["exact"]) == (1, 0, 1, 0)     # e2e total is 10% off
    assert s["max_rel_err"] == pytest.approx((110.0 - 100.25) / 100.25)
    assert s["median_rel_err"] == 0.0
    assert r["cases"][1]["reason"] == "cannot, for a reason"


def test_a_wrong_prediction_fails_and_check_exits_1(tmp_path, fake_engine, capsys):
    fake_engine.result = {"end_to_end": {"n": 8}}
    path = write(tmp_path, {"id": "c2", "engine": "fake", "observed": {"n": 7}})
    r = validate([path])
    assert r["cases"][0]["status"] == "fail" and "off: n" in r["cases"][0]["reason"]
    assert main(["validate", str(path)]) == 0
    assert main(["validate", "--check", str(path)]) == 1
    text = capsys.readouterr().out
    assert "c2" in text and "observed 7, predicted 8" in text and "fake: 0 pass, 1 fail" in text


def test_json_output_has_the_issue_schema(tmp_path, fake_engine, capsys):
    fake_engine.result = {"end_to_end": {"n": 7}}
    path = write(tmp_path, {"id": "c3", "engine": "fake", "observed": {"n": 7}})
    assert main(["validate", "--json", str(path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) == {"cases", "summary"}
    assert set(doc["cases"][0]) == {"id", "engine", "status", "reason", "fields"}
    assert set(doc["summary"]["fake"]) == {"pass", "fail", "skipped", "exact", "median_rel_err", "max_rel_err"}


def test_spread_of_a_rounded_given_widens_the_from_given_tolerance(tmp_path, fake_engine):
    fake_engine.result = {"end_to_end": {"x": 1.0}, "from_given": {"x": 1.0008}, "from_given_spread": {"x": 0.0005}}
    r = validate([write(tmp_path, {"id": "c4", "engine": "fake", "observed": {"x": 1.0}, "tolerance": {"x": {"abs": 0.0005}}})])
    f = r["cases"][0]["fields"][0]
    assert f["ok"] and f["tolerance"] == pytest.approx(0.001)
    fake_engine.result["from_given_spread"] = {}
    assert validate([write(tmp_path, {"id": "c4", "engine": "fake", "observed": {"x": 1.0},
                                      "tolerance": {"x": {"abs": 0.0005}}})])["cases"][0]["status"] == "fail"


def test_an_estimate_is_judged_end_to_end_within_its_stated_error_bar(tmp_path, fake_engine):
    case = {"id": "c5", "engine": "fake", "observed": {"gib": 10.01}}
    fake_engine.result = {"end_to_end": {"gib": 10.31}, "end_to_end_tolerance": {"gib": 0.25}}
    f = validate([write(tmp_path, case)])["cases"][0]["fields"][0]
    assert not f["ok"] and f["tolerance"] == pytest.approx(0.255)   # 0.005 rounding + 0.25 bar
    fake_engine.result["end_to_end_tolerance"] = {"gib": 0.5}
    assert validate([write(tmp_path, case)])["cases"][0]["status"] == "pass"
    # The bar never widens a from-given judgement.
    fake_engine.result = {"end_to_end": {"gib": 10.01}, "from_given": {"gib": 10.31}, "end_to_end_tolerance": {"gib": 1}}
    assert validate([write(tmp_path, case)])["cases"][0]["status"] == "fail"


def test_fields_nothing_predicts_are_listed_not_passed(tmp_path, fake_engine):
    case = {"id": "c6", "engine": "fake", "observed": {"a": 1, "b": 2}}
    fake_engine.result = {"end_to_end": {"a": 1}}
    c = validate([write(tmp_path, case)])["cases"][0]
    assert c["status"] == "pass" and "not predicted: b" in c["reason"]
    assert [f["ok"] for f in c["fields"]] == [True, None]
    fake_engine.result = {"end_to_end": {}}
    c = validate([write(tmp_path, case)])["cases"][0]
    assert c["status"] == "skipped" and "a, b not predicted" in c["reason"]


def test_a_from_given_upper_bound_passes_at_or_below_it(tmp_path, fake_engine):
    case = {"id": "c7", "engine": "fake", "observed": {"tokens": 81536}}
    fake_engine.result = {"end_to_end": {}, "from_given": {"tokens": 94912}, "from_given_bound": {"tokens": "upper"}}
    assert validate([write(tmp_path, case)])["cases"][0]["status"] == "pass"
    fake_engine.result["from_given"] = {"tokens": 80000}        # below what was observed: not a bound
    assert validate([write(tmp_path, case)])["cases"][0]["status"] == "fail"
