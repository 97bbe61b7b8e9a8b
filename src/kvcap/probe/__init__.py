"""kvcap probe and verify (optional extra `kvcap[probe]`: torch, triton).

- calibration.py  the calibration file and `load_calibration` (no torch)
- cliff.py        the cliff detector and pool sizes (no torch)
- torchdev.py     the device through torch: identity, memory, event timing, out-of-memory
- kernels.py      paged KV layouts, the torch fallback and the float64 reference
- triton_decode.py the Triton paged decode kernel (CUDA/ROCm)
- sweep.py        the probe: fixed work, growing pool, single buffer and chunks
- report.py       the probe's text report and recommendation
- verify.py       allocate what a Plan says an engine allocates, run, compare
Only calibration and cliff may be imported without torch.
"""

from .calibration import Calibration, load_calibration

__all__ = ["Calibration", "load_calibration"]
