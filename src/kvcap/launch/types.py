"""A launch: the commands (with their environment) that start an engine, files, and notes."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    program: str = ""            # whose flag table checks it ("" : not an engine's command)
    where: str = ""              # "node 1", "once, to quantize the weights", …

    def shell(self) -> str:
        prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items())
        return (prefix + " " if prefix else "") + shlex.join(self.argv)


@dataclass(frozen=True)
class Parts:
    """What an engine builder returns."""

    commands: tuple[Command, ...]
    env_checked: bool = False     # the environment is the engine's own configuration (Ollama)
    files: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)   # per-model options (Modelfile PARAMETER)
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Launch:
    engine: str
    version: str                  # the flag table's version the commands were checked against
    source: str                   # where that table comes from
    commands: tuple[Command, ...]
    files: Mapping[str, str]
    notes: tuple[str, ...]

    def text(self) -> str:
        out = [f"# {self.engine}: flags checked against {self.source}"]
        for c in self.commands:
            if c.where:
                out.append(f"# {c.where}")
            out.append(c.shell())
        for name, body in self.files.items():
            out.append(f"# {name}:")
            out += [f"#   {line}" for line in body.rstrip("\n").split("\n")]
        out += [f"# note: {n}" for n in self.notes]
        return "\n".join(out)

    def to_json(self) -> dict:
        return {"engine": self.engine, "flags_version": self.version, "flags_source": self.source,
                "commands": [{"shell": c.shell(), "argv": list(c.argv), "env": dict(c.env), "where": c.where}
                             for c in self.commands],
                "files": dict(self.files), "notes": list(self.notes)}
