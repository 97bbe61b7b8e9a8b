"""advise: what to change to get more KV cache, and what it takes to serve a target.

    ranked_what_ifs(plan)        the changes that relax the binding limit, ranked by gain
    fit(model, context, k, …)    the configurations that serve k sequences of `context` tokens
"""

from __future__ import annotations

from .fit import Config, FitResult, Miss, Solution, fit

__all__ = ["fit", "FitResult", "Solution", "Miss", "Config"]
