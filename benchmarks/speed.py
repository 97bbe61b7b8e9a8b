"""Speed of kvcap: cold CLI wall time and in-process plans per second.

    .venv/bin/python benchmarks/speed.py [--runs 15] [--model llama3_1_8b] [--device m2-max-64gb]

Prints the median cold wall time of `kvcap plan MODEL --json` against `python -c pass` (the
interpreter's own start-up, which kvcap cannot go below), the modules `import kvcap` pulls in,
and plans per second in one process (full plans, and `kvcap.capacity`: the same numbers without
ledger or what-ifs). Run it with PYTHONDONTWRITEBYTECODE unset, as users run kvcap. Targets (issue 2): cold CLI <= 150 ms on the 2-core dev
machine, >= 20,000 plans/s in process, `import kvcap` imports nothing heavy.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HEAVY = ("torch", "triton", "numpy", "matplotlib", "safetensors", "gguf", "huggingface_hub", "rich")


def wall(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--model", default="llama3_1_8b")
    ap.add_argument("--device", default=None, help="catalog device (default: custom metal 48GiB)")
    ap.add_argument("--seconds", type=float, default=3.0, help="in-process timing budget")
    a = ap.parse_args()

    dev = ["--device", a.device] if a.device else ["--backend", "metal", "--memory", "48GiB"]
    # The console script users run (`pip install` puts it beside the interpreter); else -m.
    script = Path(sys.executable).with_name("kvcap")
    entry = [str(script)] if script.exists() else [sys.executable, "-m", "kvcap"]
    plan_cmd = [*entry, "plan", a.model, *dev, "--json"]
    subprocess.run(plan_cmd, check=True, stdout=subprocess.DEVNULL)  # warm the file cache
    base = wall([sys.executable, "-c", "pass"], a.runs)
    cold = wall(plan_cmd, a.runs)
    imported = subprocess.run(
        [sys.executable, "-c", "import sys, kvcap; print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in %r)))" % (HEAVY,)],
        check=True, capture_output=True, text=True).stdout.strip()

    import kvcap
    model = kvcap.load_model(a.model)
    device = kvcap.get_device(a.device) if a.device else kvcap.get_device(backend="metal", memory="48GiB")
    def rate(fn) -> float:
        fn(model, device, engine="mlc", mode="server")
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < a.seconds:
            for mode in ("local", "interactive", "server"):
                fn(model, device, engine="mlc", mode=mode)
            n += 3
        return n / (time.perf_counter() - t0)

    plans, capacities = rate(kvcap.plan), rate(kvcap.capacity)

    print(f"date            {time.strftime('%Y-%m-%d')}")
    print(f"machine         {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"python -c pass  {base * 1000:.1f} ms (median of {a.runs})")
    print(f"kvcap plan cold {cold * 1000:.1f} ms (median of {a.runs}; kvcap {' '.join(plan_cmd[len(entry):])})")
    print(f"kvcap overhead  {(cold - base) * 1000:.1f} ms above the interpreter")
    print(f"heavy imports   {imported or 'none'}")
    print(f"plans/s         {plans:,.0f} in process: kvcap.plan, full ledger + what-ifs (model {a.model}, engine mlc)")
    print(f"capacities/s    {capacities:,.0f} in process: kvcap.capacity, the same numbers without the explanation")


if __name__ == "__main__":
    main()
