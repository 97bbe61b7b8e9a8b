"""The probe's text report, its recommendation for a model, and its plot. No torch here:
it reads the calibration document (calibration.py lists its fields)."""

from __future__ import annotations

from dataclasses import dataclass

from ..model.spec import ModelSpec
from ..units import fmt_bytes


@dataclass(frozen=True)
class Recommendation:
    model: str
    bytes_per_token_buffer: int     # one layer's K+V per token: the largest buffer MLC binds
    bytes_per_token_pool: int       # all layers' K+V per token (the whole KV pool)
    cap_tokens: int | None          # None: no cap needed up to `up_to_bytes`
    cap_tokens_pool: int | None
    up_to_bytes: int
    text: str

    def to_json(self) -> dict:
        return {"model": self.model, "bytes_per_token_buffer": self.bytes_per_token_buffer,
                "bytes_per_token_pool": self.bytes_per_token_pool, "cap_tokens": self.cap_tokens,
                "cap_tokens_pool": self.cap_tokens_pool, "up_to_bytes": self.up_to_bytes, "text": self.text}


def recommend(doc: dict, model: ModelSpec, kv_itemsize: int = 2) -> Recommendation:
    """Turn the single-buffer verdict into tokens for `model` (KV in fp16/bf16 by default).

    The probe's pool is one buffer read by one kernel. Engines with one buffer per layer (MLC,
    vLLM) bind one layer's pages per kernel, so the cap in tokens is the buffer bytes over one
    layer's bytes per token; `cap_tokens_pool` is the stricter reading where the whole pool
    (all layers) is one buffer."""
    from ..errors import ModelError
    layers = model.kv_layers
    if not layers:
        raise ModelError(f"{model.name} has no per-token KV cache; nothing to cap")
    per_buffer = max(l.kv_elems_per_token for l in layers) * kv_itemsize
    per_pool = model.kv_elems_per_token(include_mtp=False) * kv_itemsize
    verdict = doc["layouts"]["single"]["verdict"]
    up_to = int(verdict["measured_up_to_bytes"])
    if verdict["cliff_bytes"] is None:
        text = (f"no cap needed up to {fmt_bytes(up_to)} of one buffer: {up_to // per_buffer:,} tokens "
                f"of {model.name} per layer buffer ({up_to // per_pool:,} if the whole pool were one buffer)")
        return Recommendation(model.name, per_buffer, per_pool, None, None, up_to, text)
    ok = int(verdict["max_ok_bytes"])
    cap, cap_pool = ok // per_buffer, ok // per_pool
    text = (f"cap {model.name} at {cap:,} tokens (one layer's buffer <= {fmt_bytes(ok)}; cliff at "
            f"{fmt_bytes(int(verdict['cliff_bytes']))}); {cap_pool:,} tokens if the whole pool is one buffer")
    return Recommendation(model.name, per_buffer, per_pool, cap, cap_pool, up_to, text)


def render(doc: dict, recommendation: Recommendation | None = None, saved: str = "") -> str:
    dev, work = doc["device"], doc["work"]
    frac = doc["kernel_bandwidth_gbps"] / doc["copy_bandwidth_gbps"] if doc["copy_bandwidth_gbps"] else 0.0
    out = [f"kvcap probe on {dev['name']} ({dev['backend']}, {fmt_bytes(dev['total_memory_bytes'])}; {dev['detail']})",
           f"work per step: {work['batch']} sequences x {work['tokens_per_seq']:,} tokens, {work['num_kv_heads']} KV heads"
           f" x {work['head_dim']} ({work['dtype']}), pages of {work['page']} at random = {fmt_bytes(work['bytes_per_step'])} read",
           f"copy bandwidth {doc['copy_bandwidth_gbps']:,.0f} GB/s (read + write); decode kernel ({doc['kernel']}) "
           f"{doc['kernel_bandwidth_gbps']:,.0f} GB/s = {frac:.0%} of copy", ""]
    for name, entry in doc["layouts"].items():
        v = entry["verdict"]
        chunk = f", chunks of {fmt_bytes(entry['chunk_bytes'])}" if entry.get("chunk_bytes") else ""
        out.append(f"{name} buffer{chunk}")
        out.append(f"  {'pool':>12}  {'step':>10}  {'GB/s':>7}  {'x base':>6}")
        base = v["baseline_s"] if v else None
        for p in entry["points"]:
            slow = " slow" if v and p["pool_bytes"] in v["slow"] else ""
            ratio = f"{p['step_s'] / base:6.3f}" if base else "     -"
            out.append(f"  {fmt_bytes(p['pool_bytes']):>12}  {p['step_s'] * 1e6:8.1f}us  {p['gbps']:7.1f}  {ratio}{slow}")
        if v:
            if v["cliff_bytes"] is None:
                out.append(f"  verdict: no cliff up to {fmt_bytes(v['measured_up_to_bytes'])} "
                           f"(threshold {v['threshold_s'] * 1e6:.1f}us = baseline x {1 + v['tolerance']:.2f} + noise "
                           f"{v['noise_s'] * 1e6:.1f}us)")
            else:
                out.append(f"  verdict: cliff at {fmt_bytes(v['cliff_bytes'])}; largest pool before it "
                           f"{fmt_bytes(v['max_ok_bytes'])} (threshold {v['threshold_s'] * 1e6:.1f}us)")
        out.append("")
    if doc.get("stopped"):
        out.append(f"stopped early: {doc['stopped']}")
    if recommendation:
        out.append(f"recommendation: {recommendation.text}")
    if saved:
        out.append(f"calibration written to {saved}")
    return "\n".join(out).rstrip()


def plot(doc: dict, path: str) -> None:
    """Step time and GB/s against pool size, one line per layout (needs matplotlib)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        from ..errors import ProbeError
        raise ProbeError("--plot needs matplotlib: pip install 'kvcap[plot]'") from None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, entry in doc["layouts"].items():
        xs = [p["pool_bytes"] / 2**30 for p in entry["points"]]
        ax1.plot(xs, [p["step_s"] * 1e6 for p in entry["points"]], marker="o", label=name)
        ax2.plot(xs, [p["gbps"] for p in entry["points"]], marker="o", label=name)
        v = entry["verdict"]
        if v and v["cliff_bytes"]:
            ax1.axvline(v["cliff_bytes"] / 2**30, linestyle="--", color="red")
    for ax, label in ((ax1, "step time (us)"), (ax2, "KV read (GB/s)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("KV pool (GiB)")
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend()
    ax2.axhline(doc["copy_bandwidth_gbps"], color="gray", linestyle=":", label="copy")
    fig.suptitle(f"kvcap probe: {doc['device']['name']} ({doc['date']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
