"""The long fuzz run: thousands of hostile inputs, each bounded in time, the whole bounded in memory.

    python benchmarks/fuzz.py                      # 6,000 inputs or 300 s, whichever comes first
    python benchmarks/fuzz.py --inputs 20000 --seconds 900 --seed 7
    python benchmarks/fuzz.py --replay 1234        # input #1234 of that seed again, with its traceback

Inputs (the generators of tests/fuzz/fuzzkit, shared with the hypothesis tests): every catalog
config mutated (missing, wrong-typed, negative, huge, NaN/Infinity, nested junk) as a dict and as
a config.json; GGUF and safetensors files truncated, byte-flipped, with lengths, counts, dims and
offsets near 2^64 or past the end; MLC folders; random command lines for every command
(in-process through kvcap.cli.main, and a few real `python -m kvcap` subprocesses); validation
case files mutated from ../shared/validation.

Every input must end in a result or a one-line kvcap error (exit 2; exit 1 for "does not fit"):
a traceback or a hang (past --timeout seconds) is a failure, and so is running out of the
address-space limit (--max-memory, set with RLIMIT_AS so that an unbounded allocation is a
MemoryError here, not an out-of-memory kill). Prints the counts and the peak RSS; exits 1 when
any input failed.
"""

from __future__ import annotations

import argparse
import collections
import faulthandler
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "fuzz"))

from fuzzkit import argv as fuzz_argv, oracle, targets  # noqa: E402
from fuzzkit.world import World  # noqa: E402

# How often each kind of input is drawn (CLI lines cost ~20x an in-process plan).
KINDS = {"config": 24, "config-file": 8, "gguf": 16, "safetensors": 14, "mlc": 8, "cli": 22, "cases": 8}
SUBPROCESS_RUNS = 20


def load_cases(shared: Path) -> list[dict]:
    out = []
    for f in sorted((shared / "validation").glob("*.jsonl")):
        out += [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    return out


def one(i: int, seed: int, world: World, timeout: float) -> tuple[str, oracle.Outcome, str]:
    """Input #i of this seed: (kind, outcome, a short description of the input)."""
    rng = random.Random(seed * 1_000_003 + i)
    kind = rng.choices(list(KINDS), weights=list(KINDS.values()))[0]
    if kind == "cli":
        args = fuzz_argv.argv(rng, world)
        return kind, oracle.cli(args, timeout_s=timeout), repr(args)
    if kind == "cases":
        path = world.case_file(rng)
        if rng.random() < 0.3:
            args = ["validate", str(path)] + rng.choice(([], ["--json"], ["--check"]))
            return kind, oracle.cli(args, timeout_s=timeout), repr(args)
        return kind, oracle.call(targets.validate_file, path, timeout_s=timeout), str(path)
    source = {"config": world.config_dict, "config-file": world.config_file, "gguf": world.gguf_file,
              "safetensors": world.safetensors_folder, "mlc": world.mlc_folder}[kind](rng)
    described = json.dumps(source, default=str)[:300] if isinstance(source, dict) else str(source)
    return kind, oracle.call(targets.load_and_plan, source, rng, timeout_s=timeout), described


def subprocess_runs(seed: int, world: World, timeout: float) -> list[tuple[list[str], oracle.Outcome]]:
    """A few command lines through the real entry point (`python -m kvcap`), as a user runs them."""
    rng = random.Random(seed)
    lines = [["plan", "llama-3.1-8b", "-d", "rtx-4090", "--no-advise"], ["plan", "/dev/zero", "-d", "rtx-4090"],
             ["validate", "/dev/zero"], ["devices"], ["plan", "x", "--memory", "1e400GiB", "--backend", "cuda"]]
    lines += [fuzz_argv.argv(rng, world) for _ in range(SUBPROCESS_RUNS - len(lines))]
    out = []
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    for args in lines:
        try:
            p = subprocess.run([sys.executable, "-m", "kvcap", *args], capture_output=True, text=True,
                               timeout=timeout * 6, env=env, cwd=ROOT)
            out.append((args, oracle.judge_exit(args, p.returncode, p.stderr)))
        except subprocess.TimeoutExpired:
            out.append((args, oracle.Outcome(oracle.HANG, f"{args}: no exit within {timeout * 6} s")))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--inputs", type=int, default=6000, help="inputs to try (default 6000)")
    ap.add_argument("--seconds", type=float, default=300, help="stop after this long (default 300)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=30, help="seconds one input may take (default 30)")
    ap.add_argument("--max-memory", type=int, default=4096, help="address-space limit in MiB (default 4096)")
    ap.add_argument("--shared", type=Path, default=Path(os.environ.get("KVCAP_SHARED", ROOT.parent / "shared")))
    ap.add_argument("--replay", type=int, metavar="I", help="run input #I of --seed alone and print it")
    ap.add_argument("--no-subprocess", action="store_true", help="skip the python -m kvcap runs")
    args = ap.parse_args()

    limit = args.max_memory << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    os.environ["HF_HUB_OFFLINE"] = "1"             # never the network, never the user's HF cache
    os.environ["HF_HUB_CACHE"] = tempfile.mkdtemp(prefix="kvcap-fuzz-hf-")
    cases = load_cases(args.shared) if (args.shared / "validation").is_dir() else []
    world = World(Path(tempfile.mkdtemp(prefix="kvcap-fuzz-")), cases)
    # Last resort against a hang SIGALRM cannot interrupt (a long C call): dump and exit.
    faulthandler.dump_traceback_later(args.timeout * 6, repeat=True, exit=True)

    if args.replay is not None:
        kind, outcome, described = one(args.replay, args.seed, world, args.timeout)
        print(f"#{args.replay} {kind}: {outcome.kind}\ninput: {described}\n{outcome.detail}")
        return 1 if outcome.bad else 0

    start = time.monotonic()
    counts: collections.Counter = collections.Counter()
    by_kind: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    failures: dict[str, tuple[int, str, str]] = {}
    slowest = (0.0, "")
    grew = (0, "")                       # the input that raised the peak RSS most
    i = 0
    while i < args.inputs and time.monotonic() - start < args.seconds:
        t0 = time.monotonic()
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        kind, outcome, described = one(i, args.seed, world, args.timeout)
        took = time.monotonic() - t0
        growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0
        grew = max(grew, (growth, f"#{i} {kind}: {described[:200]}"))
        faulthandler.dump_traceback_later(args.timeout * 6, repeat=True, exit=True)   # re-arm
        slowest = max(slowest, (took, f"#{i} {kind}"))
        counts[outcome.kind] += 1
        by_kind[kind][outcome.kind] += 1
        if outcome.bad:
            key = outcome.detail.strip().splitlines()[-1][:160] if outcome.detail.strip() else outcome.kind
            failures.setdefault(key, (i, kind, f"{described}\n{outcome.detail}"))
        i += 1
    in_process_s = time.monotonic() - start

    sub = [] if args.no_subprocess else subprocess_runs(args.seed, world, args.timeout)
    for a, outcome in sub:
        counts[outcome.kind] += 1
        by_kind["subprocess"][outcome.kind] += 1
        if outcome.bad:
            failures.setdefault(outcome.detail[:160], (-1, "subprocess", outcome.detail))
    elapsed = time.monotonic() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024          # KiB on Linux

    total = sum(counts.values())
    print(f"kvcap fuzz: seed {args.seed}, {elapsed:.1f} s ({in_process_s:.1f} s in-process, "
          f"{total / elapsed:.0f} inputs/s), timeout {args.timeout:g} s per input, RLIMIT_AS {args.max_memory} MiB")
    print(f"inputs tried   {total}")
    print(f"results        {counts[oracle.RESULT]}")
    print(f"clean errors   {counts[oracle.ERROR]}")
    print(f"tracebacks     {counts[oracle.TRACEBACK]}")
    print(f"hangs          {counts[oracle.HANG]}")
    print(f"peak memory    {peak:.0f} MiB RSS (the in-process inputs; the subprocesses are separate processes)")
    print(f"slowest input  {slowest[0]:.2f} s ({slowest[1]})")
    print(f"largest peak   +{grew[0] / 1024:.0f} MiB ({grew[1]})")
    print("\nby kind           inputs   results    errors  failures")
    for kind in list(KINDS) + ["subprocess"]:
        c = by_kind.get(kind, collections.Counter())
        print(f"  {kind:14s} {sum(c.values()):8d} {c[oracle.RESULT]:9d} {c[oracle.ERROR]:9d} "
              f"{c[oracle.TRACEBACK] + c[oracle.HANG]:9d}")
    for key, (n, kind, detail) in list(failures.items())[:10]:
        print(f"\n--- #{n} {kind} (replay: python benchmarks/fuzz.py --seed {args.seed} --replay {n})\n{detail[-2000:]}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
