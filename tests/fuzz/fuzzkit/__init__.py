"""Generators and an oracle for fuzzing kvcap, shared by tests/fuzz (hypothesis, bounded) and
benchmarks/fuzz.py (the long run).

Each generator takes a `random.Random` and returns one input (a config dict, file bytes, an
argv list, case lines), so a hypothesis test drives it with `st.randoms()` (shrinkable,
reproducible) and the script with a seeded Random. The oracle runs one input in-process under a
time bound and sorts the outcome: a result, a clean one-line kvcap error, a traceback, a hang.
"""
