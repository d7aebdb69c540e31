"""Side-by-side benchmarks of histetl against what users would write or use instead.

`python -m benchmarks.run` (or `just bench`) is the comparison runner; `pytest benchmarks` runs
the pytest-benchmark files on small data. See benchmarks/README.md.
"""
