"""kvcap: how much KV cache a model gets on a device under an inference engine.

The public API (heavy parts are imported lazily, so `import kvcap` stays light):

    import kvcap
    p = kvcap.plan("llama3_1_8b", "m2-max-64gb", engine="mlc", mode="interactive", quantization="q4f16_1")
    p.kv_tokens, p.binding.name, p.engine_config
"""

from __future__ import annotations

import sys as _sys
from types import ModuleType as _ModuleType
from typing import Any

from .errors import DeviceError, InsufficientMemory, KvcapError, ModelError, OptionsError

__version__ = "0.1.0"


def load_model(source, **kwargs):
    """A catalog name, HF id, config.json, .gguf, model folder or config dict -> ModelSpec
    (`offline=True` never goes online; `limits=ReadLimits(...)` caps header reads)."""
    from .model import load_model as _load
    return _load(source, **kwargs)


def get_device(name=None, **kwargs):
    """A catalog device by name, or a custom one (`backend=`, `memory=`) -> DeviceSpec."""
    from .device import get_device as _get
    return _get(name, **kwargs)


def plan(model, device, engine: str = "mlc", **options: Any):
    """Plan the KV cache of `model` on `device` under `engine` with the engine's own options."""
    from .engines import get_engine
    from .device.spec import DeviceSpec
    from .model.spec import ModelSpec
    m = model if isinstance(model, ModelSpec) else load_model(model)
    d = device if isinstance(device, DeviceSpec) else get_device(device)
    return get_engine(engine).plan(m, d, options)


def capacity(model, device, engine: str = "mlc", **options: Any):
    """Like `plan`, but only the numbers (kv_tokens, binding, engine_config): no ledger, no
    what-ifs. The same engine arithmetic; fast enough for solvers that try thousands of layouts."""
    from .engines import get_engine
    from .device.spec import DeviceSpec
    from .model.spec import ModelSpec
    from .plan import Capacity
    m = model if isinstance(model, ModelSpec) else load_model(model)
    d = device if isinstance(device, DeviceSpec) else get_device(device)
    eng = get_engine(engine)
    if hasattr(eng, "capacity"):
        return eng.capacity(m, d, options)
    return Capacity.of(eng.plan(m, d, options))


class _Package(_ModuleType):
    """Keeps `kvcap.plan` the function: importing the submodule `kvcap.plan` (the Plan ledger)
    would otherwise rebind the package attribute to that module. The module stays reachable
    as `from kvcap.plan import Plan` (sys.modules)."""

    def __setattr__(self, name, value):
        if name == "plan" and isinstance(value, _ModuleType):
            return
        super().__setattr__(name, value)


_sys.modules[__name__].__class__ = _Package

__all__ = ["plan", "capacity", "load_model", "get_device", "KvcapError", "ModelError", "DeviceError", "OptionsError",
           "InsufficientMemory", "__version__"]
