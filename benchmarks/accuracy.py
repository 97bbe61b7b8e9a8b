"""Accuracy of kvcap against real engine logs: `kvcap validate` over ../shared/validation.

    .venv/bin/python benchmarks/accuracy.py [FILES…]

Prints, per engine: cases passed / failed / skipped, cases exact end to end, the median and max
relative error end to end (every compared number), and for the KV size fields (tokens, blocks,
cells, capacity) the relative error of the prediction made from the log's `given`
intermediates and of the end-to-end prediction. The figures go to benchmarks/RESULTS.md with the date.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from kvcap.validate import validate

KV_FIELDS = ("kv_cache_tokens", "num_gpu_blocks", "max_total_sequence_length", "n_ctx", "kv_cells", "kv_size_mib",
             "kv_cache_mib")


def main(paths: list[str]) -> None:
    if not paths:
        shared = Path(__file__).resolve().parents[2] / "shared" / "validation"
        paths = sorted(str(p) for p in shared.glob("*.jsonl"))
    report = validate(paths)
    print(f"date {time.strftime('%Y-%m-%d')}; files: {', '.join(Path(p).name for p in paths)}")
    print(f"{'engine':<9} {'pass':>4} {'fail':>4} {'skip':>4} {'exact':>5}  {'e2e median':>10} {'e2e max':>8}  "
          f"{'KV from given: n, max rel err':>30}  {'KV end to end: n, median, max':>26}")
    for engine, s in report["summary"].items():
        rels, e2e = [], []
        for c in report["cases"]:
            if c["engine"] != engine or c["status"] == "skipped":
                continue
            for f in c["fields"]:
                name = f["name"].split(".")[-1]
                if name not in KV_FIELDS or not f["observed"] or isinstance(f["observed"], str):
                    continue
                if f["judged"] == "from_given":   # (an upper bound from one worker's line is not an estimate)
                    rels.append(abs(float(f["predicted_from_given"]) - float(f["observed"])) / abs(float(f["observed"])))
                if f["predicted"] is not None:
                    e2e.append(abs(float(f["predicted"]) - float(f["observed"])) / abs(float(f["observed"])))
        med = "—" if s["median_rel_err"] is None else f"{s['median_rel_err']:.2%}"
        mx = "—" if s["max_rel_err"] is None else f"{s['max_rel_err']:.2%}"
        given = f"{len(rels)}, {max(rels):.2%}" if rels else "—"
        kv = f"{len(e2e)}, {statistics.median(e2e):.2%}, {max(e2e):.2%}" if e2e else "—"
        print(f"{engine:<9} {s['pass']:>4} {s['fail']:>4} {s['skipped']:>4} {s['exact']:>5}  {med:>10} {mx:>8}  "
              f"{given:>30}  {kv:>26}")
    print()
    for c in report["cases"]:
        if c["status"] != "pass":
            print(f"{c['id']}: {c['status']} — {c['reason']}")


if __name__ == "__main__":
    main([a for a in sys.argv[1:] if not a.startswith("--")])
