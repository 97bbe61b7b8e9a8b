"""The engines' command-line flags as data (engines/data/flags/<engine>.json), and a checker.

Each table lists, per engine version, the programs (`vllm serve`, `llama-server`, …) with their
flags, aliases and value types, read from the engine's own argument parser (the file, commit or
release is in the table's `source`). `check` parses a command the way those parsers would and
says what is wrong with it; launch.py refuses to print a command that does not pass.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from ..errors import OptionsError

DATA = Path(__file__).resolve().parent.parent / "engines" / "data" / "flags"
# strconv.ParseBool, which Ollama's envconfig uses for its booleans
GO_BOOLS = ("1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False")


@dataclass(frozen=True)
class Table:
    engine: str
    version: str
    source: Mapping[str, Any]
    programs: Mapping[str, Mapping[str, Any]]
    env: Mapping[str, str]
    options: Mapping[str, str]
    overrides: Mapping[str, str]

    def program(self, name: str) -> Mapping[str, Any]:
        if name not in self.programs:
            raise OptionsError(f"{self.engine} {self.version}: no program {name!r} in its flag table")
        return self.programs[name]

    def cite(self) -> str:
        s = self.source
        where = s.get("package") or f"{s.get('repo', '')}@{str(s.get('commit', ''))[:9]}"
        return f"{self.engine} {self.version} ({where})"


@lru_cache(maxsize=None)
def _load(engine: str) -> Mapping[str, Any]:
    path = DATA / f"{engine}.json"
    if not path.exists():
        raise OptionsError(f"no flag table for {engine} (engines/data/flags/{engine}.json)")
    return json.loads(path.read_text())


def versions(engine: str) -> list[str]:
    return list(_load(engine)["versions"])


def _vkey(v: str) -> tuple:
    out = []
    for part in v.replace("-", ".").split("."):
        out.append(int(part) if part.isdigit() else -1)
    return tuple(out)


def table(engine: str, version: str | None = None) -> Table:
    """The table for `version`: that version's, else the newest older one, else the oldest."""
    doc = _load(engine)
    vs = doc["versions"]
    if version is None or version not in vs:
        ordered = sorted(vs, key=_vkey)
        older = [v for v in ordered if version is not None and _vkey(v) <= _vkey(version)]
        version = older[-1] if older else (ordered[-1] if version is None or not ordered else ordered[0])
    body = vs[version]
    return Table(engine, version, body["source"], body["programs"], body.get("env", {}), body.get("options", {}),
                 body.get("overrides", {}))


# ---- checking ----------------------------------------------------------------------------------
def _index(flags: Mapping[str, Any]) -> dict[str, tuple[str, Mapping[str, Any], bool]]:
    """Every spelling -> (canonical flag, its entry, is the --no- form)."""
    out: dict[str, tuple[str, Mapping[str, Any], bool]] = {}
    for name, e in flags.items():
        for spelling in (name, *e.get("aliases", ())):
            out[spelling] = (name, e, False)
        if e.get("negatable") and name.startswith("--"):
            out["--no-" + name[2:]] = (name, e, True)
    return out


def check_value(kind: str, value: str, choices: Any = None) -> str | None:
    """None if `value` parses as `kind`, else what is wrong."""
    try:
        if kind == "int":
            int(value)
        elif kind == "float":
            float(value)
        elif kind == "json":
            json.loads(value)
        elif kind == "bool" and value not in GO_BOOLS:
            return f"{value!r} is not a boolean"
    except ValueError:
        return f"{value!r} is not {'an' if kind == 'int' else 'a'} {kind}"
    if choices is not None and value not in choices:
        return f"{value!r} is not one of {', '.join(choices)}"
    return None


def check(argv: list[str], tab: Table, program: str) -> list[str]:
    """What is wrong with `argv` (program words first) under `tab`; [] when it parses."""
    words = program.split()
    if argv[:len(words)] != words:
        return [f"expected the command to start with {program!r}"]
    spec = tab.program(program)
    idx = _index(spec.get("flags", {}))
    problems: list[str] = []
    positional = 0
    i = len(words)
    while i < len(argv):
        tok = argv[i]
        if not tok.startswith("-") or tok == "-":
            positional += 1
            i += 1
            continue
        name, _, inline = tok.partition("=")
        if name not in idx:
            problems.append(f"{tok}: {tab.cite()} has no such flag")
            i += 1
            continue
        flag, e, negative = idx[name]
        kind = e.get("type", "str")
        if kind == "bool" or negative:
            if inline:
                problems.append(f"{name} takes no value")
            i += 1
            continue
        if inline:
            value, i = inline, i + 1
        elif i + 1 < len(argv):
            value, i = argv[i + 1], i + 2
        else:
            problems.append(f"{name} needs a value")
            break
        if kind == "list":
            continue
        why = check_value("str" if kind == "choice" else kind, value, e.get("choices"))
        if why:
            problems.append(f"{name}: {why}")
        if flag == "--overrides" and tab.overrides:
            problems += check_overrides(value, tab)
    if positional > len(spec.get("positional", [])):
        problems.append(f"{positional} positional arguments; {program} takes {len(spec.get('positional', []))}")
    return problems


def _check_pairs(pairs, known: Mapping, prefix: str, unknown: str) -> list[str]:
    """Each (key, value) against a table of known keys and their value types."""
    problems = []
    for key, value in pairs:
        if key not in known:
            problems.append(f"{prefix}{key}: {unknown}")
        else:
            why = check_value(known[key], str(value))
            if why:
                problems.append(f"{prefix}{key}: {why}")
    return problems


def check_overrides(text: str, tab: Table) -> list[str]:
    """MLC's --overrides "k=v;k=v" (EngineConfigOverride.from_str turns each into --k v)."""
    items = [item.partition("=") for item in filter(None, text.split(";"))]
    malformed = [f"--overrides {k!r}: expected key=value" for k, sep, _ in items if not sep]
    return malformed + _check_pairs([(k, v) for k, sep, v in items if sep], tab.overrides, "--overrides ",
                                    f"not an EngineConfigOverride field of {tab.cite()}")


def check_env(env: Mapping[str, str], tab: Table) -> list[str]:
    return _check_pairs(env.items(), tab.env, "", f"{tab.cite()} reads no such variable")


def check_options(opts: Mapping[str, str], tab: Table) -> list[str]:
    return _check_pairs(opts.items(), tab.options, "PARAMETER ", f"not an option of {tab.cite()}")
