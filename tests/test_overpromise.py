"""Never an over-promise: on every public validation case, what kvcap predicts end to end is not
more capacity (tokens, blocks, sequences, KV memory) than the engine gave, nor less memory used
(weights, KV bytes) than the engine used, beyond the stated tolerance: the log's rounding plus
the error bar the engine's own ledger states for an estimated term (the replay's
`end_to_end_tolerance`). Every estimated ledger line says how far off it may be.

An over-promise found here is not hidden: a case that over-promises is marked xfail(strict=True)
with its cause, so the test fails the day it is fixed (and the mark must go) or the day another
case starts to over-promise.
"""

from __future__ import annotations

import math
from functools import lru_cache
from importlib import import_module
from pathlib import Path

import pytest

import kvcap
from conftest import SHARED
from kvcap.errors import KvcapError
from kvcap.validate import Skip, load_cases, tolerance, validate

# Observed fields that are capacity: predicting more than the engine gave is an over-promise.
CAPACITY = {"max_total_sequence_length", "max_num_sequence", "kv_cache_mib",          # MLC
            "num_gpu_blocks", "kv_cache_tokens", "max_concurrency", "available_kv_cache_gib",  # vLLM
            "n_ctx", "kv_cells", "swa_kv_cells", "kv_seqs"}                              # llama.cpp, Ollama
# Observed fields that are memory used: predicting less than the engine used promises a fit
# that may not be there.
USAGE = {"weights_gib", "params_mib", "kv_size_mib", "k_mib", "v_mib", "swa_kv_size_mib", "swa_k_mib", "swa_v_mib"}

KNOWN = {
    "vllm-10511-tp1": "vLLM V0 non-torch memory is estimated at 424 MiB, a minimax fit of the two V0 logs "
                      "(docs/vllm-estimate.md), not their safe end: this log's 1.79 GiB makes Available 1.36 GiB "
                      "(2.6 %) too high, beyond the stated ± 1.05 GiB",
}


def _case_ids() -> list[str]:
    try:
        ids = [c["id"] for c in load_cases(sorted((SHARED / "validation").glob("*.jsonl")))]
    except (KvcapError, OSError):
        ids = []
    # No cases found: one test still runs, and the `shared` fixture says why it cannot.
    return ids or ["<no validation cases>"]


def _param(case_id: str):
    marks = [pytest.mark.xfail(strict=True, reason=KNOWN[case_id])] if case_id in KNOWN else []
    return pytest.param(case_id, marks=marks, id=case_id)


@lru_cache(maxsize=1)
def _judged(shared: str) -> dict[str, list[tuple[str, str, float, float, float]]]:
    """case id -> [(direction, field, observed, predicted end to end, tolerance)] for every
    capacity and usage field the replay predicted end to end (validate()'s own output)."""
    paths = sorted((Path(shared) / "validation").glob("*.jsonl"))
    cases = {c["id"]: c for c in load_cases(paths)}
    out: dict[str, list] = {}
    for result in validate(paths)["cases"]:
        case = cases[result["id"]]
        rows = out.setdefault(result["id"], [])
        if result["status"] == "skipped":
            continue
        try:
            bars = import_module(f"kvcap.validate.{case['engine']}").replay(case).get("end_to_end_tolerance") or {}
        except Skip:
            continue
        for f in result["fields"]:
            name, observed, predicted = f["name"], f["observed"], f["predicted"]
            base = name.split(".")[-1]
            if base not in CAPACITY | USAGE or not isinstance(predicted, (int, float)) or isinstance(observed, str):
                continue
            tol = tolerance(case, name, observed) + float(bars.get(name, 0.0))
            rows.append(("capacity" if base in CAPACITY else "usage", name, float(observed), float(predicted), tol))
    return out


@pytest.mark.parametrize("case_id", [_param(i) for i in _case_ids()])
def test_no_case_over_promises_beyond_its_tolerance(shared, case_id):
    judged = _judged(str(shared))
    assert case_id in judged, f"{case_id} is not in {shared / 'validation'}"
    over = []
    for direction, name, observed, predicted, tol in judged[case_id]:
        if direction == "capacity" and predicted > observed + tol * (1 + 1e-9):
            over.append(f"{name}: predicted {predicted:.6g} > observed {observed:.6g} + {tol:.3g}")
        if direction == "usage" and predicted < observed - tol * (1 + 1e-9):
            over.append(f"{name}: predicted {predicted:.6g} < observed {observed:.6g} - {tol:.3g} (memory under-counted)")
    assert not over, "; ".join(over)


def test_the_over_promise_check_judges_most_cases(shared):
    """Guard against a vacuous pass: most replayed cases predict some capacity or usage field."""
    judged = _judged(str(shared))
    with_rows = [i for i, rows in judged.items() if rows]
    assert len(with_rows) >= 25 and sum(len(r) for r in judged.values()) >= 60
    assert {d for rows in judged.values() for d, *_ in rows} == {"capacity", "usage"}


def test_mlc_temp_buffer_estimate_errs_high_on_every_log(shared):
    """MLC's compiled temp buffer is estimated (docs/mlc-temp-buffer.md): on every case that backs
    the compiled value out of its log, the estimate is at least that value (fewer tokens, never
    more) and within the ledger's error bar."""
    from kvcap.engines import mlc as policy
    from kvcap.engines.mlc_era import parse_era
    from kvcap.validate import mlc as replay
    checked = 0
    for case in load_cases([shared / "validation" / "mlc.jsonl"]):
        given = case.get("given") or {}
        if "temp_buffer_bytes" not in given:
            continue
        try:
            era = parse_era(case.get("engine_era") or "current")
            model, options = replay._model_and_options(case)
            device, _ = replay._device(case, given.get("device_total_bytes"))
            line = policy.plan(model, device, options).ledger_line("temp_func_bytes")
        except (Skip, KvcapError):
            continue
        # C++ eras log 2 × the compiled maximum (the replay halves it back); Python eras log it as is.
        compiled = given["temp_buffer_bytes"] / (1 if era.python else 2)
        assert line.estimate and line.error_bar, case["id"]
        assert compiled <= line.value <= compiled + line.error_bar, (case["id"], compiled, line.value, line.error_bar)
        checked += 1
    assert checked >= 5


# --- every estimated ledger line says how far off it may be --------------------------------------
SAMPLE_MODELS = ("llama-3.1-8b", "Qwen/Qwen3-30B-A3B", "gemma-2-9b", "deepseek-ai/DeepSeek-V2-Lite-Chat",
                 "openai/gpt-oss-20b")
SAMPLE_DEVICES = {"mlc": ("rtx-4090", "m2-max-32gb", "iphone-15-pro"), "vllm": ("h100-sxm", "rtx-4090"),
                  "llamacpp": ("rtx-4090", "m2-max-32gb"), "ollama": ("rtx-4090", "m4-max-128gb"),
                  "sglang": ("h100-sxm", "l40s"), "mlx": ("m2-max-32gb", "m4-max-128gb")}


@pytest.mark.parametrize("engine", sorted(SAMPLE_DEVICES))
def test_every_estimated_line_carries_a_note_or_an_error_bar(engine):
    plans = 0
    estimated: set[str] = set()
    for name in SAMPLE_MODELS:
        model = kvcap.load_model(name)
        for device in SAMPLE_DEVICES[engine]:
            try:
                plan = kvcap.plan(model, device, engine=engine)
            except KvcapError:        # an engine that refuses the model or device: nothing estimated
                continue
            plans += 1
            for line in plan.ledger:
                if not line.estimate:
                    continue
                estimated.add(line.name)
                assert line.note.strip() or line.error_bar is not None, \
                    f"{engine} {name} on {device}: estimated line {line.name!r} says nothing of its error"
                if line.error_bar is not None:
                    assert math.isfinite(line.error_bar) and line.error_bar >= 0, (line.name, line.error_bar)
    assert plans >= 3, f"{engine}: too few plans in the sample to judge"
    assert estimated, f"{engine}: no estimated line in {plans} plans (the sample no longer exercises them)"
