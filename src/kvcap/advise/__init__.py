"""advise: what to change to get more KV cache, and what it takes to serve a target.

    advise.whatif.ranked_what_ifs(plan)   the changes that relax the binding limit, ranked by gain
    advise.fit.fit(model, context, k, …)  the configurations that serve k sequences of `context` tokens

Nothing is imported here: `kvcap plan` uses advise.report without loading the solver.
"""
