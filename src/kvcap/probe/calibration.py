"""The calibration file `kvcap probe` writes and `kvcap plan --calibration FILE` reads.

No torch here: planning reads a calibration without the probe's extra installed.

File (JSON), written to `--out` or `$XDG_CONFIG_HOME/kvcap/calibration-<device>.json`
(default `~/.config/kvcap/`):

    kvcap_calibration   1 (format version)
    date                ISO date the probe ran
    command             the command line that produced it
    device              {name, backend, torch_device, total_memory_bytes, detail}
    kernel              "triton" or "torch" (the fallback; it is far from the bandwidth limit,
                        so a cliff measured with it is a weaker statement)
    copy_bandwidth_gbps bytes read + written per second by a large device-to-device copy (GB/s)
    kernel_bandwidth_gbps KV bytes read per second by the decode step at the smallest pool
    tolerance           the slowdown beyond noise that counts as a cliff (0.10 = 10 %)
    work                {batch, tokens_per_seq, num_kv_heads, num_q_heads, head_dim, page, dtype,
                         bytes_per_step}: the fixed work every point did
    layouts             {"single"|"chunked": {chunk_bytes, points: [{pool_bytes, step_s, gbps,
                         medians_s}], verdict: {baseline_s, noise_s, tolerance, threshold_s,
                         cliff_bytes, max_ok_bytes, measured_up_to_bytes, slow}}}
    stopped             why the sweep ended early ("" if it reached --max-pool)

`Calibration` flattens what a planner needs. The cliff is in bytes of one buffer: the probe's
pool is one buffer that one kernel reads, like one layer's page buffer in MLC (one buffer per
layer, TVM paged_kv_cache.cc), so a planner turns it into tokens with the bytes a token adds to
that engine's largest single buffer (`kv_token_cap`).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import OptionsError

FORMAT = 1
MAX_FILE_BYTES = 1 << 20    # a calibration holds a few dozen points: KiB, not MiB


@dataclass(frozen=True)
class Calibration:
    device_name: str
    backend: str                      # kvcap backend word: cuda, rocm, metal, cpu, xpu
    total_memory_bytes: int
    date: str
    kernel: str
    copy_bandwidth_gbps: float
    kernel_bandwidth_gbps: float
    cliff_bytes: int | None           # one buffer: first pool size past the cliff; None = no cliff
    max_ok_bytes: int                 # one buffer: largest pool measured before the cliff
    measured_up_to_bytes: int         # one buffer: largest pool measured
    chunked_cliff_bytes: int | None   # the same pool split in chunks (None: no cliff or not measured)
    chunk_bytes: int | None
    tolerance: float
    path: str = ""

    @property
    def kernel_fraction(self) -> float:
        """Decode step's KV read rate over the copy rate (how close the probe is to the limit)."""
        return self.kernel_bandwidth_gbps / self.copy_bandwidth_gbps if self.copy_bandwidth_gbps else 0.0

    def kv_token_cap(self, bytes_per_token_per_buffer: int) -> int | None:
        """The measured cap in tokens for an engine whose largest buffer grows by
        `bytes_per_token_per_buffer` per token; None when no cliff was measured (then the
        measurement only vouches for pools up to `measured_up_to_bytes`)."""
        if bytes_per_token_per_buffer <= 0:
            raise OptionsError("bytes per token must be positive")
        if self.cliff_bytes is None:
            return None
        return self.max_ok_bytes // bytes_per_token_per_buffer

    def verdict(self) -> str:
        from ..units import fmt_bytes
        if self.cliff_bytes is None:
            return f"no cap needed up to {fmt_bytes(self.measured_up_to_bytes)} (one buffer)"
        return (f"cliff at {fmt_bytes(self.cliff_bytes)} of one buffer; "
                f"keep buffers at or below {fmt_bytes(self.max_ok_bytes)}")


def device_slug(name: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3' (for file names)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "device"


def default_path(device_name: str) -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "kvcap" / f"calibration-{device_slug(device_name)}.json"


def _layouts(doc: dict) -> dict:
    layouts = doc.get("layouts")
    return layouts if isinstance(layouts, dict) else {}


def _verdict(doc: dict, layout: str) -> dict | None:
    entry = _layouts(doc).get(layout)
    return entry.get("verdict") if isinstance(entry, dict) else None


def from_json(doc: dict, path: str = "") -> Calibration:
    where = path or "calibration"
    if not isinstance(doc, dict) or doc.get("kvcap_calibration") != FORMAT:
        raise OptionsError(f"{where} is not a kvcap calibration file (format {FORMAT}); "
                           "make one with `kvcap probe`")
    try:
        dev = doc["device"]
        single = _verdict(doc, "single")
        if single is None:
            raise KeyError("layouts.single.verdict")
        chunked = _verdict(doc, "chunked")
        chunk_entry = _layouts(doc).get("chunked") or {}
        return Calibration(
            device_name=str(dev["name"]), backend=str(dev["backend"]),
            total_memory_bytes=int(dev["total_memory_bytes"]), date=str(doc["date"]),
            kernel=str(doc["kernel"]), copy_bandwidth_gbps=float(doc["copy_bandwidth_gbps"]),
            kernel_bandwidth_gbps=float(doc["kernel_bandwidth_gbps"]),
            cliff_bytes=None if single["cliff_bytes"] is None else int(single["cliff_bytes"]),
            max_ok_bytes=int(single["max_ok_bytes"]),
            measured_up_to_bytes=int(single["measured_up_to_bytes"]),
            chunked_cliff_bytes=None if not chunked or chunked["cliff_bytes"] is None else int(chunked["cliff_bytes"]),
            chunk_bytes=int(chunk_entry["chunk_bytes"]) if chunk_entry.get("chunk_bytes") else None,
            tolerance=float(single["tolerance"]), path=path,
        )
    # The file is untrusted JSON: a field of the wrong type (AttributeError on a list's .get, an
    # OverflowError from int(Infinity)) is the same garbled field as a missing one.
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as e:
        raise OptionsError(f"{where} lacks or garbles field {e}; re-run `kvcap probe`") from None


def load_calibration(path: str | Path) -> Calibration:
    """Read a calibration file; OptionsError (one line) when missing or not one."""
    p = Path(path).expanduser()
    try:
        if p.exists() and not p.is_file():   # /dev/zero would never end, a FIFO never start
            raise OptionsError(f"cannot read calibration {p}: not a regular file")
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:              # bounded: a calibration is a few KiB
            raise OptionsError(f"cannot read calibration {p}: larger than {MAX_FILE_BYTES >> 20} MiB, not a calibration")
        with open(p, "rb") as f:              # read(n) allocates n: ask for the file's size
            raw = f.read(size + 1)
        if len(raw) > size:
            raise OptionsError(f"cannot read calibration {p}: the file grew while being read")
        doc = json.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise OptionsError(f"no calibration file at {p}; make one with `kvcap probe --out {p}`") from None
    except (OSError, ValueError, RecursionError) as e:   # ValueError: bad JSON, not UTF-8, a NUL in the path
        raise OptionsError(f"cannot read calibration {p}: {str(e).splitlines()[0][:120]}") from None
    return from_json(doc, str(p))


def save_calibration(doc: dict[str, Any], path: str | Path) -> Path:
    """Write the probe's document (checked by parsing it back first)."""
    from_json(doc, str(path))
    p = Path(path).expanduser()
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(p)
    return p
