"""The search behind `kvcap fit`: best first, pruned by monotonicity, every answer planned.

Candidates (engine × device class × layout × weight quantization × KV dtype) are visited in
rank order — fewest devices, least memory — so the first ones that serve are the top of the
answer. Nothing is guessed: a candidate is either planned by its engine or skipped because a
planned one settles it:
  - below the lower bound (weights and KV at their bits, per device): cannot hold the target;
  - no more capable than one that failed (as few devices, no more memory, no more
    quantization): fails too, since more memory never gives fewer tokens (KV dtypes count only
    where the engine's smaller dtype never holds fewer tokens: not MLX's);
  - no better than one that serves (as many devices, as much memory, as much quantization):
    serves, but ranks below it and adds nothing.
Per engine and backend the most capable candidate is planned first: if even it holds nothing,
the whole group fails and that plan is its closest miss; if it holds some but not all, only
replicas can serve (each planned at the sequences one replica holds). The search stops once the top
`top` answers are settled and every engine has its best (or has none); `exhaustive` plans every
candidate above the lower bound instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import groupby

from ..errors import KvcapError, ModelError
from ..model.spec import ModelSpec
from ..plan import Plan
from .engines import Adapter, Choice, Served
from .space import DeviceClass, Layout, Planner, layouts, lower_bound, with_count
from .types import Config, Miss, Solution, undominated  # noqa: F401


@dataclass(frozen=True)
class Group:
    ad: Adapter
    backend: str
    classes: tuple[DeviceClass, ...]
    weights: tuple[Choice, ...]
    kvs: tuple[Choice, ...]


@dataclass(frozen=True)
class Candidate:
    key: tuple
    group: Group
    config: Config

    @property
    def point(self) -> tuple[int, int, float, float]:
        c = self.config
        return c.layout.gpus, c.layout.gpus * c.device.memory_bytes, c.weights.bits, c.kv.bits


@dataclass
class Search:
    model: ModelSpec
    context: int
    concurrency: int
    max_gpus: int
    nodes: int
    planner: Planner
    params: int
    top: int = 10
    exhaustive: bool = False
    kv_elems: int = 0
    solutions: list[Solution] = field(default_factory=list)
    misses: list[Miss] = field(default_factory=list)
    failed: dict[tuple, list[tuple]] = field(default_factory=dict)     # (engine, backend) -> points
    tried: list[tuple[Config, Served]] = field(default_factory=list)   # planned, not serving
    done_engines: set[str] = field(default_factory=set)                # settled: infeasible or unusable

    # ---- planning one configuration -------------------------------------------------------------
    def evaluate(self, ad: Adapter, cfg: Config, sequences: int | None = None) -> tuple[Served, Plan | None]:
        s, p, _ = self.attempt(ad, cfg, sequences)
        return s, p

    def attempt(self, ad: Adapter, cfg: Config, sequences: int | None = None
                ) -> tuple[Served, Plan | None, KvcapError | None]:
        k = sequences or self.concurrency
        opts = {**ad.target(self.model, self.context, k), **cfg.weights.options, **cfg.kv.options,
                **(ad.layout(cfg.layout.tp, cfg.layout.pp) or {})}
        p = self.planner.plan(cfg.engine, with_count(cfg.device, cfg.layout.gpus), opts)
        if isinstance(p, KvcapError):
            return Served(0, True, str(p)), None, p
        return ad.served(p, self.model, self.context, k), p, None

    def replicas_allowed(self, cls: DeviceClass, layout: Layout) -> int:
        total = self.max_gpus * self.nodes if cls.multi_gpu else self.nodes
        return total // layout.gpus

    def record(self, ad: Adapter, cfg: Config, served: Served, plan: Plan | None) -> Solution | None:
        if plan is None or served.concurrency < 1:
            return None
        if served.concurrency < self.concurrency:
            # A replica: the plan for the sequences one replica serves (what its launch reproduces).
            s2, p2 = self.evaluate(ad, cfg, served.concurrency)
            if p2 is None or not p2.fits or s2.concurrency < served.concurrency:
                return None
            plan = p2
        pin = ad.pin(served, self.context, min(served.concurrency, self.concurrency))
        if pin:   # the plan the engine runs with the answer set explicitly (its launch reproduces it)
            opts = {**plan.options, **pin}
            pinned = self.planner.plan(cfg.engine, with_count(cfg.device, cfg.layout.gpus), opts)
            if isinstance(pinned, KvcapError):
                return None
            plan = pinned
        replicas = math.ceil(self.concurrency / served.concurrency)
        if replicas > self.replicas_allowed(cfg.device_class, cfg.layout):
            return None
        per_node = self.max_gpus if cfg.device_class.multi_gpu else 1
        nodes = max(cfg.layout.nodes, math.ceil(cfg.layout.gpus * replicas / per_node))
        sol = Solution(cfg, served, plan, replicas, nodes, _notes(ad, cfg, served, replicas))
        self.solutions.append(sol)
        return sol

    # ---- the candidates ------------------------------------------------------------------------
    def candidates(self, g: Group) -> list[Candidate]:
        multi = g.ad.multi_gpu and any(c.multi_gpu for c in g.classes)
        out = []
        for layout in layouts(self.max_gpus if multi else 1, self.nodes, bool(g.ad.multi_node)):
            if g.ad.layout(layout.tp, layout.pp) is None:
                continue
            for cls in g.classes:
                if layout.gpus > 1 and not cls.multi_gpu:
                    continue
                rmax = self.replicas_allowed(cls, layout)
                if rmax < 1:
                    continue
                floor = math.ceil(self.concurrency / rmax)
                for w in g.weights:
                    for kv in g.kvs:
                        if cls.memory < lower_bound(self.model, w.bits, kv.bits, layout.gpus, self.context, floor,
                                                    self.params, self.kv_elems):
                            continue
                        cfg = Config(g.ad.name, cls, layout, w, kv)
                        key = (layout.gpus, layout.gpus * cls.memory, g.ad.name, g.backend, cls.device.key,
                               layout.nodes, -(w.bits + kv.bits), -w.bits)
                        out.append(Candidate(key, g, cfg))
        return out

    def most_capable(self, g: Group, kv: Choice | None = None) -> Config:
        """The largest device, the most GPUs, the most quantization (with `kv` where KV dtypes are
        not ordered by capacity)."""
        big = g.classes[-1]
        multi = g.ad.multi_gpu and big.multi_gpu
        lays = [l for l in layouts(self.max_gpus if multi else 1, self.nodes, bool(g.ad.multi_node))
                if g.ad.layout(l.tp, l.pp) is not None]
        return Config(g.ad.name, big, lays[-1], g.weights[-1], kv or g.kvs[-1])

    # ---- pruning ------------------------------------------------------------------------------
    def fails_already(self, c: Candidate) -> bool:
        gpus, mem, wb, kb = c.point
        ordered = c.group.ad.kv_monotone
        return any(gpus <= f[0] and mem <= f[1] and wb >= f[2] and (kb >= f[3] if ordered else kb == f[3])
                   for f in self.failed.get((c.config.engine, c.group.backend), ()))

    def beaten(self, c: Candidate) -> bool:
        gpus, mem, wb, kb = c.point
        return any(s.config.engine == c.config.engine and s.config.device.backend == c.group.backend
                   and s.beats(gpus, mem, wb, kb) for s in self.solutions)

    def top_known(self, key: tuple) -> bool:
        """The `top` best answers all rank before a candidate with this key."""
        if self.exhaustive:
            return False
        before = [s for s in self.solutions if (s.devices, s.memory) < key[:2]]
        return len(before) >= self.top and len(undominated(before)) >= self.top

    def pending(self, key: tuple | None = None) -> set[str]:
        """Engines whose best answer is not known yet: none found, or (with `key`, the rank of the
        candidates still to visit) only ones that rank after those candidates (replicas)."""
        have = {s.config.engine for s in self.solutions if key is None or (s.devices, s.memory) < key[:2]}
        return self.engines - have - self.done_engines

    # ---- the walk -----------------------------------------------------------------------------
    def run(self, groups: list[Group]) -> None:
        self.engines = {g.ad.name for g in groups}
        live = []
        for g in groups:
            if g.ad.name in self.done_engines:
                continue
            probes = [self.most_capable(g, kv) for kv in (g.kvs[-1:] if g.ad.kv_monotone else g.kvs)]
            results = [(cfg, *self.attempt(g.ad, cfg)) for cfg in probes]
            cfg, s, p, err = max(results, key=lambda t: t[1].concurrency)
            if isinstance(err, ModelError):      # the engine does not support this model at all
                self.misses.append(Miss(g.ad.name, "all", cfg, 0, s.lacks))
                self.done_engines.add(g.ad.name)
                continue
            if p is not None and s.concurrency < self.concurrency:
                # Even the most capable configuration holds fewer than asked: no single replica
                # anywhere in the group will (the walk skips them all), only replicas can serve.
                for c2, s2, p2, _ in results:
                    if p2 is None:
                        continue
                    self.failed.setdefault((g.ad.name, g.backend), []).append(
                        (c2.layout.gpus, c2.layout.gpus * c2.device.memory_bytes, c2.weights.bits, c2.kv.bits))
                    self.tried.append((c2, s2))
                if s.concurrency == 0 and (s.exact or self.replicas_allowed(cfg.device_class, cfg.layout) < 2):
                    self.misses.append(Miss(g.ad.name, g.backend, cfg, 0, s.lacks))
                    continue
                self.replicas_on_the_largest(g)
            live.append(g)
        cands = sorted((c for g in live for c in self.candidates(g)), key=lambda c: c.key)
        for _, bucket in groupby(cands, key=lambda c: c.key[:6]):
            bucket = list(bucket)
            if self.top_known(bucket[0].key):
                pend = self.pending(bucket[0].key)
                if not pend:
                    break                    # the top is known and every engine has its best
                if bucket[0].config.engine not in pend:
                    continue
            self.visit(bucket)
        self.replicate_yes_no(live)
        self.finish(live)

    def visit(self, bucket: list[Candidate]) -> None:
        # Most capable first (if it fails, the bucket fails), then least quantized first (a
        # success beats the more quantized rest).
        order = [bucket[-1]] + bucket[:-1] if len(bucket) > 1 else bucket
        for c in order:
            if self.fails_already(c) or (not self.exhaustive and self.beaten(c)):
                continue
            s, p = self.evaluate(c.group.ad, c.config)
            if p is not None and s.concurrency >= self.concurrency:
                self.record(c.group.ad, c.config, s, p)
                continue
            if p is not None:
                self.failed.setdefault((c.config.engine, c.group.backend), []).append(c.point)
                self.record(c.group.ad, c.config, s, p)      # replicas, where they fit the budget
            self.tried.append((c.config, s))

    def replicas_on_the_largest(self, g: Group) -> None:
        """Where no replica holds all the sequences: replicas of each layout on the largest device."""
        big = g.classes[-1]
        multi = g.ad.multi_gpu and big.multi_gpu
        for layout in layouts(self.max_gpus if multi else 1, self.nodes, bool(g.ad.multi_node)):
            if g.ad.layout(layout.tp, layout.pp) is None or layout.nodes > 1:
                continue
            for kv in (g.kvs[-1:] if g.ad.kv_monotone else g.kvs):
                cfg = Config(g.ad.name, big, layout, g.weights[-1], kv)
                s, p = self.evaluate(g.ad, cfg)
                if s.exact:
                    self.record(g.ad, cfg, s, p)

    def replicate_yes_no(self, groups: list[Group]) -> None:
        """llama.cpp and Ollama answer yes/no for K sequences: where an engine found nothing, ask
        its most capable configuration how many it holds, for replicas."""
        for g in groups:
            if g.ad.name not in self.pending() or any(s.config.engine == g.ad.name for s in self.solutions):
                continue
            cfg = self.most_capable(g)
            rmax = self.replicas_allowed(cfg.device_class, cfg.layout)
            floor = math.ceil(self.concurrency / rmax) if rmax else self.concurrency
            s, p = self.evaluate(g.ad, cfg)
            if s.exact or floor >= self.concurrency or p is None:
                continue
            lo, hi, best = floor, self.concurrency - 1, None
            while lo <= hi:
                mid = (lo + hi) // 2
                s2, p2 = self.evaluate(g.ad, cfg, mid)
                if s2.concurrency >= mid:
                    best, lo = (Served(mid, False), p2), mid + 1
                else:
                    hi = mid - 1
            if best is not None:
                self.record(g.ad, cfg, *best)

    def finish(self, groups: list[Group]) -> None:
        """Each engine without an answer: its closest miss among what was planned."""
        have = {s.config.engine for s in self.solutions}
        for engine in sorted({g.ad.name for g in groups} - have):
            tried = [(cfg, s) for cfg, s in self.tried if cfg.engine == engine]
            if not tried:
                if not any(m.engine == engine for m in self.misses):
                    self.misses.append(Miss(engine, "all", None, 0, "every device is below the lower bound: "
                                            "the weights and KV alone do not fit"))
                continue
            cfg, s = max(tried, key=lambda t: (t[1].concurrency, t[0].layout.gpus * t[0].device.memory_bytes,
                                               -t[0].weights.bits - t[0].kv.bits))
            if not any(m.engine == engine and m.config == cfg for m in self.misses):
                self.misses.append(Miss(engine, cfg.device.backend, cfg, s.concurrency, s.lacks))


def _notes(ad: Adapter, cfg: Config, served: Served, replicas: int) -> tuple[str, ...]:
    notes = []
    if cfg.layout.nodes > 1:
        notes.append(f"{cfg.layout.nodes} nodes: {ad.multi_node}")
    elif cfg.layout.gpus > 1:
        how = "layers split over" if ad.name in ("llamacpp", "ollama") else "tensor parallel over"
        notes.append(f"{how} {cfg.layout.gpus} GPUs of one host (NVLink/xGMI assumed; PCIe works, slower)")
    if replicas > 1:
        notes.append(f"{replicas} replicas: {ad.data_parallel}")
    if served.over_cap:
        notes.append("above MLC's Metal 32,768-token cap: only with max_total_seq_length set explicitly "
                     "(the cap guards against slow large Metal buffers; `kvcap probe` measures it)")
    for c in (cfg.weights, cfg.kv):
        if c.note:
            notes.append(c.note)
    return tuple(notes)
