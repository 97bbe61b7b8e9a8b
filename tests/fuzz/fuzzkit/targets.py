"""What each fuzz input is fed to, in-process: load the model, then plan it under an engine on a
device (so a mutated field reaches the family builder and every engine's arithmetic)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from . import world as w

ENGINES = ("mlc", "vllm", "llamacpp", "ollama", "sglang", "mlx")
# A few devices of every backend; the per-engine device checks run too.
DEVICES = ("rtx-4090", "h100-sxm", "m2-max-32gb", "iphone-15-pro", "mi300x", "rk3588-16gb", "arc-a770",
           "jetson-orin-nano-8gb", "t4")


# What the last load_and_plan call chose, so a failure can be reported and replayed.
LAST: dict[str, Any] = {}


def load_and_plan(source: Any, rng: random.Random) -> None:
    """load_model(source), then plan it with a random engine, device and perhaps an option or two."""
    import kvcap
    LAST.clear()
    LAST["source"] = source
    model = kvcap.load_model(source, offline=True)
    engine = rng.choice(ENGINES)
    options: dict[str, Any] = {}
    if rng.random() < 0.3:
        from kvcap.engines import get_engine
        names = sorted(get_engine(engine).OPTIONS)
        for _ in range(rng.randint(1, 2)):
            options[rng.choice(names)] = rng.choice((w.value(rng), 1, 0, -1, 2**40, 0.5, True, None))
    device = kvcap.get_device(rng.choice(DEVICES))
    LAST.update(engine=engine, device=device.key, options=options)
    plan = kvcap.plan(model, device, engine=engine, **options)
    r = rng.random()
    if r < 0.25:     # what `kvcap plan` adds: ranked what-ifs, the text report, the launch command
        from kvcap.advise.report import plan_extras
        from kvcap.report import text
        LAST["then"] = "plan_extras"
        plan_extras(plan, True, True, None)
        text.render(plan)
        plan.to_json()
    elif r < 0.3:    # the solver, on one device so that it stays quick
        from kvcap.advise.fit import fit
        LAST["then"] = "fit"
        fit(model, rng.choice((1024, 32768)), rng.choice((1, 8)), devices=[device], top=3)


def load_only(source: Any) -> None:
    import kvcap
    kvcap.load_model(source, offline=True)


def validate_file(path: Path) -> None:
    from kvcap.validate import validate
    validate([path])
