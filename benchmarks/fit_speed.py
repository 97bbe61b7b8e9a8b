"""Speed of `kvcap fit` over the whole device catalog.

    .venv/bin/python benchmarks/fit_speed.py [--runs 5] [--target llama3_1_8b:32768:8 …]

For each target (model:context:concurrency) it prints, over the whole catalog (every device ×
weight quantization × KV dtype × engine × parallel layout, up to 8 GPUs on one node):
  - the solver alone (model loaded, modules imported): best and median wall seconds, and its CPU
    seconds (what the wall time is on an otherwise idle machine);
  - the cold command line `kvcap fit MODEL --context N -k K --catalog --json`: median wall seconds;
  - engine plans run, answers listed.
Target (issue 5): the solver answers in <= 1 s on the 2-core dev machine. The load average is
printed too: other work on the machine slows the wall figures, not the CPU ones.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time

DEFAULT_TARGETS = ("llama3_1_8b:32768:8", "llama3_1_70b:32768:8", "Qwen/Qwen3-30B-A3B:32768:4")


def solver(model, context: int, k: int, runs: int) -> tuple[float, float, float, int, int]:
    from kvcap.advise.fit import fit
    fit(model, context, k)                    # first call imports the engine policies
    times, cpu, plans, answers = [], [], 0, 0
    for _ in range(runs):
        t, c = time.perf_counter(), time.process_time()
        r = fit(model, context, k)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        plans, answers = r.plans, len(r.solutions)
    return min(times), statistics.median(times), min(cpu), plans, answers


def cold(model: str, context: int, k: int, runs: int) -> float:
    cmd = [sys.executable, "-m", "kvcap", "fit", model, "--context", str(context), "-k", str(k), "--catalog", "--json"]
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)     # warm the file cache
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--target", nargs="+", default=list(DEFAULT_TARGETS), help="model:context:concurrency")
    ap.add_argument("--no-cold", action="store_true", help="skip the command-line timings")
    a = ap.parse_args()

    import kvcap
    from kvcap.device.catalog import entries
    print(f"{platform.node()}: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.2f}; "
          f"{len(entries())} catalog devices")
    print(f"{'target':<34} {'wall best':>9} {'median':>8} {'CPU':>7} {'CLI cold':>9} {'plans':>6} {'answers':>7}")
    for spec in a.target:
        name, context, k = spec.rsplit(":", 2)
        model = kvcap.load_model(name)
        best, med, cpu, plans, answers = solver(model, int(context), int(k), a.runs)
        c = float("nan") if a.no_cold else cold(name, int(context), int(k), max(1, a.runs // 2))
        print(f"{spec:<34} {best:>8.3f}s {med:>7.3f}s {cpu:>6.3f}s {c:>8.3f}s {plans:>6} {answers:>7}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
