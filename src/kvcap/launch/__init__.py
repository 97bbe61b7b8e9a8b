"""A Plan → the command line that starts its engine with the planned configuration.

    launch(plan)                  vllm serve …, llama-server …, mlc_llm serve …, …
    launch(plan, model_ref=…)     with the path or id the engine should load

Each command is checked against the engine's flag table (engines/data/flags, read from the
engine's own argument parser, with its source) before it is returned: a flag the targeted
version does not have is an OptionsError, never a printed command.
"""

from __future__ import annotations

from ..errors import OptionsError
from ..plan import Plan
from . import flags as F
from .engines import BUILDERS
from .types import Command, Launch, Parts

__all__ = ["launch", "Launch", "Command", "model_ref", "flag_version"]


def flag_version(plan: Plan) -> str | None:
    """The engine version the plan is for, as its flag tables name versions."""
    for name in ("engine_version", "ollama_version"):
        v = plan.engine_config.get(name) or plan.options.get(name)
        if v:
            return str(v)
        try:
            return str(plan.line(name))
        except KeyError:
            pass
    return None


def model_ref(plan: Plan) -> str:
    """What to load: the model's Hugging Face id where kvcap knows it, else its name."""
    m = plan.model
    name = m.name
    if plan.engine == "mlc" and "/" in name:
        q = plan.options.get("quantization", "q4f16_1")
        return f"HF://mlc-ai/{name.split('/')[-1]}-{q}-MLC"     # MLC's naming of its prebuilt models
    if plan.engine == "llamacpp":
        ft = plan.options.get("gguf_file_type") or (m.quantization or {}).get("gguf_file_type") or "Q4_K_M"
        return f"{name.split('/')[-1]}-{ft}.gguf"
    return name


def launch(plan: Plan, model: str | None = None, *, nodes: int = 1, replicas: int = 1) -> Launch:
    """The commands that start `plan.engine` as planned (`nodes`, `replicas`: from a fit answer)."""
    if not plan.fits:
        raise OptionsError(f"the plan does not fit ({plan.binding.reason}); there is nothing to launch")
    build = BUILDERS.get(plan.engine)
    if build is None:
        raise OptionsError(f"no launch command for engine {plan.engine!r}; supported: {', '.join(BUILDERS)}")
    if model is not None and (not model.strip() or model.startswith("-")):
        raise OptionsError(f"model path {model!r} would read as a flag or nothing; write it as ./{model.strip()}")
    tab = F.table(plan.engine, flag_version(plan))
    known = {f for p in tab.programs.values() for f in p.get("flags", {})}
    parts: Parts = build(plan, model or model_ref(plan), nodes, replicas, {f: True for f in known} | {"_version": tab.version})
    problems = []
    for c in parts.commands:
        if c.program:
            problems += F.check(list(c.argv), tab, c.program)
        if parts.env_checked and c.env:
            problems += F.check_env(c.env, tab)
    if parts.options:
        problems += F.check_options({k: str(v) for k, v in parts.options.items()}, tab)
    if problems:
        raise OptionsError(f"kvcap built a {plan.engine} command its flag table refuses: {'; '.join(problems)}")
    return Launch(plan.engine, tab.version, tab.cite(), parts.commands, dict(parts.files), parts.notes)
